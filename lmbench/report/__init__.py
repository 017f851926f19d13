"""Reports people read: results frames (pandas) from MLflow + Optuna, seaborn plots, one HTML file.

``build_report(experiment)`` writes ``reports/<experiment>/index.html``; see :mod:`.build`.
"""

from lmbench.report.build import build_report

__all__ = ["build_report"]
