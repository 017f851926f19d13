"""`lmbench scale`: compare architectures by how they scale with compute (IsoFLOP sweeps).

For every architecture and compute budget C, a ladder of model sizes around a first guess of the
compute-optimal size is trained with the same hyperparameters, each run on the tokens that spend
exactly C counted with its model's own FLOPs per token (:mod:`lmbench.tuning.points`). The runs
are the fixed trials of one study per architecture, so ``--workers``, ``lmbench worker``, dead
workers' retries and re-runs that redo nothing work as for ``compare``. Then the fits and their
bootstrap intervals (:mod:`lmbench.report.scaling`) go to ``reports/<experiment>/results.json``
and ``scaling.csv``, and the report gets a scaling section.

MLflow tree: root (``lmbench.kind=scale``) -> one run per architecture (``model``) -> one run per
budget (``budget``, tag ``scale.compute``) -> one run per size and seed (``point``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from lmbench.config import ExperimentSpec
from lmbench.data import prepare_data
from lmbench.experiments.runtree import TreeRun, ensure_run, record_spec, report_of, root_key
from lmbench.files import report_dir
from lmbench.report.frames import Store
from lmbench.report.scaling import scale_section
from lmbench.report.scaling_files import write_scale_files
from lmbench.tracking import schema
from lmbench.tuning.points import (
    Point,
    compute_label,
    hyperparameters,
    ladder,
    open_point_study,
    plan_point,
    point_states,
    publish_points,
    scale_study_name,
)
from lmbench.tuning.storage import open_storage
from lmbench.tuning.workers import publish, run_study

log = logging.getLogger(__name__)


@dataclass
class ArchTree:
    """One architecture's runs of this sweep: its model run, a run per budget, its points."""

    arch: str
    model: Any  # Tracker of the model run
    budgets: dict[float, Any]  # compute -> Tracker of the budget run
    points: list[Point]


def prepare(spec: ExperimentSpec) -> dict[str, dict[str, Any]]:
    """Everything that can fail on user input, before any study or run is created: the data, the
    storage, ``scale.from``, and every (architecture, budget, size) of the sweep (its model can be
    built and its budget buys enough steps). Returns each architecture's hyperparameters."""
    if spec.search.storage:
        open_storage(spec.search.storage, spec.experiment_name)
    vocab = prepare_data(spec.data).vocab_size
    hparams = {arch: hyperparameters(spec, arch) for arch in spec.scale.models}
    for arch in spec.scale.models:
        for compute in spec.scale.compute:
            for target in ladder(spec, compute):
                plan_point(
                    spec, arch, hparams[arch]["params"], vocab, compute, target, spec.train.seed
                )
    return hparams


def scale(spec: ExperimentSpec, *, quiet: bool = False) -> dict[str, Any]:
    """Run (or continue) the sweep, then fit and write its results; returns them."""
    hparams = prepare(spec)
    scale_spec = spec.scale
    params = {
        "models": ",".join(scale_spec.models),
        "compute": ",".join(f"{c:g}" for c in scale_spec.compute),
        "sizes": scale_spec.sizes,
        "seeds": scale_spec.seeds,
        "ratio": scale_spec.ratio,
        "tokens_per_param": scale_spec.tokens_per_param,
        "from": scale_spec.from_,
    }
    root = ensure_run(
        spec,
        f"scale-{spec.experiment_name}",
        {schema.KIND: "scale", schema.ROOT_KEY: root_key(spec)},
        params=params,
    )
    record_spec(root, spec)
    with TreeRun(root):
        trees = []
        with OpenRuns() as runs:  # every study is published first: workers anywhere may serve any
            for arch in scale_spec.models:
                trees.append(_publish(spec, arch, hparams[arch], root.run_id, runs))
            for tree in trees:
                run_study(spec, tree.arch, tree.model.run_id, scale=True)
                _close(spec, tree, runs)
        store = Store(root.client, root.experiment_id)
        sec = scale_section(store, root.client.get_run(root.run_id), own=True)
        path = write_scale_files(sec, spec.experiment_name, report_dir(spec.experiment_name))
    return {"section": sec, "path": path, "root_run_id": root.run_id, "report": report_of(spec)}


def _publish(
    spec: ExperimentSpec, arch: str, hparams: dict[str, Any], root_id: str, runs: OpenRuns
) -> ArchTree:
    """The architecture's model and budget runs (found again on a re-run), and its points queued."""
    model = runs.add(ensure_run(spec, arch, {schema.KIND: "model", schema.MODEL: arch}, root_id))
    model.set_tags(
        {
            schema.SCALE_HPARAMS: json.dumps(hparams),
            schema.STUDY: scale_study_name(spec.experiment_name, arch),
        }
    )
    budgets = {}
    for compute in spec.scale.compute:
        tags = {
            schema.KIND: "budget",
            schema.MODEL: arch,
            schema.SCALE_COMPUTE: compute_label(compute),
        }
        budgets[compute] = runs.add(ensure_run(spec, f"{arch}-C{compute:.3g}", tags, model.run_id))
    # seed-major order: an interrupted sweep has whole ladders of its first seeds
    points = [
        Point(compute, target, spec.train.seed + k, budgets[compute].run_id, hparams["params"])
        for k in range(spec.scale.seeds)
        for compute in spec.scale.compute
        for target in ladder(spec, compute)
    ]
    queued = publish_points(spec, arch, points)
    log.info("%s: %d points, %d queued", arch, len(points), queued)
    publish(spec, arch, model.run_id, scale=True)
    return ArchTree(arch, model, budgets, points)


def _close(spec: ExperimentSpec, tree: ArchTree, runs: OpenRuns) -> None:
    """The architecture's study is complete: count its budgets' finished and failed points and
    end the budget and model runs FINISHED (failed points stay visible on their own runs)."""
    storage = open_storage(spec.search.storage, spec.experiment_name)
    states = point_states(open_point_study(spec, tree.arch, storage))
    for compute, budget in tree.budgets.items():
        mine = [states.get(p.key) for p in tree.points if p.compute == compute]
        budget.set_tags(
            {
                schema.SCALE_POINTS_FINISHED: sum(s == "COMPLETE" for s in mine),
                schema.SCALE_POINTS_FAILED: sum(s == "FAIL" for s in mine),
            }
        )
    runs.finish([*tree.budgets.values(), tree.model])


class OpenRuns:
    """Parent runs held open while their children train: ``finish`` ends some FINISHED; leaving
    the block ends the rest as a :class:`TreeRun` would (KILLED on a signal, FAILED on an error)."""

    def __init__(self) -> None:
        self.open: list[Any] = []

    def add(self, tracker):
        self.open.append(tracker)
        return tracker

    def finish(self, trackers: list[Any]) -> None:
        for tracker in trackers:
            tracker.finish("FINISHED")
            self.open.remove(tracker)

    def __enter__(self) -> OpenRuns:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for tracker in reversed(self.open):  # children before their parents
            TreeRun(tracker).__exit__(exc_type, exc, tb)
        self.open.clear()
