"""Learning-rate schedules as a function of budget progress, plus the budget itself.

Progress is the fraction of the budget spent (steps, tokens or seconds), so the same schedule
works whatever the budget's unit and a cosine always ends at the end of the budget.
"""

from __future__ import annotations

import math

from lmbench.config import BudgetSpec, ScheduleSpec


def progress(budget: BudgetSpec, step: int, tokens: int, elapsed: float) -> float:
    """Fraction of the budget spent, in [0, inf)."""
    spent = {"steps": step, "tokens": tokens, "seconds": elapsed}[budget.kind]
    return spent / budget.amount


class Schedule:
    """lr = base * warmup(step) * shape(progress) * plateau_scale."""

    def __init__(self, spec: ScheduleSpec, base_lr: float):
        self.spec, self.base_lr = spec, base_lr
        self.scale, self.best, self.bad = 1.0, math.inf, 0  # plateau state

    def lr(self, step: int, frac: float) -> float:
        spec = self.spec
        warm = min(1.0, (step + 1) / spec.warmup_steps) if spec.warmup_steps else 1.0
        if spec.warmup_fraction:  # in budget units, so a recipe's warmup fits every budget
            warm = min(warm, frac / spec.warmup_fraction)
        if spec.kind == "cosine":
            frac = min(max(frac, 0.0), 1.0)
            shape = spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))
        elif spec.kind == "exponential":
            shape = spec.gamma**step
        else:  # constant, plateau
            shape = 1.0
        return self.base_lr * warm * shape * self.scale

    def on_eval(self, val_loss: float) -> None:
        """Plateau: multiply the lr by ``factor`` after ``patience`` evaluations without progress
        (an improvement of more than ``threshold`` relative to the best so far). With patience 0
        and threshold 0 this is the classic word-LM anneal: divide by 1/factor whenever the
        validation loss does not improve."""
        if self.spec.kind != "plateau":
            return
        if val_loss < self.best - self.spec.threshold * abs(self.best if math.isfinite(self.best) else 0):
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
            if self.bad > self.spec.patience:
                self.scale *= self.spec.factor
                self.bad = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]
