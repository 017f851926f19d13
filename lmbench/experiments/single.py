"""`lmbench train`: one tracked training run of a spec, or the continuation of one."""

from __future__ import annotations

import logging
from pathlib import Path

from lmbench.config import ExperimentSpec, build_spec, model_spec
from lmbench.config.budgets import scaled_budgets
from lmbench.data import prepare_data
from lmbench.errors import UserError
from lmbench.tracking import schema
from lmbench.tracking.tracker import Tracker, find_run
from lmbench.training import checkpoint
from lmbench.training.run import TrainResult, train

log = logging.getLogger(__name__)


def budgeted(spec: ExperimentSpec, data=None) -> tuple[ExperimentSpec, list[str]]:
    """``spec`` with the budgets it left to their defaults sized to its corpus
    (:func:`lmbench.config.budgets.scaled_budgets`); each choice is logged with its reason."""

    data = data or prepare_data(spec.data)
    scaled, notes = scaled_budgets(spec, int(data.stats["train"]["n_tokens"]))
    for line in notes:
        log.info("%s", line)
    return scaled, notes


def run_training(spec: ExperimentSpec, *, quiet: bool = False, workdir: Path = Path(".")) -> TrainResult:
    """`lmbench train`: one tracked training run of a validated spec, trained with its
    architecture's recipe wherever the spec left a setting to its default."""

    data = prepare_data(spec.data, progress=not quiet)  # bad data fails before MLflow is touched
    spec, _ = budgeted(spec, data)
    spec = model_spec(spec, spec.model.arch)
    tracker = Tracker(spec.experiment_name, spec.tracking.tracking_uri)
    return train(spec, tracker=tracker, data=data, quiet=quiet, workdir=workdir)


def find_checkpoint(target: str, tracking_uri: str | None = None) -> Path:
    """Resolve ``--resume``: a checkpoint path, or an MLflow run id whose checkpoints are local."""
    path = Path(target)
    if path.exists():
        return checkpoint.locate(path, "last")

    run = find_run(target, tracking_uri)
    if run is None:
        raise UserError("--resume", f"{target!r} is neither a checkpoint path nor a run in the tracking store")
    ckpt_dir = run.data.tags.get(schema.CHECKPOINT_DIR)
    if not ckpt_dir or not Path(ckpt_dir).exists():
        raise UserError("--resume", f"run {target} has no checkpoint on this machine (looked in {ckpt_dir})")
    return checkpoint.locate(Path(ckpt_dir), "last")


def resume_training(target: str, *, tracking_uri: str | None = None, device: str | None = None,
                    quiet: bool = False) -> TrainResult:
    """`lmbench train --resume`: continue a run from its last checkpoint, in the same MLflow run."""

    ckpt_dir = find_checkpoint(target, tracking_uri)
    state = checkpoint.load_state(ckpt_dir)
    overrides = [f"train.device={device}"] if device else []
    if tracking_uri:
        overrides.append(f"tracking.tracking_uri={tracking_uri}")
    spec = build_spec(state["spec"], overrides)
    tracker = Tracker(spec.experiment_name, spec.tracking.tracking_uri)
    workdir = ckpt_dir.parent.parent.parent  # <workdir>/checkpoints/<run_id>/<ckpt-dir>
    return train(spec, tracker=tracker, resume=ckpt_dir, resume_run_id=state["run_id"], quiet=quiet, workdir=workdir)
