"""BLEU: golden hand-computed values and agreement with nltk called directly."""

from __future__ import annotations

import math
import random

import pytest
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu

from lmbench.generation.bleu import bleu_tokens, corpus_bleu


def _nltk(refs: list[str], hyps: list[str]) -> float:
    return nltk_corpus_bleu([[r.split()] for r in refs], [h.split() for h in hyps],
                            smoothing_function=SmoothingFunction().method1)


def test_hand_computed_sentence():
    # hypothesis vs reference: 5/6 unigrams, 3/5 bigrams, 2/4 trigrams, 1/3 4-grams match; same length
    out = corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert (out["p1"], out["p2"], out["p3"], out["p4"]) == pytest.approx((5 / 6, 3 / 5, 2 / 4, 1 / 3))
    assert out["bp"] == 1.0
    assert out["bleu"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)


def test_identical_corpus_is_one():
    refs = ["alpha bravo charlie delta", "echo foxtrot golf hotel india"]
    out = corpus_bleu(refs, refs)
    assert out == pytest.approx({"bleu": 1.0, "bp": 1.0, "p1": 1.0, "p2": 1.0, "p3": 1.0, "p4": 1.0})


def test_short_hypothesis_brevity_penalty_and_smoothing():
    out = corpus_bleu(["the cat sat on the mat"], ["the cat"])
    assert out["bp"] == pytest.approx(math.exp(1 - 6 / 2))
    assert (out["p1"], out["p2"], out["p3"], out["p4"]) == (1.0, 1.0, 0.0, 0.0)
    # method 1 smoothing: a zero count becomes 0.1 (over a denominator of at least 1)
    assert out["bleu"] == pytest.approx(math.exp(1 - 3) * (1 * 1 * 0.1 * 0.1) ** 0.25)
    assert out["bleu"] == pytest.approx(_nltk(["the cat sat on the mat"], ["the cat"]))


def test_empty_hypotheses():
    refs = ["the cat sat on the mat", "a b c"]
    assert corpus_bleu(refs, ["", ""]) == {"bleu": 0.0, "bp": 0.0, "p1": 0.0, "p2": 0.0, "p3": 0.0, "p4": 0.0}
    assert corpus_bleu([], [])["bleu"] == 0.0
    # one empty hypothesis among good ones: the corpus counts it as it is (no n-grams, length 0)
    hyps = ["the cat sat on the mat", ""]
    out = corpus_bleu(refs, hyps)
    assert out["bleu"] == pytest.approx(_nltk(refs, hyps)) and 0 < out["bleu"] < 1
    assert out["bp"] == pytest.approx(math.exp(1 - 9 / 6))


def test_agrees_with_nltk_on_random_corpora():
    rng = random.Random(0)
    words = list("abcdefgh")
    for _ in range(20):
        n = rng.randint(1, 8)
        refs = [" ".join(rng.choices(words, k=rng.randint(0, 12))) for _ in range(n)]
        hyps = [" ".join(rng.choices(words, k=rng.randint(0, 12))) for _ in range(n)]
        assert corpus_bleu(refs, hyps)["bleu"] == pytest.approx(_nltk(refs, hyps), abs=1e-12)


def test_tokenisation_needs_no_downloads_and_splits_punctuation():
    assert bleu_tokens("Hello, world! it's 3.5") == ["Hello", ",", "world", "!", "it", "'", "s", "3", ".", "5"]
    assert bleu_tokens("  ") == []
    # punctuation is scored as tokens: a missing comma costs precision/recall
    assert corpus_bleu(["yes, sir"], ["yes sir"])["p1"] == 1.0
    assert corpus_bleu(["yes, sir"], ["yes sir"])["bp"] < 1.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        corpus_bleu(["a", "b"], ["a"])
