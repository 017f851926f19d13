"""lmbench: fair, reproducible language-model architecture comparisons."""

__version__ = "0.1.0"
