"""Default budgets that scale with the corpus.

The fixed defaults (400k training tokens per final run, 200k per trial) suit the embedded
generated corpora, whose size the spec chooses. A named or user corpus can be much larger than
that - 400k tokens is a third of an epoch of Tiny Shakespeare at the character level - so there
an unset budget becomes one epoch of the train split (at least the fixed default, at most
:data:`MAX_DEFAULT_TOKENS`), and an unset trial budget half the final one, as the fixed defaults
are. A budget the user set (in the YAML, with ``--set``, ``--steps``/``--tokens`` or ``--quick``) is
never changed. The reasons are returned in words for the command to print.
"""

from __future__ import annotations

from lmbench.config.raw import is_set
from lmbench.config.spec import BudgetSpec, ExperimentSpec, SearchSpec, TrainSpec

GENERATED = ("synthetic", "synthetic-pairs")  # sized by data.size: the fixed defaults fit them
MAX_DEFAULT_TOKENS = 5_000_000  # one epoch of WikiText-2 or PTB; bigger corpora: set train.budget
DEFAULT_FINAL_TOKENS = TrainSpec.model_fields["budget"].default_factory().tokens
DEFAULT_TRIAL_TOKENS = SearchSpec.model_fields["budget"].default_factory().tokens


def final_tokens(train_tokens: int) -> tuple[int, str]:
    """The default final budget for a train split of ``train_tokens`` tokens, and why."""
    epochs = lambda tokens: f"{tokens / train_tokens:.2g} epochs of the {train_tokens:,}-token train split"  # noqa: E731
    if train_tokens > MAX_DEFAULT_TOKENS:
        return MAX_DEFAULT_TOKENS, (f"{epochs(MAX_DEFAULT_TOKENS)}: the default is capped at "
                                    f"{MAX_DEFAULT_TOKENS:,} tokens; set train.budget for more")
    if train_tokens < DEFAULT_FINAL_TOKENS:
        return DEFAULT_FINAL_TOKENS, f"the fixed default, {epochs(DEFAULT_FINAL_TOKENS)}"
    return train_tokens, (f"one epoch of the train split: the fixed default of {DEFAULT_FINAL_TOKENS:,} tokens "
                          "would not see the whole corpus")


def half(budget: BudgetSpec) -> BudgetSpec:
    """Half a budget in its own unit (a trial's share of a final run, as the fixed defaults)."""
    if budget.kind == "tokens":
        return BudgetSpec(tokens=max(min(DEFAULT_TRIAL_TOKENS, budget.tokens), budget.tokens // 2))
    if budget.kind == "steps":
        return BudgetSpec(steps=max(1, budget.steps // 2))
    return BudgetSpec(seconds=budget.seconds / 2)


def scaled_budgets(spec: ExperimentSpec, train_tokens: int) -> tuple[ExperimentSpec, list[str]]:
    """``spec`` with its unset budgets sized to a corpus of ``train_tokens`` training tokens, and
    one line per budget chosen saying why (none for generated corpora or budgets the user set)."""
    from lmbench.config.load import build_spec
    from lmbench.config.raw import dump_raw

    if spec.data.source in GENERATED:
        return spec, []
    overrides, notes = [], []
    final = spec.train.budget
    if not is_set(spec.train, "budget"):
        tokens, why = final_tokens(train_tokens)
        final = BudgetSpec(tokens=tokens)
        overrides.append(f"train.budget={{tokens: {tokens}}}")
        notes.append(f"train.budget: {tokens:,} tokens per final run ({why})")
    if not is_set(spec.search, "budget"):
        trial = half(final)
        amount = f"{trial.amount:,}" if trial.kind != "seconds" else f"{trial.amount:g}"
        overrides.append(f"search.budget={{{trial.kind}: {trial.amount}}}")
        notes.append(f"search.budget: {amount} {trial.kind} per trial (half the final budget, as the "
                     f"fixed defaults {DEFAULT_TRIAL_TOKENS:,} / {DEFAULT_FINAL_TOKENS:,})")
    if not overrides:
        return spec, []
    return build_spec(dump_raw(spec), overrides), notes
