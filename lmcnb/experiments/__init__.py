"""The experiments layer: the catalog of registry entries, runs, setups, studies as task graphs,
their tables, executors and sweeps.
"""
