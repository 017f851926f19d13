"""The commands as library calls: train, tune, compare, ablate, scale (each returns its results)."""

from lmbench.experiments.ablate import ablate
from lmbench.experiments.compare import compare, tune
from lmbench.experiments.scale import scale
from lmbench.experiments.single import resume_training, run_training

__all__ = ["ablate", "compare", "resume_training", "run_training", "scale", "tune"]
