"""The LMC layer: the interpolation engine, the barrier metrics, BatchNorm reset."""
