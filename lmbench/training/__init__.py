"""Training one model: the loop (loop), one tracked run (run: ``train``), and what a run needs and
leaves behind: runtime, schedule, metrics, checkpoint, artifacts, progress, loading for generation."""
