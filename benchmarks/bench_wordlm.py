"""word_lm_reference: the classic word-level LSTM recipe in lmbench against a bare PyTorch loop.

pytorch/examples word_language_model's model and recipe (``experiments/shakespeare_word_lstm.yaml``):
a 2-layer 200-wide LSTM with dropout 0.2, bptt 35, batch 20, SGD at lr 20 with gradient clipping
0.25, and the learning rate divided by 4 whenever the validation loss does not improve (checked
after each epoch), on Tiny Shakespeare at the word level with a 10,000-word vocabulary (PTB's size).

* A, lmbench: ``Trainer.run`` with the lstm's registered recipe (SGD, ``plateau`` with factor 0.25,
  patience 0, threshold 0), contiguous streams with the hidden state carried, evaluation and the
  ``best`` checkpoint every epoch.
* B, bare: the word_language_model loop written out - forward with the detached hidden state,
  ``cross_entropy``, backward, ``clip_grad_norm_``, ``p -= lr * grad``; after each epoch the loss
  on the same validation batches, ``torch.save`` of the weights when it improved, else ``lr /= 4``.

Both start from the same weights and the same torch RNG state (each loop keeps its own RNG state,
swapped in around its work, so dropout draws the same masks as if it ran alone) and read the same
batches (``data.train_batches(20, 35, seed, "stream").batch(k)``). Epochs alternate A B A B; the
first 50 steps of each are run one by one to compare their losses. Judged: per-step training
losses equal within 1e-5 for the first 50 steps; final validation perplexity (best weights, whole
split) within 1%; time ratio A/B (median over epochs) <= 1.05. ``--epochs N`` (default 6) sets the
length; ``--smoke`` runs two 60-step "epochs" (not judged).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from pathlib import Path

import common

SPEC_PATH = common.REPO / "experiments" / "shakespeare_word_lstm.yaml"
EQUAL_STEPS, LOSS_TOL, PPL_TOL, TIME_TARGET = 50, 1e-5, 0.01, 1.05
VOCAB = 10_000


class BareLoop:
    """word_language_model's training loop, on lmbench's model object and batches."""

    def __init__(self, model, data, spec):
        import torch

        t = spec.train
        self.model, self.data, self.spec = model, data, spec
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.batcher = data.train_batches(t.batch_size, spec.data.seq_len, t.seed, "stream")
        self.lr, self.clip, self.step, self.hidden = t.lr, t.grad_clip, 0, None
        self.best, self.best_path = math.inf, Path("bare-best.pt")
        self.rng = torch.get_rng_state()

    def train(self, steps: int, record: list[float] | None = None) -> None:
        import torch
        import torch.nn.functional as F

        from lmbench.data import PAD

        self.model.train()
        for _ in range(steps):
            batch = self.batcher.batch(self.step)
            logits, hidden = self.model(batch.x, self.hidden if batch.carry else None)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch.y.reshape(-1), ignore_index=PAD)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            with torch.no_grad():
                for p in self.params:
                    p.add_(p.grad, alpha=-self.lr)
                    p.grad = None
            self.hidden = self.model.detach_state(hidden)
            self.step += 1
            if record is not None:
                record.append(loss.item())

    def val_loss(self) -> float:
        import torch
        import torch.nn.functional as F

        from lmbench.data import PAD

        t = self.spec.train
        self.model.eval()
        nll, tokens, state = 0.0, 0, None
        with torch.no_grad():
            for batch in self.data.eval_batches("val", t.batch_size, self.spec.data.seq_len, t.eval_tokens):
                logits, state = self.model(batch.x, state if batch.carry else None)
                nll += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch.y.reshape(-1),
                                             ignore_index=PAD, reduction="sum"))
                tokens += batch.n_tokens
        self.model.train()
        return nll / tokens

    def end_of_epoch(self) -> None:
        """Save the best weights, or anneal: ``lr /= 4`` when validation did not improve."""
        import torch

        loss = self.val_loss()
        if loss < self.best:
            self.best = loss
            torch.save(self.model.state_dict(), self.best_path)
        else:
            self.lr /= 4.0

    def final_ppl(self) -> float:
        import torch

        self.model.load_state_dict(torch.load(self.best_path, weights_only=True))
        return math.exp(self.val_loss())


def own_rng(holder, work):
    """Run ``work()`` with the torch RNG state ``holder.rng`` and keep the state it leaves."""
    import torch

    torch.set_rng_state(holder.rng)
    out = work()
    holder.rng = torch.get_rng_state()
    return out


def setup_loops(epoch_steps: int | None, epochs: int):
    """lmbench's Trainer and the bare loop, from the same weights and RNG state."""
    import torch

    from lmbench.config import load_spec
    from lmbench.data import prepare_data

    spec = load_spec(SPEC_PATH, ["train.device=cpu", f"data.vocab_size={VOCAB}",
                                 f"train.checkpoint_interval={common.NEVER}"])
    data = prepare_data(spec.data)
    bpe = epoch_steps or data.train_batches(spec.train.batch_size, spec.data.seq_len, spec.train.seed,
                                            "stream").batches_per_epoch
    spec = load_spec(SPEC_PATH, ["train.device=cpu", f"data.vocab_size={VOCAB}", f"train.eval_interval={bpe}",
                                 f"train.checkpoint_interval={common.NEVER}", f"train.budget={{steps: {bpe * epochs}}}"])
    lm = common.make_trainer(spec, data)
    lm.rng = torch.get_rng_state()  # right after seeding and building: where the bare loop starts too
    bare = BareLoop(copy.deepcopy(lm.model), data, spec)
    return spec, data, lm, bare, bpe


def compare_losses(lm, bare) -> list[float]:
    """The first EQUAL_STEPS steps one by one: the per-step losses of A and B."""
    mine, theirs = [], []

    def lm_steps():
        for _ in range(EQUAL_STEPS):
            batch = lm.batcher.batch(lm.loop.step)
            mine.append(float(lm.train_step()) / batch.n_tokens)

    own_rng(lm, lm_steps)
    own_rng(bare, lambda: bare.train(EQUAL_STEPS, theirs))
    return [abs(a - b) for a, b in zip(mine, theirs, strict=True)]


def timed_epochs(lm, bare, bpe: int, epochs: int) -> tuple[list[float], list[float]]:
    """The rest of the run, epoch by epoch, A then B; seconds of each (evaluation included)."""
    a_times, b_times = [], []
    for epoch in range(epochs):
        steps = bpe - EQUAL_STEPS if epoch == 0 else bpe
        t0 = time.perf_counter()
        own_rng(lm, lambda steps=steps: common.run_more(lm, steps))
        a_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        own_rng(bare, lambda steps=steps: (bare.train(steps), bare.end_of_epoch()))
        b_times.append(time.perf_counter() - t0)
        common.say(f"epoch {epoch + 1}/{epochs}: lmbench {a_times[-1]:.1f}s, bare {b_times[-1]:.1f}s, "
                   f"lr {lm.last_lr:g} / {bare.lr:g}")
    return a_times, b_times


def main() -> None:
    args = common.parse_args(__doc__, lambda p: p.add_argument("--epochs", type=int, default=6,
                                                               help="epochs of the train split (default 6)"))
    common.setup(args)
    import torch

    epochs = 2 if args.smoke else args.epochs
    spec, data, lm, bare, bpe = setup_loops(60 if args.smoke else None, epochs)
    common.say(f"{data.vocab_size:,} words, {bpe} steps per epoch, {epochs} epochs, torch threads "
               f"{torch.get_num_threads()}")
    diffs = compare_losses(lm, bare)
    a_times, b_times = timed_epochs(lm, bare, bpe, epochs)
    ppl_lm = lm.final_eval(("val",))["final_val_ppl"]
    ppl_bare = bare.final_ppl()
    ratio = common.ratio_stats(a_times, b_times)
    checks = {"losses": max(diffs) <= LOSS_TOL, "ppl": abs(ppl_lm / ppl_bare - 1) <= PPL_TOL,
              "time": ratio["median"] <= TIME_TARGET}
    judged = not args.smoke
    common.emit(common.result(
        "word_lm_reference", value=ratio["median"], unit="x",
        target=f"first {EQUAL_STEPS} losses within {LOSS_TOL:g}, val ppl within {PPL_TOL:.0%}, time <= {TIME_TARGET}x",
        passed=all(checks.values()) if judged else None,
        summary=(f"max |loss diff| {max(diffs):.1e} over the first {EQUAL_STEPS} steps; val ppl {ppl_lm:.2f} vs bare "
                 f"{ppl_bare:.2f} ({ppl_lm / ppl_bare - 1:+.2%}); time {ratio['median']:.3f}x "
                 f"({statistics.median(a_times):.1f} vs {statistics.median(b_times):.1f} s/epoch); "
                 f"{epochs} epochs of {bpe} steps" + ("" if judged else " [smoke: not judged]")),
        details={"loss_diffs": diffs, "ppl": {"lmbench": ppl_lm, "bare": ppl_bare}, "ratio": ratio,
                 "lmbench_s_per_epoch": a_times, "bare_s_per_epoch": b_times, "checks": checks,
                 "final_lr": {"lmbench": lm.last_lr, "bare": bare.lr}, "vocab": data.vocab_size,
                 "steps_per_epoch": bpe, "epochs": epochs, "torch_threads": torch.get_num_threads()},
        smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
