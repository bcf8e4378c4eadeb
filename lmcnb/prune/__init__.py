"""Pruning: masks (`mask`) and PLATON / magnitude pruning on the cubic schedule (`platon`)."""
