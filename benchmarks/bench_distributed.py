"""distributed_scaling: 2 vs 1 local workers on PostgreSQL storage, and the storage round-trips' share.

Fresh studies on a fresh PostgreSQL database (127.0.0.1:5432, user postgres; created and dropped
here): gru (2 layers of 256, every trial the same size), random sampler over the recipe's
optimizer, lr, weight decay and dropout, no pruning, a fixed token budget per trial - the same
trials as ``workers_scaling``. Five rounds, each of three tunes one after another:

* ``--workers 1``: one worker in this process with all torch threads (2 trials);
* ``--workers 2``: two spawned workers, one thread each (the cores split; 2 trials each);
* one worker in this process with one thread (what each of the two has; 2 trials).

Trials per hour of a run: per worker process (the trial runs' ``lmbench.worker_pid``), its trials
over the time from its first trial's start to its last one's end, summed over the workers: a
long study's steady state, where a worker process starts once rather than per trial (the wall
time of each tune, start-up included, is in the details). Per round, two ratios of trials/hour:
two workers over the one-thread worker (the workers' scaling: ideal 2, since nothing is shared
but the storage), and ``--workers 2`` over ``--workers 1`` (what a user gains on a 2-core machine;
one worker already gets part of the second core through its second torch thread).
Storage overhead: in the ``--workers 1`` runs every call that waits on the Optuna storage on the
trial's critical path is timed (ask with its lock and recovery scan, suggest, report, should
prune, tell, the first heartbeat); their sum per trial as a share of the trial's time.
(Heartbeats after the first run in a background thread, off the critical path.)
Targets (medians of the 5 rounds, range in the summary): two one-thread workers >= 1.9x one
one-thread worker; ``--workers 2`` >= 1.3x ``--workers 1``; storage < 2% of a trial.
"""

from __future__ import annotations

import json
import time
import uuid

import common

TARGET_WORKERS, TARGET_USER, TARGET_OVERHEAD = 1.9, 1.3, 0.02
ROUNDS, PER_WORKER, TOKENS = 5, 2, 40_000
PG = "postgresql://postgres@127.0.0.1:5432"


def spec(name: str, workers: int, trials: int, tokens: int, storage: str):
    from lmbench.config import build_spec

    return build_spec({}, [f"name={name}", "model.arch=gru", "model.preset=small", "train.device=cpu",
                           "search.budget=null", f"train.budget={{tokens: {tokens}}}", "train.batch_size=32",
                           "data.seq_len=32", "train.eval_interval=20", "train.eval_tokens=4000",
                           "search.sampler=random", "search.pruner=none", f"search.trials={trials}",
                           f"search.workers={workers}", f"search.storage={json.dumps(storage)}",
                           # every trial the same size (lr, weight decay, dropout still searched), so the
                           # runs compare like with like whichever trials a worker happens to get
                           "search.space.gru.d_model={categorical: [256]}", "search.space.gru.d_embed={categorical: [128]}",
                           "search.space.gru.n_layers={categorical: [2]}", "search.space.gru.tie_weights={categorical: [false]}"])


class StorageTimer:
    """Times every storage call on the trial's critical path (by wrapping the functions)."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0
        self.by_name: dict[str, float] = {}

    def wrap(self, owner, name: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                self.seconds += dt
                self.calls += 1
                self.by_name[name] = self.by_name.get(name, 0.0) + dt

        setattr(owner, name, timed)

    def install(self) -> None:
        import optuna

        from lmbench.tuning import liveness, trials, workers

        self.wrap(workers, "next_trial")  # where the worker loop calls it from
        for name in ("suggest", "tell"):
            self.wrap(trials, name)
        for name in ("report", "should_prune"):
            self.wrap(optuna.trial.Trial, name)
        self.wrap(liveness.Heartbeat, "__enter__")  # the first beat is inline; the others are in a thread


def worker_rates(name: str) -> dict:
    """Trials per hour of the tune ``name``: per worker process (the trial runs' worker_pid), its
    trials over the time from its first trial's start to its last one's end, summed over the
    workers; and the mean seconds of a trial. From the MLflow trial runs."""
    from mlflow import MlflowClient

    from lmbench.tracking.tracker import resolve_uri

    client = MlflowClient(resolve_uri(None))
    exp = client.get_experiment_by_name(name)
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in client.search_runs([exp.experiment_id], "tags.`lmbench.kind` = 'trial'", max_results=1000):
        if r.info.status == "FINISHED":
            spans.setdefault(r.data.tags["lmbench.worker_pid"], []).append((r.info.start_time / 1e3, r.info.end_time / 1e3))
    rate = sum(3600 * len(t) / (max(e for _, e in t) - min(b for b, _ in t)) for t in spans.values())
    times = [e - b for t in spans.values() for b, e in t]
    return {"trials_per_hour": rate, "trials": len(times), "workers": len(spans), "mean_trial_s": sum(times) / len(times)}


def database():
    """A fresh database on the local PostgreSQL: (url, drop function), or None if unreachable."""
    try:
        import psycopg

        admin = psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=3)
    except Exception as e:  # noqa: BLE001
        common.say(f"PostgreSQL not reachable at {PG}: {e}")
        return None
    name = f"lmbench_bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

    return f"{PG}/{name}", drop


def measure(storage_url: str | None, rounds: int, per_worker: int, tokens: int) -> dict:
    """Rounds of --workers 1, --workers 2 and a one-thread worker on fresh studies of one storage."""
    import torch

    from lmbench.data import prepare_data
    from lmbench.experiments.compare import tune
    from lmbench.tracking.tracker import Tracker

    warm = spec("warm", 1, 1, tokens, storage_url)
    prepare_data(warm.data)  # warm-up: the token cache and the MLflow store exist before any run
    Tracker("warm", warm.tracking.tracking_uri)
    timer = StorageTimer()
    timer.install()  # only this process; spawned workers are not wrapped
    threads = torch.get_num_threads()
    rates: dict[str, list[dict]] = {"one": [], "two": [], "single": []}
    storage = {"s": 0.0, "calls": 0, "by_name": {}}

    def variant(key: str, workers: int, threads_here: int):
        def go() -> float:
            name = f"{key}-{len(rates[key])}"
            before, calls, by_name = timer.seconds, timer.calls, dict(timer.by_name)
            torch.set_num_threads(threads_here)
            try:
                wall = common.timed(lambda: tune(spec(name, workers, workers * per_worker, tokens, storage_url),
                                                 "gru", quiet=True))
            finally:
                torch.set_num_threads(threads)
            rates[key].append(worker_rates(name))
            if key == "one":  # the storage calls of the one-worker run, all in this process
                storage["s"] += timer.seconds - before
                storage["calls"] += timer.calls - calls
                for k, v in timer.by_name.items():
                    storage["by_name"][k] = storage["by_name"].get(k, 0.0) + v - by_name.get(k, 0.0)
            return wall
        return go

    walls = common.rounds(rounds, {"one": variant("one", 1, threads), "two": variant("two", 2, threads),
                                   "single": variant("single", 1, 1)}, "workers")
    tph = {k: [r["trials_per_hour"] for r in v] for k, v in rates.items()}
    n_one = sum(r["trials"] for r in rates["one"])
    mean_one = sum(r["mean_trial_s"] * r["trials"] for r in rates["one"]) / n_one
    return {"rounds": rounds, "trials_per_worker": per_worker, "tokens_per_trial": tokens,
            "workers_ratio": common.ratio_stats(tph["two"], tph["single"]),
            "user_ratio": common.ratio_stats(tph["two"], tph["one"]),
            "trials_per_hour": {k: common.spread(v) for k, v in tph.items()},
            "mean_trial_s": {k: common.spread([r["mean_trial_s"] for r in v]) for k, v in rates.items()},
            "workers_used": {k: [r["workers"] for r in v] for k, v in rates.items()}, "wall_s": walls,
            "storage_s_per_trial": storage["s"] / n_one, "storage_calls_per_trial": storage["calls"] / n_one,
            "storage_s_by_call": {k: v / n_one for k, v in storage["by_name"].items()},
            "storage_overhead": storage["s"] / n_one / mean_one}


def describe(d: dict, where: str) -> str:
    tph, mean = d["trials_per_hour"], d["mean_trial_s"]
    return (f"{where}, {d['rounds']} rounds of {d['trials_per_worker']} trials per worker: two one-thread workers "
            f"{common.span(d['workers_ratio'])}x one one-thread worker; --workers 2 {common.span(d['user_ratio'])}x "
            f"--workers 1 ({tph['two']['median']:.0f} vs {tph['one']['median']:.0f} trials/h; trials of "
            f"{mean['one']['median']:.1f} s with 2 threads, {mean['single']['median']:.1f} s with 1); storage "
            f"round-trips {1000 * d['storage_s_per_trial']:.0f} ms/trial = {100 * d['storage_overhead']:.2f}% of a trial")


def judged(d: dict) -> bool:
    """The workers' targets (medians of the rounds)."""
    return d["workers_ratio"]["median"] >= TARGET_WORKERS and d["user_ratio"]["median"] >= TARGET_USER


TARGET_TEXT = (f"two 1-thread workers >= {TARGET_WORKERS}x one; --workers 2 >= {TARGET_USER}x --workers 1 "
               f"(medians of {ROUNDS} rounds)")


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    rounds, per, tokens = (2, 1, 10_000) if args.smoke else (ROUNDS, PER_WORKER, TOKENS)
    target = f"{TARGET_TEXT}; storage < {TARGET_OVERHEAD:.0%} of a trial"
    db = database()
    if db is None:
        common.emit(common.result("distributed_scaling", value=None, unit="x trials/hour", target=target,
                                  passed=None, summary="not measured: no PostgreSQL on 127.0.0.1:5432", details={},
                                  smoke=args.smoke))
        return
    url, drop = db
    try:
        d = measure(url, rounds, per, tokens)
    finally:
        drop()
    ok = judged(d) and d["storage_overhead"] < TARGET_OVERHEAD
    common.emit(common.result(
        "distributed_scaling", value=d["workers_ratio"]["median"], unit="x trials/hour", target=target,
        passed=None if args.smoke else ok, summary=describe(d, "PostgreSQL"), details=d, smoke=args.smoke))


if __name__ == "__main__":
    main()
