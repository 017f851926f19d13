"""Evaluation metrics: pure functions over logits/targets and summed statistics.

Loss is always the token-weighted mean negative log-likelihood over non-pad targets: we sum the
NLL and count the tokens over a whole split and divide once, never average per-batch means
(which would over-weight short or padded batches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lmbench.data.tokenizers import PAD  # targets equal to PAD are ignored


def nll_sum(logits: torch.Tensor, targets: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Summed NLL (nats) over non-pad targets. logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=pad, reduction="sum"
    )


def correct_sum(logits: torch.Tensor, targets: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Number of non-pad targets whose top-1 prediction is right."""
    hit = (logits.argmax(-1) == targets) & (targets != pad)
    return hit.sum()


@dataclass
class EvalSums:
    """Sums over a split; kept as host floats so they can be merged and logged."""

    nll: float = 0.0
    tokens: int = 0
    correct: int = 0

    def add(self, other: EvalSums) -> EvalSums:
        return EvalSums(self.nll + other.nll, self.tokens + other.tokens, self.correct + other.correct)


def summarize(sums: EvalSums, n_chars: float | None = None, floor: float | None = None) -> dict[str, float]:
    """Turn summed statistics into reported metrics.

    loss = nll / tokens, perplexity = exp(loss), bits per token = loss / ln 2; bits per character
    = total nll / (ln 2 * characters) when the character count of the split is known; on the
    synthetic corpus, ``floor`` (the generator's exact per-token NLL) gives the excess loss.
    """
    if sums.tokens <= 0:
        raise ValueError("no target tokens were evaluated")
    loss = sums.nll / sums.tokens
    out = {
        "loss": loss,
        "ppl": perplexity(loss),
        "accuracy": sums.correct / sums.tokens,
        "bits_per_token": loss / math.log(2),
        "tokens": float(sums.tokens),
    }
    if n_chars:
        out["bits_per_char"] = sums.nll / (math.log(2) * n_chars)
    if floor is not None:
        out["floor"] = floor
        out["excess"] = loss - floor
    return out


def perplexity(loss: float) -> float:
    """exp(loss), saturating at inf instead of raising for absurd losses."""
    return math.exp(loss) if loss < 700 else math.inf
