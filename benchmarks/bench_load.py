"""load: 8 `lmbench worker` processes x 25 trials each on one experiment, on both storages.

The reliability load of scale-out, as it runs for real: a `lmbench tune --workers 0` driver
enqueues 200 trials of a few optimizer steps (what is loaded is the machinery around them: the
trial queue and its lock, heartbeats, MLflow runs and artifacts) and 8 `lmbench worker` CLI
processes, started with it and given only the experiment's name and the storage URL, serve them.
Once on PostgreSQL (a fresh database on 127.0.0.1:5432, user postgres, created and dropped) with
an MLflow tracking server (`lmbench server`, SQLite backend, proxied artifacts); once on the local
journal file with a SQLite MLflow store.

Figures per storage: trials completed (Optuna COMPLETE), duplicates (MLflow trial runs beyond one
per trial number), lost runs (completed trials without a FINISHED MLflow run), processes that
exited non-zero, log lines that show contention (database locked, deadlock, a traceback), and the
wall time from starting the processes to the last one's exit. Target: on both storages every
trial completes, 0 duplicates, 0 lost runs, every process exits 0 with no contention in its log
(the wall time is reported, not judged). ``tests/tuning/test_distributed.py`` runs the same with 8 workers x 5 trials.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import common
from bench_distributed import database

WORKERS, PER_WORKER = 8, 25
# trials of a few optimizer steps on a tiny corpus (the same as the tests' TINY)
TINY = ["model.preset=small", "search.budget=null", "train.budget={steps: 4}", "train.batch_size=4",
        "data.seq_len=16", "data.size=4000", "train.eval_interval=4", "train.eval_tokens=200",
        "train.final_eval_tokens=400", "train.log_interval=2", "search.sampler=random", "search.pruner=none",
        "train.device=cpu"]
CONTENTION = re.compile(r"database is locked|IntegrityError|deadlock|could not serialize|Traceback", re.I)


def lmbench(args: list[str], log: Path, group: bool = False) -> subprocess.Popen:
    """``lmbench ARGS`` as its own process with one torch thread (many share two cores)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "lmbench.cli", *args], stdout=open(log, "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, env=env, start_new_session=group)


@contextlib.contextmanager
def tracking_server(work: Path):
    """``lmbench server`` on a free loopback port (SQLite backend in ``work``); yields its URI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = lmbench(["server", "--port", str(port), "--workers", "1", "--backend-store-uri",
                    f"sqlite:///{work / 'server.db'}", "--artifacts-destination", str(work / "server-artifacts")],
                   work / "server.log", group=True)  # its own group: uvicorn's children stop with it
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the MLflow server did not start: {(work / 'server.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    break
            time.sleep(0.3)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_load(work: Path, name: str, storage: list[str], tracking_uri: str, workers: int, trials: int) -> dict:
    """The driver and ``workers`` workers on experiment ``name``; exit codes, wall time, logs."""
    sets = [x for s in [*TINY, f"name={name}"] for x in ("--set", s)]
    t0 = time.perf_counter()
    procs = [lmbench(["tune", "--model", "rnn", "--trials", str(trials), "--workers", "0", *sets, *storage,
                      "--tracking-uri", tracking_uri], work / f"{name}-driver.log")]
    # the workers get only the names and URLs: spec and tracking URI come from the study
    procs += [lmbench(["worker", "--experiment", name, *storage, "--quiet"], work / f"{name}-worker{i}.log")
              for i in range(workers)]
    codes = []
    try:
        for p in procs:  # the driver first: it returns once every trial has ended
            codes.append(p.wait(timeout=3000 if p is procs[0] else 300))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.perf_counter() - t0
    logs = {p.name: p.read_text() for p in sorted(work.glob(f"{name}-*.log"))}
    bad = {k: CONTENTION.search(v).group(0) for k, v in logs.items() if CONTENTION.search(v)}
    failed = {f"{name}-{'driver' if i == 0 else f'worker{i - 1}'}": c for i, c in enumerate(codes) if c != 0}
    return {"wall_s": wall, "exit_codes": codes, "failed_processes": failed, "contention": bad,
            "failure_lines": {k: v.strip().splitlines()[-1][:300] for k, v in logs.items()
                              if k.removesuffix(".log") in failed and v.strip()}}


def count(storage_url: str | None, name: str, tracking_uri: str, trials: int) -> dict:
    """Completed trials, duplicate and lost MLflow runs, from the study and the tracking store."""
    import optuna
    from mlflow import MlflowClient

    from lmbench.tuning.storage import open_storage, study_name

    study = optuna.load_study(study_name=study_name(name, "rnn"), storage=open_storage(storage_url, name))
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], "tags.`lmbench.kind` = 'trial'", max_results=5000)
    by_number: dict[int, list] = {}
    for r in runs:
        by_number.setdefault(int(r.data.tags["optuna.trial_number"]), []).append(r)
    finished = {n for n, rs in by_number.items() if any(r.info.status == "FINISHED" for r in rs)}
    complete = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return {"trials": len(states), "completed": len(complete), "states": {s: states.count(s) for s in set(states)},
            "duplicates": sum(len(rs) - 1 for rs in by_number.values()),
            "lost_runs": len([n for n in complete if n not in finished]), "expected": trials,
            "workers_used": len({r.data.tags.get("lmbench.worker_pid") for r in runs})}


def one_storage(work: Path, where: str, workers: int, trials: int) -> dict:
    """The load on ``where`` (postgresql or journal); None-valued figures when PostgreSQL is absent."""
    name = f"load-{where}"
    if where == "journal":
        uri = f"sqlite:///{work / 'load-journal.db'}"
        out = run_load(work, name, [], uri, workers, trials)
        return {**out, **count(None, name, uri, trials)}
    db = database()
    if db is None:
        return {"skipped": "no PostgreSQL on 127.0.0.1:5432"}
    url, drop = db
    try:
        with tracking_server(work) as uri:
            out = run_load(work, name, ["--storage", url], uri, workers, trials)
            return {**out, **count(url, name, uri, trials)}
    finally:
        drop()


def ok(d: dict) -> bool:
    return (not d.get("skipped") and d["completed"] == d["expected"] == d["trials"] and d["duplicates"] == 0
            and d["lost_runs"] == 0 and not d["failed_processes"] and not d["contention"])


def describe(where: str, d: dict) -> str:
    if d.get("skipped"):
        return f"{where}: not measured ({d['skipped']})"
    failed = f", {len(d['failed_processes'])} processes failed" if d["failed_processes"] else ""
    failed += f", contention in {len(d['contention'])} logs" if d["contention"] else ""
    return (f"{where}: {d['completed']}/{d['expected']} trials completed, {d['duplicates']} duplicates, "
            f"{d['lost_runs']} lost runs{failed}, {d['wall_s']:.0f} s")


def main() -> None:
    def options(p):
        p.add_argument("--workers", type=int, default=WORKERS, help=f"worker processes (default {WORKERS})")
        p.add_argument("--per-worker", type=int, default=PER_WORKER, help=f"trials per worker (default {PER_WORKER})")

    args = common.parse_args(__doc__, options)
    work = common.setup(args)
    workers, per = (4, 2) if args.smoke else (args.workers, args.per_worker)
    trials = workers * per
    results = {where: one_storage(work, where, workers, trials) for where in ("postgresql", "journal")}
    measured = [d for d in results.values() if not d.get("skipped")]
    judged = not args.smoke and (workers, per) == (WORKERS, PER_WORKER)
    common.emit(common.result(
        "load", value=sum(d["duplicates"] + d["lost_runs"] for d in measured) if measured else None,
        unit="duplicates + lost runs",
        target=f"{WORKERS} workers x {PER_WORKER} trials on PostgreSQL + MLflow server and on the journal: "
               "every trial completed, 0 duplicates, 0 lost runs, every process exits 0, no contention",
        passed=all(ok(d) for d in results.values()) if judged else None,
        summary=f"{workers} workers x {per} trials; " + "; ".join(describe(k, d) for k, d in results.items()),
        details={"workers": workers, "trials_per_worker": per, **results}, smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
