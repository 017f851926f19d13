"""workers_scaling: trials per hour with `--workers 2` vs `--workers 1` on this machine.

The same study settings (gru small, random sampler, no pruning, fixed token budget per trial) run
once with one worker (all cores) and once with two (cores split), each on a fresh study.
Target: ratio >= 1.7 on 2 cores.
"""

from __future__ import annotations

import common

TARGET = 1.7


def run(workers: int, trials: int, smoke: bool) -> float:
    from lmbench.experiments import tune
    from lmbench.spec import build_spec

    tokens = 10_000 if smoke else 60_000
    spec = build_spec({}, [f"name=workers{workers}", "model.arch=gru", "model.preset=small", "train.device=cpu", "search.budget=null",
                           f"train.budget={{tokens: {tokens}}}", "train.batch_size=32", "data.seq_len=32",
                           "train.eval_interval=20", "train.eval_tokens=4000", "search.sampler=random",
                           "search.pruner=none", f"search.trials={trials}", f"search.workers={workers}"])
    return common.timed(lambda: tune(spec, "gru", quiet=True))


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    trials = 4 if args.smoke else 12
    one = run(1, trials, args.smoke)
    two = run(2, trials, args.smoke)
    ratio = one / two
    common.emit(common.result(
        "workers_scaling", value=ratio, unit="x trials/hour", target=f">= {TARGET}",
        passed=None if args.smoke else ratio >= TARGET,
        summary=f"{trials} trials: 1 worker {one:.0f} s, 2 workers {two:.0f} s -> {ratio:.2f}x trials/hour",
        details={"trials": trials, "one_worker_s": one, "two_workers_s": two}, smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
