"""Reports people read: results frames (pandas) from MLflow + Optuna, seaborn plots, one HTML file.

``lmbench.report.build.build_report(experiment)`` writes ``reports/<experiment>/index.html``. The
package re-exports nothing: importing ``build`` pulls in matplotlib and seaborn (~2 s of a
process's start-up), which the commands that only read frames or write results files never need.
"""
