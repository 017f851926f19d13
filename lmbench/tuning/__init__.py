"""Optuna tuning: storages and locks (storage), samplers and pruners (samplers), trials as tracked
runs (trials), liveness of running trials (liveness), and worker processes (workers)."""
