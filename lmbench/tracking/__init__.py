"""MLflow: the run schema (schema), the Tracker (tracker), server commands (server) and the UI (ui).

Importing the package imports nothing heavy: ``schema`` is plain names, mlflow comes with ``tracker``."""
