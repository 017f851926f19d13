"""Reports people read: results frames (pandas) from MLflow + Optuna, seaborn plots, one HTML file.

``build_report(experiment)`` writes ``reports/<experiment>/index.html``; see :mod:`.build`.
"""

from __future__ import annotations

__all__ = ["build_report"]


def __getattr__(name: str):
    # build_report on first use: importing it pulls in matplotlib and seaborn (~2 s of a process's
    # start-up), which the commands that only read frames or write results files never need
    if name == "build_report":
        from lmbench.report.build import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
