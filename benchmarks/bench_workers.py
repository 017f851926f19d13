"""workers_scaling: trials per hour with `--workers 2` vs `--workers 1`, and two one-thread workers
vs one, on this machine's local storage.

The local default storage (a journal file in studies/) and the same trials and rounds as
``distributed_scaling`` (gru of a fixed size, random sampler, no pruning, fixed token budget):
five rounds of ``--workers 1`` (in process, all torch threads), ``--workers 2`` (spawned, one
thread each) and one worker with one thread, each on a fresh study, after a warm-up that builds
the token cache and the MLflow store. Trials per hour count each worker from its first trial's
start to its last one's end (a long study's steady state: a worker process starts once, not per
trial); the wall time with start-up is in the details. Targets (medians of the rounds' ratios):
two one-thread workers >= 1.9x one one-thread worker (nothing but the storage is shared, so
anything less is lmbench's overhead); ``--workers 2`` >= 1.3x ``--workers 1`` (one worker already
uses part of the second core through its second torch thread).
"""

from __future__ import annotations

import common
from bench_distributed import PER_WORKER, ROUNDS, TARGET_TEXT, TOKENS, describe, judged, measure


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    rounds, per, tokens = (2, 1, 10_000) if args.smoke else (ROUNDS, PER_WORKER, TOKENS)
    d = measure(None, rounds, per, tokens)
    common.emit(common.result(
        "workers_scaling", value=d["workers_ratio"]["median"], unit="x trials/hour", target=TARGET_TEXT,
        passed=None if args.smoke else judged(d), summary=describe(d, "journal storage"),
        details=d, smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
