"""Metric golden tests: values computed by hand from small probability tables."""

import math

import pytest
import torch

from lmbench.data.tokenizers import PAD
from lmbench.training.metrics import EvalSums, correct_sum, nll_sum, summarize


def logits_from_probs(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float64))


def test_nll_and_accuracy_by_hand():
    # one sequence, vocab 4 (id 3 is pad); targets 0, 1, pad
    logits = logits_from_probs([[[0.5, 0.25, 0.125, 0.125], [0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]]])
    targets = torch.tensor([[0, 1, PAD]])
    assert nll_sum(logits, targets).item() == pytest.approx(-math.log(0.5) - math.log(0.6))
    assert correct_sum(logits, targets).item() == 2


def test_loss_is_token_weighted_not_mean_of_batch_means():
    # batch A: 3 tokens each with p=0.5; batch B: 1 token with p=0.1 (plus 2 pads)
    a = logits_from_probs([[[0.5, 0.5, 1e-9, 1e-9]] * 3])
    b = logits_from_probs([[[0.1, 0.9, 1e-9, 1e-9]] * 3])
    ta, tb = torch.tensor([[0, 0, 0]]), torch.tensor([[0, PAD, PAD]])
    sums = EvalSums(nll_sum(a, ta).item(), 3, 0).add(EvalSums(nll_sum(b, tb).item(), 1, 0))
    expected = (3 * -math.log(0.5) - math.log(0.1)) / 4
    mean_of_means = (-math.log(0.5) - math.log(0.1)) / 2
    m = summarize(sums)
    assert m["loss"] == pytest.approx(expected, rel=1e-6)
    assert m["loss"] != pytest.approx(mean_of_means, rel=1e-3)
    assert m["ppl"] == pytest.approx(math.exp(expected), rel=1e-6)
    assert m["bits_per_token"] == pytest.approx(expected / math.log(2), rel=1e-6)


def test_bits_per_char_floor_and_excess():
    sums = EvalSums(nll=100.0, tokens=50, correct=10)
    m = summarize(sums, n_chars=200, floor=1.5)
    assert m["loss"] == 2.0
    assert m["accuracy"] == 0.2
    assert m["bits_per_char"] == pytest.approx(100.0 / (math.log(2) * 200))
    assert m["floor"] == 1.5 and m["excess"] == pytest.approx(0.5)


def test_uniform_model_has_perplexity_vocab():
    v = 17
    logits = torch.zeros(2, 5, v)
    targets = torch.randint(0, v, (2, 5))
    targets[targets == PAD] = 0
    m = summarize(EvalSums(nll_sum(logits, targets).item(), 10, 0))
    assert m["ppl"] == pytest.approx(v, rel=1e-5)


def test_no_tokens_is_an_error():
    with pytest.raises(ValueError):
        summarize(EvalSums())
