"""throughput: tokens/s of the lmbench loop, and model FLOPs/s as a fraction of the CPU's matmul peak.

The loop is ``Trainer.run`` (tracking off, no periodic eval in the timed window), timed over
several repetitions after warm-up; tokens/s is the median. Achieved FLOP/s =
``model.flops_per_token(seq_len) * tokens/s`` (training FLOPs: 6 x matmul weights + attention).
Peak = the best fp32 ``torch.mm`` rate (2 n^3 FLOPs per product, n = 1024 and 2048, all torch
threads), measured before and after the loop. MFU = achieved / peak.

Target (median of 5 repetitions of 100 steps; the summary gives their range): >= 15,360 tokens/s,
the rate that trains nanoGPT's CPU configuration (2000 steps of 12 x 64 tokens) in 100 s of steps.
"""

from __future__ import annotations

import statistics
import time

import common

TARGET_TOKENS_PER_SEC = 2000 * 12 * 64 / 100


def matmul_peak(sizes=(1024, 2048), reps: int = 5) -> dict[int, float]:
    """Best FLOP/s of an fp32 n x n matrix product for each n."""
    import torch

    best = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - t0)
        best[n] = 2 * n**3 / min(times)
    return best


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    steps, reps, warmup = (20, 2, 10) if args.smoke else (100, 5, 30)
    mm_reps = 2 if args.smoke else 5

    import torch

    from lmbench.data import prepare_data

    spec = common.bench_spec(f"train.eval_interval={common.NEVER}",
                             f"train.checkpoint_interval={common.NEVER}")
    data = prepare_data(spec.data)
    peak_before = matmul_peak(reps=mm_reps)
    tr = common.make_trainer(spec, data)
    common.run_more(tr, warmup)
    tokens_per_step = tr.batcher.batch_size * tr.batcher.seq_len
    rates = []
    for i in range(reps):
        dt = common.timed(lambda: common.run_more(tr, steps))
        rates.append(steps * tokens_per_step / dt)
        common.say(f"throughput rep {i + 1}/{reps}: {rates[-1]:,.0f} tokens/s")
    peak_after = matmul_peak(reps=mm_reps)

    tps = statistics.median(rates)
    fpt = tr.model.flops_per_token(spec.data.seq_len)
    achieved = fpt * tps
    peak = max(*peak_before.values(), *peak_after.values())
    mfu = achieved / peak
    common.emit(common.result(
        "throughput", value=tps, unit="tokens/s", target=f">= {TARGET_TOKENS_PER_SEC:,.0f} tokens/s",
        passed=tps >= TARGET_TOKENS_PER_SEC,
        summary=(f"{common.span(common.spread(rates), '{:,.0f}')} tokens/s; {achieved / 1e9:.2f} GFLOP/s of "
                 f"{peak / 1e9:.1f} peak "
                 f"= MFU {100 * mfu:.1f}%"),
        details={
            "tokens_per_sec_median": tps, "tokens_per_sec_best": max(rates), "tokens_per_sec_reps": rates, "tokens_per_step": tokens_per_step,
            "steps_per_rep": steps, "warmup_steps": warmup, "flops_per_token": fpt,
            "achieved_gflops": achieved / 1e9, "peak_gflops": peak / 1e9, "mfu": mfu,
            "matmul_gflops_before": {n: f / 1e9 for n, f in peak_before.items()},
            "matmul_gflops_after": {n: f / 1e9 for n, f in peak_after.items()},
            "num_params": tr.model.num_params(), "torch_threads": torch.get_num_threads(),
        },
        smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
