"""BLEU of generated text, during training and at the final evaluation.

Prompt/completion records are decoded from ``[BOS] prompt [EOS]`` (the separator the model was
trained with) until EOS; plain text is cut into (prefix, continuation) pairs of
``eval.prefix_tokens`` and ``eval.continuation_tokens`` tokens."""

from __future__ import annotations

import re

from lmbench.generation.decoding import generate_ids

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

    # imported here: nltk (and scikit-learn through it) adds ~0.6 s to every process that trains
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
    for ref_set, hyp_tokens in zip(refs, hyps, strict=True):
        for index in range(4):
            precision = modified_precision(ref_set, hyp_tokens, index + 1)
            num[index] += precision.numerator
            den[index] += precision.denominator
    hyp_len = sum(len(h) for h in hyps)
    ref_len = sum(closest_ref_length(r, len(h)) for r, h in zip(refs, hyps, strict=True))
    bleu = nltk_corpus_bleu(refs, hyps, smoothing_function=SmoothingFunction().method1) if hyps else 0.0
    out = {"bleu": float(bleu), "bp": float(brevity_penalty(ref_len, hyp_len))}
    out.update({f"p{n + 1}": num[n] / den[n] if den[n] else 0.0 for n in range(4)})
    return out


def bleu_eval(model, data, split: str, ev, limit: int | None = None) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Generate for the held-out prompts of ``split`` and score corpus BLEU-4.

    Returns ``({"bleu", "bp", "p1".."p4"}, samples)`` with samples the first ``ev.samples`` rows
    ``{"prompt", "reference", "generation"}``. ``limit`` defaults to ``ev.bleu_prompts``.
    """
    pairs = data.generation_pairs(split, ev, limit if limit is not None else ev.bleu_prompts)
    if not pairs.prompt_ids:
        raise ValueError(f"the {split} split has no prompts to generate from")
    was_training = model.training
    gens = generate_ids(model, pairs.prompt_ids, ev.generation, max_tokens=pairs.max_tokens)
    model.train(was_training)
    texts = [data.tokenizer.decode(g) for g in gens]
    scores = corpus_bleu(pairs.references, texts)
    samples = [{"prompt": p, "reference": r, "generation": g}
               for p, r, g in list(zip(pairs.prompts, pairs.references, texts, strict=True))[: ev.samples]]
    return scores, samples


def bleu_enabled(ev, data) -> bool:
    """``eval.bleu``: on by default for prompt/completion data, off for plain text."""
    return data.kind_of.bleu_by_default if ev.bleu is None else ev.bleu
