"""Training recipes: how an architecture is trained and tuned unless the spec says otherwise.

A recipe is published practice for a family of models - optimizer, learning rate, warmup, gradient
clipping, schedule, and the ranges its search explores - registered beside the model
(``register(..., recipe=...)``). :func:`lmbench.config.load.model_spec` lays it under the user's
spec, so a value the user set always wins, and :func:`lmbench.config.params.space_for` takes its
search ranges. Recipes are plain data: the config layer validates them like any spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Per optimizer: the lr and weight decay it starts from, and the lr range (log scale) searched,
# when a recipe is written for another optimizer. SGD's range spans the word-LM practice (lr 1 in
# Zaremba et al. 2014, 20 in pytorch/examples, 30 in AWD-LSTM); Adam's the usual 1e-4..1e-2.
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "adamw": {"lr": 1e-3, "lr_range": (1e-4, 1e-2), "weight_decay": 0.01},
    "adam": {"lr": 1e-3, "lr_range": (1e-4, 1e-2), "weight_decay": 0.0},
    "sgd": {"lr": 1.0, "lr_range": (0.1, 40.0), "weight_decay": 0.0},
}
ADAM_FAMILY = ("adamw", "adam")


@dataclass(frozen=True)
class Recipe:
    """Default training settings and search ranges of an architecture.

    ``optimizer`` and ``schedule`` are ``train.optimizer`` / ``train.schedule`` sections;
    ``tune_optimizers`` the optimizers a search chooses between (empty: only the recipe's own);
    ``lr_ranges`` per optimizer (default :data:`OPTIMIZER_DEFAULTS`); ``weight_decay_range`` is
    searched for the Adam family only (an L2 term at SGD's large learning rates diverges).
    """

    optimizer: dict[str, Any]
    lr: float
    weight_decay: float
    grad_clip: float | None
    schedule: dict[str, Any]
    tune_optimizers: tuple[str, ...] = ()
    lr_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    weight_decay_range: tuple[float, float] | None = None
    source: str = ""

    @property
    def kind(self) -> str:
        return self.optimizer["kind"]

    @property
    def optimizers(self) -> tuple[str, ...]:
        """The optimizers a search chooses between."""
        return self.tune_optimizers or (self.kind,)

    def lr_range(self, kind: str) -> tuple[float, float]:
        return self.lr_ranges.get(kind, OPTIMIZER_DEFAULTS[kind]["lr_range"])

    def lr_for(self, kind: str) -> float:
        """The learning rate an optimizer starts from under this recipe."""
        return self.lr if kind == self.kind else OPTIMIZER_DEFAULTS[kind]["lr"]

    def train_section(self, kind: str | None = None) -> dict[str, Any]:
        """The recipe as a partial ``train`` section for optimizer ``kind`` (default: its own).

        Another optimizer keeps the recipe's clipping and schedule but starts from its own learning
        rate and weight decay: SGD's lr of 20 would wreck Adam, and Adam's 1e-3 would stall SGD."""
        kind = kind or self.kind
        if kind not in OPTIMIZER_DEFAULTS:  # no optimizer: the spec's validation names the key
            return {"optimizer": {"kind": kind}}
        if kind == self.kind:
            opt, lr, decay = dict(self.optimizer), self.lr, self.weight_decay
        else:
            opt, lr, decay = {"kind": kind}, OPTIMIZER_DEFAULTS[kind]["lr"], OPTIMIZER_DEFAULTS[kind]["weight_decay"]
        return {"optimizer": opt, "lr": lr, "weight_decay": decay, "grad_clip": self.grad_clip,
                "schedule": dict(self.schedule)}

    def search_space(self, kinds: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Search dimensions of the training settings for the optimizers ``kinds``.

        With several optimizers: ``optimizer`` itself and one learning rate per optimizer,
        ``lr_<kind>``, sampled only when that optimizer was (define-by-run), so no trial pairs
        SGD with an Adam learning rate. With one: ``lr`` in that optimizer's range."""
        space: dict[str, dict[str, Any]] = {}
        if len(kinds) > 1:
            space["optimizer"] = {"type": "categorical", "choices": list(kinds)}
        for kind in kinds:
            low, high = self.lr_range(kind)
            name = f"lr_{kind}" if len(kinds) > 1 else "lr"
            space[name] = {"type": "float", "low": low, "high": high, "log": True}
            if len(kinds) > 1:
                space[name]["when"] = {"optimizer": [kind]}
        adam = [kind for kind in kinds if kind in ADAM_FAMILY]
        if self.weight_decay_range and adam:
            low, high = self.weight_decay_range
            space["weight_decay"] = {"type": "float", "low": low, "high": high, "log": False}
            if len(adam) < len(kinds):
                space["weight_decay"]["when"] = {"optimizer": adam}
        return space

    def describe(self) -> str:
        """One line for ``lmbench models``."""
        opt = ", ".join(f"{k} {v}" for k, v in self.optimizer.items() if k != "kind")
        sched = self.schedule
        if sched.get("kind") == "plateau":
            shape = (f"lr x{sched.get('factor')} whenever validation does not improve "
                     f"(patience {sched.get('patience')})")
        else:
            shape = f"{sched.get('kind')} schedule"
        warm = sched.get("warmup_fraction") or 0
        warmup = f"warmup {warm:.0%} of the budget" if warm else "no warmup"
        clip = f"clip {self.grad_clip}" if self.grad_clip else "no clipping"
        tuned = ", ".join(f"{k} lr {low:g}-{high:g}" for k in self.optimizers for low, high in [self.lr_range(k)])
        return (f"{self.kind}{f' ({opt})' if opt else ''} lr {self.lr:g}, weight decay {self.weight_decay:g}, "
                f"{clip}, {shape}, {warmup}; tuned over {tuned} (log)"
                + (f", weight decay {self.weight_decay_range[0]:g}-{self.weight_decay_range[1]:g} (Adam family)"
                   if self.weight_decay_range else "")
                + (f". Source: {self.source}" if self.source else ""))


# Recurrent LMs: the word-level LSTM recipe of pytorch/examples (SGD lr 20, clip 0.25, lr / 4
# whenever validation stops improving, no weight decay); AdamW is searched beside it.
RECURRENT = Recipe(
    optimizer={"kind": "sgd"}, lr=20.0, weight_decay=0.0, grad_clip=0.25,
    schedule={"kind": "plateau", "factor": 0.25, "patience": 0, "threshold": 0.0, "warmup_steps": 0,
              "warmup_fraction": 0.0},
    tune_optimizers=("sgd", "adamw"), weight_decay_range=(0.0, 0.1),
    source="pytorch/examples word_language_model; SGD as in Zaremba et al. 2014 and Merity et al. 2018",
)

# Transformers: GPT practice as nanoGPT trains it on small data (AdamW with beta2 0.99 for few
# tokens per step, weight decay 0.1 on matrices, linear warmup, cosine to lr/10, clip 1.0).
ATTENTION = Recipe(
    optimizer={"kind": "adamw", "betas": [0.9, 0.99]}, lr=1e-3, weight_decay=0.1, grad_clip=1.0,
    schedule={"kind": "cosine", "warmup_fraction": 0.05, "warmup_steps": 0, "min_lr_ratio": 0.1},
    weight_decay_range=(0.0, 0.2),
    source="nanoGPT (config/train_shakespeare_char.py; GPT-2/GPT-3 practice: AdamW, warmup, cosine, clip 1.0)",
)

# Architectures that register no recipe: lmbench's general defaults.
DEFAULT = Recipe(
    optimizer={"kind": "adamw"}, lr=3e-3, weight_decay=0.01, grad_clip=1.0,
    schedule={"kind": "cosine", "min_lr_ratio": 0.1}, lr_ranges={"adamw": (3e-4, 1e-2)},
    weight_decay_range=(0.0, 0.1), source="lmbench's general defaults",
)
