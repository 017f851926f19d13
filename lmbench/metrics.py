"""Evaluation metrics: pure functions over logits/targets and summed statistics.

Loss is always the token-weighted mean negative log-likelihood over non-pad targets: we sum the
NLL and count the tokens over a whole split and divide once, never average per-batch means
(which would over-weight short or padded batches).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PAD = 3  # fixed pad id (design.md section 3); targets equal to PAD are ignored


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


# ---------------------------------------------------------------------------------------------
# BLEU

_BLEU_TOKEN = re.compile(r"\w+|[^\w\s]")


def bleu_tokens(text: str) -> list[str]:
    """Words and single punctuation marks: a tokenisation that needs no downloaded data."""
    return _BLEU_TOKEN.findall(text)


def corpus_bleu(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus BLEU-4 of ``hypotheses`` against one reference each, in [0, 1].

    ``bleu`` is nltk's ``corpus_bleu`` (uniform 1-4-gram weights, smoothing method 1: a zero
    n-gram count becomes 0.1, so one missing 4-gram does not zero a corpus); ``p1``..``p4`` are
    the unsmoothed corpus-level modified n-gram precisions and ``bp`` the brevity penalty, from
    the same nltk functions. An empty hypothesis corpus (no tokens at all) scores 0.
    """
    from nltk.translate.bleu_score import (
        SmoothingFunction,
        brevity_penalty,
        closest_ref_length,
        modified_precision,
    )
    from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [[bleu_tokens(r)] for r in references]
    hyps = [bleu_tokens(h) for h in hypotheses]
    num, den = [0] * 4, [0] * 4
    for r, h in zip(refs, hyps, strict=True):
        for n in range(4):
            p = modified_precision(r, h, n + 1)
            num[n] += p.numerator
            den[n] += p.denominator
    hyp_len = sum(len(h) for h in hyps)
    ref_len = sum(closest_ref_length(r, len(h)) for r, h in zip(refs, hyps, strict=True))
    bleu = nltk_corpus_bleu(refs, hyps, smoothing_function=SmoothingFunction().method1) if hyps else 0.0
    out = {"bleu": float(bleu), "bp": float(brevity_penalty(ref_len, hyp_len))}
    out.update({f"p{n + 1}": num[n] / den[n] if den[n] else 0.0 for n in range(4)})
    return out
