"""distributed_scaling: 2 vs 1 local workers on PostgreSQL storage, and the storage round-trips' share.

One study per run on a fresh PostgreSQL database (127.0.0.1:5432, user postgres; created and
dropped here): gru (2 layers of 256, every trial the same size), random sampler over lr, weight
decay and dropout, no pruning, a fixed token budget per trial - the same trials as
``workers_scaling``. Once with one worker (in this process, all cores), once with two
spawned workers (cores split).

* trials per hour: trials / seconds from the first trial's start to the last trial's end (the
  steady state of a long study: process start-up is paid once per worker, not per trial); the
  wall time of the whole command, start-up included, is reported beside it.
* diagnosis: a third run with one worker on one thread (what each of two workers gets), to
  separate the workers' scaling (ideal: 2x it) from how well one worker already uses both cores.
* storage overhead: in the one-worker run every call that waits on the Optuna storage on the
  trial's critical path is timed (ask with its lock and recovery scan, suggest, report, should
  prune, tell, the first heartbeat); their sum per trial as a share of the trial's time.
  (Heartbeats after the first run in a background thread, off the critical path.)
Targets: ratio >= 1.7, storage overhead < 2% of a quick trial.
"""

from __future__ import annotations

import json
import time
import uuid

import common

TARGET_RATIO, TARGET_OVERHEAD = 1.7, 0.02
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


def trial_window(storage_url: str, name: str) -> tuple[int, float, float]:
    """(trials, seconds from first start to last completion, mean seconds per trial)."""
    import optuna

    from lmbench.tuning.storage import open_storage, study_name

    trials = optuna.load_study(study_name=study_name(name, "gru"),
                               storage=open_storage(storage_url, name)).get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    mean = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done) / len(done)
    return len(done), (last - first).total_seconds(), mean


def steady_rate(name: str) -> float:
    """Trials per hour once every worker is warm: per worker (the trial runs' worker_pid tag),
    trials after its first one / time from the end of its first to the end of its last; summed."""
    from mlflow import MlflowClient

    from lmbench.tracking.tracker import resolve_uri

    client = MlflowClient(resolve_uri(None))
    exp = client.get_experiment_by_name(name)
    ends: dict[str, list[float]] = {}
    for r in client.search_runs([exp.experiment_id], "tags.`lmbench.kind` = 'trial'", max_results=1000):
        ends.setdefault(r.data.tags["lmbench.worker_pid"], []).append(r.info.end_time / 1000)
    return sum(3600 * (len(e) - 1) / (max(e) - min(e)) for e in ends.values() if len(e) > 1)


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


def measure(storage_url: str | None, trials: int, tokens: int) -> dict:
    """One-worker run (timed storage calls), then a two-worker run, on fresh studies of one storage."""
    import torch

    from lmbench.data import prepare_data
    from lmbench.experiments.compare import tune
    from lmbench.tracking.tracker import Tracker

    one, two = spec("one", 1, trials, tokens, storage_url), spec("two", 2, trials, tokens, storage_url)
    prepare_data(one.data)  # warm-up: the token cache and the MLflow store exist before either run
    Tracker("one", one.tracking.tracking_uri)
    timer = StorageTimer()
    timer.install()  # only this process (the one-worker run); spawned workers are not wrapped
    wall = {1: common.timed(lambda: tune(one, "gru", quiet=True))}
    storage_s, storage_calls = timer.seconds, timer.calls
    wall[2] = common.timed(lambda: tune(two, "gru", quiet=True))
    # diagnosis: one worker with one thread, i.e. what each of the two workers has
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tune(spec("single", 1, trials, tokens, storage_url), "gru", quiet=True)
    finally:
        torch.set_num_threads(threads)
    (n1, span1, mean1), (n2, span2, mean2) = trial_window(storage_url, "one"), trial_window(storage_url, "two")
    ns, spans, means = trial_window(storage_url, "single")
    warm = {1: steady_rate("one"), 2: steady_rate("two"), "1 thread": steady_rate("single")}
    return {"trials": trials, "tokens_per_trial": tokens, "steady_ratio": (n2 / span2) / (n1 / span1),
            "warm_trials_per_hour": warm, "warm_ratio": warm[2] / warm[1],
            "warm_ratio_vs_one_thread_worker": warm[2] / warm["1 thread"],
            "ratio_vs_one_thread_worker": (n2 / span2) / (ns / spans), "mean_trial_s_one_thread": means,
            "storage_s_by_call": {k: v / n1 for k, v in timer.by_name.items()},
            "wall_ratio": wall[1] / wall[2], "wall_s": wall, "span_s": {1: span1, 2: span2},
            "trials_per_hour": {1: 3600 * n1 / span1, 2: 3600 * n2 / span2}, "mean_trial_s": {1: mean1, 2: mean2},
            "storage_s_per_trial": storage_s / n1, "storage_calls_per_trial": storage_calls / n1,
            "storage_overhead": storage_s / n1 / mean1}


def describe(d: dict, where: str) -> str:
    tph = d["trials_per_hour"]
    return (f"{where}, {d['trials']} trials of {d['mean_trial_s'][1]:.1f} s: 2 workers {tph[2]:.0f} vs 1 worker "
            f"{tph[1]:.0f} trials/h -> {d['steady_ratio']:.2f}x (warm workers: {d['warm_ratio']:.2f}x; wall incl. start-up {d['wall_s'][1]:.0f} s vs "
            f"{d['wall_s'][2]:.0f} s -> {d['wall_ratio']:.2f}x; 1 worker with 1 thread: {d['mean_trial_s_one_thread']:.1f} s "
            f"per trial, 2 workers = {d['ratio_vs_one_thread_worker']:.2f}x it, warm "
            f"{d['warm_ratio_vs_one_thread_worker']:.2f}x); storage round-trips "
            f"{1000 * d['storage_s_per_trial']:.0f} ms/trial = {100 * d['storage_overhead']:.2f}% of a trial")


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    trials, tokens = (4, 10_000) if args.smoke else (12, 60_000)
    db = database()
    if db is None:
        common.emit(common.result("distributed_scaling", value=None, unit="x trials/hour",
                                  target=f">= {TARGET_RATIO}; storage < 2%", passed=None,
                                  summary="not measured: no PostgreSQL on 127.0.0.1:5432", details={}, smoke=args.smoke))
        return
    url, drop = db
    try:
        d = measure(url, trials, tokens)
    finally:
        drop()
    ok = d["steady_ratio"] >= TARGET_RATIO and d["storage_overhead"] < TARGET_OVERHEAD
    common.emit(common.result(
        "distributed_scaling", value=d["steady_ratio"], unit="x trials/hour",
        target=f">= {TARGET_RATIO}; storage < 2%", passed=None if args.smoke else ok,
        summary=describe(d, "PostgreSQL"), details=d, smoke=args.smoke))


if __name__ == "__main__":
    main()
