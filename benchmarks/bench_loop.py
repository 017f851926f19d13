"""loop_overhead: lmbench's training loop vs a bare PyTorch loop, same model, batches and optimizer.

A (lmbench): ``Trainer.run`` driving ``Trainer.train_step``, with its schedule, grad clipping,
loss accumulation and log-interval bookkeeping; tracking off; no periodic eval or checkpoint
inside the timed window. B (bare): forward, ``cross_entropy(ignore_index=PAD)``, backward,
``clip_grad_norm_``, ``step``, ``zero_grad`` on the same batches
(``data.train_batches(12, 64, seed, order).batch(k)``, the order the Trainer resolved: random
windows for this GPT) with the optimizer from lmbench's
``make_optimizer``. Both live in one process; warm-up steps are not timed; repetitions alternate
A/B and the result is the median of the per-pair ratios of seconds per step (5 pairs of 100
steps; the summary gives their range). Target: median ratio <= 1.05.
"""

from __future__ import annotations

import statistics

import common

TARGET = 1.05


class BareLoop:
    """The plain PyTorch loop an lmbench user would otherwise write."""

    def __init__(self, spec, data, order: str):
        import torch

        from lmbench.models import build_model
        from lmbench.training.loop import make_optimizer

        t, m = spec.train, spec.model
        torch.manual_seed(t.seed)  # the Trainer seeds the same way: identical initial weights
        self.model = build_model(m.arch, data.vocab_size, m.preset, m.config)
        self.model.train()
        self.opt = make_optimizer(self.model, t, torch.device("cpu"))
        self.batcher = data.train_batches(t.batch_size, spec.data.seq_len, t.seed, order)
        self.clip = t.grad_clip
        self.step = 0

    def run(self, steps: int) -> float:
        """``steps`` optimizer steps; returns the last loss (one sync, after the loop)."""
        import torch
        import torch.nn.functional as F

        from lmbench.data import PAD

        params = list(self.model.parameters())
        for _ in range(steps):
            b = self.batcher.batch(self.step)
            logits, _ = self.model(b.x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), b.y.view(-1), ignore_index=PAD)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, self.clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.step += 1
        return float(loss.item())


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    steps, pairs, warmup = (20, 2, 10) if args.smoke else (100, 5, 30)

    import torch

    from lmbench.data import prepare_data

    spec = common.bench_spec(f"train.eval_interval={common.NEVER}",
                             f"train.checkpoint_interval={common.NEVER}")
    data = prepare_data(spec.data)
    lm = common.make_trainer(spec, data)
    bare = BareLoop(spec, data, lm.order)

    # Same computation check: the very first step sees the same weights and the same batch.
    first_lm = float(lm.train_step()) / lm.batcher.batch(0).n_tokens
    first_bare = bare.run(1)
    common.say(f"first-step loss: lmbench {first_lm:.5f}, bare {first_bare:.5f}")
    common.run_more(lm, warmup - 1)
    bare.run(warmup - 1)

    a, b = common.interleaved(pairs, lambda: common.timed(lambda: common.run_more(lm, steps)),
                              lambda: common.timed(lambda: bare.run(steps)), "loop")
    stats = common.ratio_stats(a, b)
    ratio = stats["median"]
    ms_a = 1e3 * statistics.median(a) / steps
    ms_b = 1e3 * statistics.median(b) / steps
    tokens = spec.train.batch_size * spec.data.seq_len
    common.emit(common.result(
        "loop_overhead", value=ratio, unit="x", target=f"<= {TARGET}", passed=ratio <= TARGET,
        summary=f"{common.span(stats, '{:.3f}')}x  (lmbench {ms_a:.1f} ms/step vs bare {ms_b:.1f} ms/step)",
        details={
            "ratio": stats, "steps_per_rep": steps, "pairs": pairs, "warmup_steps": warmup,
            "lmbench_s_per_rep": a, "bare_s_per_rep": b, "lmbench_ms_per_step": ms_a,
            "bare_ms_per_step": ms_b, "tokens_per_step": tokens,
            "first_step_loss": {"lmbench": first_lm, "bare": first_bare},
            "torch_threads": torch.get_num_threads(),
        },
        smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
