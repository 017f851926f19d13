"""Optimizers and batch orders in the real loop: SGD against a hand-written update, the random
order resumed bit for bit, old checkpoints keeping their order, every schedule with every optimizer."""

from __future__ import annotations

import copy

import pytest
import torch

from lmbench.config import build_spec
from lmbench.data import RandomTextBatcher, TextBatcher, prepare_data
from lmbench.training.loop import Built, Trainer
from lmbench.training.metrics import nll_sum

SMALL = ["model.preset=small", "data.size=8000", "data.seq_len=16", "train.batch_size=4", "train.device=cpu",
         "train.budget={steps: 12}", "train.eval_interval=1000", "train.checkpoint_interval=1000"]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Bit-for-bit comparisons and 2 shared cores: one intra-op thread."""


def trainer(tmp_path, *overrides: str) -> Trainer:
    spec = build_spec({"name": "opt"}, [*SMALL, *overrides])
    data = prepare_data(spec.data)
    return Trainer(spec, data, Built.of(spec, data.vocab_size), run_id="t", ckpt_root=tmp_path / "ckpt", quiet=True)


def test_sgd_matches_a_hand_written_update(tmp_path):
    """Three steps of lmbench's SGD (momentum, Nesterov, weight decay on matrices only, gradient
    clipping) equal the textbook update written out here, on the same batches."""
    lr, momentum, decay, clip = 0.5, 0.9, 0.01, 0.3
    tr = trainer(tmp_path, "model.arch=gpt", "model.config.dropout=0.0", f"train.lr={lr}",
                 f"train.optimizer={{kind: sgd, momentum: {momentum}, nesterov: true}}",
                 f"train.weight_decay={decay}", f"train.grad_clip={clip}", "train.schedule.kind=constant")
    hand = copy.deepcopy(tr.model)
    params = [p for p in hand.parameters() if p.requires_grad]
    bufs: list[torch.Tensor | None] = [None] * len(params)
    for step in range(3):
        tr.train_step()
        batch = tr.batcher.batch(step)
        logits, _ = hand(batch.x)
        (nll_sum(logits, batch.y) / batch.n_tokens).backward()
        with torch.no_grad():
            norm = torch.sqrt(sum((p.grad**2).sum() for p in params))
            scale = min(1.0, clip / (float(norm) + 1e-6))
            for i, p in enumerate(params):
                grad = p.grad * scale + (decay * p if p.dim() >= 2 else 0.0)
                bufs[i] = grad.clone() if bufs[i] is None else momentum * bufs[i] + grad
                p -= lr * (grad + momentum * bufs[i])
                p.grad = None
    for mine, theirs in zip(tr.model.parameters(), hand.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["adamw", "adam", "sgd"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "exponential", "plateau"])
def test_every_schedule_runs_with_every_optimizer(kind, schedule, tmp_path):
    tr = trainer(tmp_path, "model.arch=gru", f"train.optimizer={kind}", f"train.schedule.kind={schedule}",
                 "train.schedule.warmup_fraction=0.25", "train.eval_interval=4", "train.budget={steps: 8}",
                 "train.eval_tokens=200", "train.lr=0.01")
    tr.run()
    lrs = [g["lr"] for g in tr.opt.param_groups]
    assert tr.loop.step == 8 and all(lr == tr.last_lr for lr in lrs) and 0 < tr.last_lr <= 0.01
    assert type(tr.opt).__name__.lower() == kind


def test_random_order_is_reproducible_and_resumes_bit_exact(tmp_path):
    """auto gives a stateless model the random order; stopping at step 5 and resuming from the
    checkpointed state gives the same losses and weights, bit for bit."""
    full = trainer(tmp_path / "a", "model.arch=gpt", "model.config.dropout=0.1", "train.deterministic=true")
    assert full.order == "random" and isinstance(full.batcher, RandomTextBatcher)
    losses = [float(full.train_step()) for _ in range(10)]

    first = trainer(tmp_path / "b", "model.arch=gpt", "model.config.dropout=0.1", "train.deterministic=true")
    head = [float(first.train_step()) for _ in range(5)]
    state, weights = copy.deepcopy(first.state_dict()), copy.deepcopy(first.model.state_dict())
    resumed = trainer(tmp_path / "c", "model.arch=gpt", "model.config.dropout=0.1", "train.deterministic=true")
    resumed.train_step()  # move its weights, RNG and optimizer away: the checkpoint must restore them
    resumed.model.load_state_dict(weights)
    resumed.load_state_dict(state)
    tail = [float(resumed.train_step()) for _ in range(5)]
    assert head + tail == losses
    for mine, theirs in zip(resumed.model.parameters(), full.model.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_stateful_models_stream_and_old_checkpoints_keep_streams(tmp_path):
    lstm = trainer(tmp_path / "a", "model.arch=lstm")
    assert lstm.order == "stream" and isinstance(lstm.batcher, TextBatcher)
    forced = trainer(tmp_path / "b", "model.arch=lstm", "data.order=random")
    assert forced.order == "random" and not any(forced.batcher.batch(k).carry for k in range(5))
    gpt = trainer(tmp_path / "c", "model.arch=gpt")
    state = gpt.state_dict()
    del state["order"]  # a checkpoint written before data.order existed trained on streams
    gpt.load_state_dict(state)
    assert gpt.order == "stream" and isinstance(gpt.batcher, TextBatcher)
