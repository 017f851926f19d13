"""A rich progress bar for training: step, loss, perplexity, tokens/s and ETA."""

from __future__ import annotations

import math

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lmbench.config import BudgetSpec


class TrainProgress:
    """Progress in the budget's own unit; updated only at log intervals (no extra syncs)."""

    def __init__(self, budget: BudgetSpec, disabled: bool = False):
        self.budget, self.disabled = budget, disabled
        self.progress: Progress | None = None

    def __enter__(self) -> TrainProgress:
        if not self.disabled:
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=float(self.budget.amount), info="")
        return self

    def update(self, loop, loss: float, tokens_per_sec: float) -> None:
        """``loop``: the run's :class:`~lmbench.training.loop.LoopState`."""
        if self.progress is None:
            return
        lp = loop
        done = {"steps": lp.step, "tokens": lp.tokens, "seconds": lp.elapsed}[self.budget.kind]
        ppl = math.exp(loss) if loss < 50 else math.inf
        info = f"step {lp.step}  loss {loss:.4f}  ppl {ppl:.2f}  {tokens_per_sec:,.0f} tok/s"
        self.progress.update(self.task, completed=min(float(done), float(self.budget.amount)), info=info)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
