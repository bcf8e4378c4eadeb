"""The core layer: plain data (refs, steps, seeds), checks, files and locks, checkpoints, devices
and the thread budget, environment variables, the hub, progress bars. It imports nothing of lmcnb.
"""
