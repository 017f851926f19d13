"""workers_scaling: trials per hour with `--workers 2` vs `--workers 1` on this machine.

The local default storage (a journal file in studies/) and the same trials as
``distributed_scaling`` (gru of a fixed size, random sampler, no pruning, fixed token budget), run
once with one worker (all cores) and once with two (cores split), each on a fresh study, after a
warm-up that builds the token cache and the MLflow store. Trials per hour are measured from the
first trial's start to the last trial's end (a long study's steady state: a worker process starts
once, not per trial); the wall time with start-up is reported beside it. Target: ratio >= 1.7.
"""

from __future__ import annotations

import common
from bench_distributed import describe, measure

TARGET = 1.7


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    trials, tokens = (4, 10_000) if args.smoke else (12, 60_000)
    d = measure(None, trials, tokens)
    common.emit(common.result(
        "workers_scaling", value=d["steady_ratio"], unit="x trials/hour", target=f">= {TARGET}",
        passed=None if args.smoke else d["steady_ratio"] >= TARGET, summary=describe(d, "journal storage"),
        details=d, smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
