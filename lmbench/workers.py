"""Worker processes: several processes share one Optuna study on this machine.

Optuna's storage is the queue: each worker asks the study for the next trial until the total is
reached (``search.next_trial`` serialises count-then-ask with a file lock, so the total is never
overshot). Workers are spawned (not forked) so each starts with a clean torch runtime; on CPU the
cores are split between them, on GPUs the devices are assigned round-robin.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os

from lmbench.errors import SpecError
from lmbench.spec import ExperimentSpec, build_spec, dump_raw

log = logging.getLogger(__name__)


def device_list(devices: str | None, default: str) -> list[str]:
    """``cuda:0,cuda:1`` | ``all`` (every visible GPU, else cpu) | ``cpu`` | None (the spec's device)."""
    if devices is None:
        return [default]
    if devices == "all":
        import torch

        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] or ["cpu"]
    out = [d.strip() for d in devices.split(",") if d.strip()]
    if not out:
        raise SpecError("--devices", "empty device list")
    return out


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def run_worker(spec: ExperimentSpec, arch: str, parent_run_id: str | None, max_trials: int | None = None) -> int:
    """Run trials of ``<experiment>/<arch>`` until the study's total is reached; returns how many."""
    from lmbench.search import next_trial, open_storage, open_study, run_trial, total_trials

    study = open_study(spec, arch, open_storage(spec.search.storage, spec.experiment_name))
    done = 0
    while max_trials is None or done < max_trials:
        trial = next_trial(study, total_trials(spec, arch), spec.experiment_name)
        if trial is None:
            break
        state = run_trial(study, trial, spec, arch, parent_run_id)
        done += 1
        best = study.best_value if _has_complete(study) else float("nan")
        log.info("%s trial %d: %s (best val loss so far %.4f)", arch, trial.number, state, best)
    return done


def _has_complete(study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _worker_main(raw: dict, arch: str, parent_run_id: str | None, device: str, threads: int) -> None:
    """Entry point of a spawned worker process."""
    import torch

    logging.basicConfig(level=logging.INFO, format=f"[worker {os.getpid()}] %(message)s")
    torch.set_num_threads(threads)
    spec = build_spec(raw, [f"train.device={device}"])
    run_worker(spec, arch, parent_run_id)


def run_study(spec: ExperimentSpec, arch: str, parent_run_id: str | None) -> None:
    """Bring the study ``<experiment>/<arch>`` to its total with ``search.workers`` processes."""
    workers = spec.search.workers
    devices = device_list(spec.search.devices, spec.train.device)
    if workers == 1 and len(devices) == 1 and devices[0] == spec.train.device:
        run_worker(spec, arch, parent_run_id)
        return
    ctx = mp.get_context("spawn")
    raw, threads = dump_raw(spec), threads_per_worker(workers)
    procs = [ctx.Process(target=_worker_main, args=(raw, arch, parent_run_id, devices[i % len(devices)], threads),
                         name=f"lmbench-worker-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:  # the workers got the same SIGINT: let them mark their trials, then stop
        for p in procs:
            p.join(timeout=30)
        raise
    failed = [p.name for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {workers} workers exited with an error: {', '.join(failed)}")
