"""The encoder-decoder model: how it splits a record, and that it learns prompt -> completion.

The registry contract tests (tests/models/test_models.py) cover seq2seq like every other architecture.
"""

from __future__ import annotations

import json

import pytest
import torch

from lmbench.config.spec import DataSpec, EvalSpec
from lmbench.data import BOS, EOS, PAD, prepare_data
from lmbench.data.pairs import TASKS, answer, generate_pairs
from lmbench.generation.bleu import bleu_eval
from lmbench.models import build_model
from lmbench.models.seq2seq import segment_masks
from lmbench.training.metrics import nll_sum

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_segment_masks_split_at_the_first_eos():
    idx = torch.tensor([[BOS, 7, 8, EOS, 9, EOS], [BOS, 7, 8, 9, 10, 11]])  # row 1: no separator (text)
    pos, enc, dec, cross = segment_masks(idx)
    assert pos.tolist() == [[0, 1, 2, 0, 1, 2], [0, 1, 2, 3, 4, 5]]  # positions restart at the separator
    e, d, c = enc[0, 0], dec[0, 0], cross[0, 0]
    assert e[:3, :3].all() and not e[:3, 3:].any()  # the encoder: bidirectional over BOS + prompt
    assert d[4].tolist() == [False, False, False, True, True, False]  # decoder: causal, own segment only
    assert d[2].tolist() == [True, True, True, False, False, False]  # prompt positions: causal LM
    assert c[:, 0].all()  # the null memory slot is always visible
    assert c[4, 1:].tolist() == [True, True, True, False, False, False]  # completion -> encoded prompt
    assert not c[:3, 1:].any()  # prompt positions see no encoder output
    assert not cross[1, 0, :, 1:].any() and torch.equal(dec[1, 0], torch.ones(6, 6, dtype=torch.bool).tril())


def test_completion_reads_the_whole_prompt_through_the_encoder():
    torch.manual_seed(0)
    model = build_model("seq2seq", 20, "small").eval()
    x = torch.tensor([[BOS, 5, 6, 7, EOS, 8, 9]])
    with torch.no_grad():
        base, _ = model(x)
        for i in (1, 3):  # the first and the last prompt token both reach the first completion step
            y = x.clone()
            y[0, i] = 12
            other, _ = model(y)
            assert not torch.allclose(base[0, 4], other[0, 4])


def test_pairs_task_is_deterministic_and_exact():
    a, b = generate_pairs(2000, 3), generate_pairs(2000, 3)
    assert a == b and a != generate_pairs(2000, 4)
    assert {p.split(":")[0] for p, _ in a} == set(TASKS)
    for prompt, completion in a[:50]:
        task, words = prompt.split(": ")
        assert completion == " ".join(answer(task, words.split()))
    assert answer("next", ["zulu", "alpha"]) == ["alpha", "bravo"]


def test_overfits_a_tiny_set_of_pairs_to_bleu_above_0_9(tmp_path):
    words = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen"]
    rng = torch.Generator().manual_seed(0)
    recs = []
    for _ in range(20):
        seq = [words[i] for i in torch.randint(0, len(words), (5,), generator=rng).tolist()]
        recs.append({"prompt": "reverse: " + " ".join(seq), "completion": " ".join(seq[::-1])})
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    data = prepare_data(DataSpec(source=str(path), split=(0.8, 0.1, 0.1)))
    torch.manual_seed(0)
    model = build_model("seq2seq", data.vocab_size, "small", {"d_model": 64, "n_layers": 2})
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    batches = data.train_batches(16, 32, seed=0)
    model.train()
    for k in range(150):
        b = batches.batch(k)
        loss = nll_sum(model(b.x)[0], b.y) / b.n_tokens
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert (b.y != PAD).sum() == b.n_tokens and (b.x == EOS).any()
    scores, samples = bleu_eval(model, data, "train", EvalSpec(samples=16))
    assert scores["bleu"] > 0.9, samples[:3]
    assert len(samples) == 16
