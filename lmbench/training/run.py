"""``train()``: one tracked training run - data, model, MLflow run, loop, final evaluation, artifacts.

The data and model are built before any MLflow run exists, so bad data or a bad model config
never leaves a run behind; the run's final status tells the truth: FINISHED, FAILED (an
exception, with the reason as a tag) or KILLED (SIGTERM / Ctrl-C, after a checkpoint)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from lmbench import secrets
from lmbench.config import ExperimentSpec, flatten, resolved_dict, spec_hash
from lmbench.data import prepare_data
from lmbench.errors import mark_failed_run, one_line
from lmbench.signals import Terminated, sigterm_raises
from lmbench.tracking import schema
from lmbench.training import checkpoint
from lmbench.training.artifacts import log_run_artifacts, save_model_card
from lmbench.training.loop import Built, Hook, RunStopped, Trainer
from lmbench.training.progress import TrainProgress

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_id: str | None
    steps: int
    tokens: int
    seconds: float
    best_val_loss: float
    stop_reason: str
    final: dict[str, float]
    num_params: dict[str, int]
    checkpoint_dir: Path
    tokens_per_sec: float


def train(spec: ExperimentSpec, *, tracker=None, resume: Path | None = None, resume_run_id: str | None = None,
          parent_run_id: str | None = None, run_name: str | None = None, tags: dict[str, str] | None = None,
          quiet: bool = False, workdir: Path = Path("."), on_eval: Hook | None = None,
          on_step: Hook | None = None, data=None, final_splits: tuple[str, ...] = ("val", "test")) -> TrainResult:
    """Train one model as the spec says, tracking it in ``tracker`` (an MLflow Tracker) if given.

    The data and model are built before any MLflow run exists, so bad data or a bad model config
    never leaves a run behind. ``resume`` is a checkpoint directory to continue from; with
    ``resume_run_id`` the same MLflow run is continued. ``final_splits``: what the final
    evaluation scores (tuning trials score only "val": their test loss must not be looked at).
    Runs that score no test split (tuning trials) also skip generation (BLEU) and the curve plot.
    """
    data = data or prepare_data(spec.data, progress=not quiet)
    state = checkpoint.load_state(resume) if resume is not None else None  # a bad one fails here
    built = Built.of(spec, data.tokenizer.vocab_size)
    n_params = built.model.num_params()
    if tracker is None:
        run_id = uuid.uuid4().hex
    elif resume_run_id:
        tracker.reopen(resume_run_id)
        run_id = resume_run_id
    else:
        run_id = _open_run(tracker, spec, data, built, n_params, parent_run_id, run_name, tags)
    ckpt_root = workdir / "checkpoints" / run_id
    tr = Trainer(spec, data, built, run_id=run_id, ckpt_root=ckpt_root, tracker=tracker, quiet=quiet,
                 on_eval=on_eval, on_step=on_step)
    if resume is not None:
        tr.resume(resume, state)
    if resume is not None and not resume_run_id:
        # a retried trial: a new run that takes over its predecessor's best weights, so its final
        # evaluation uses them even if it does not improve on them
        checkpoint.adopt(Path(resume).parent, ckpt_root)
    if tracker is not None:
        tracker.set_tags({schema.CHECKPOINT_DIR: str(ckpt_root.resolve())})
    save_model_card(tr.model, data, ckpt_root)  # what `lmbench generate <checkpoint>` needs besides weights
    return _run_tracked(tr, n_params, final_splits)


def _open_run(tracker, spec: ExperimentSpec, data, built: Built, n_params: dict[str, int],
              parent_run_id: str | None, run_name: str | None, tags: dict[str, str] | None) -> str:
    """Create the MLflow run: the flattened resolved spec as params, provenance as tags."""
    rt = built.runtime
    run_tags = {schema.KIND: "train", schema.SPEC_HASH: spec_hash(spec), schema.MODEL: spec.model.arch,
                schema.DEVICE: str(rt.device), schema.DEVICE_NAME: rt.name, schema.PRECISION: rt.precision,
                schema.SOURCE_NAME: "lmbench train", **(tags or {})}
    params = {**flatten(resolved_dict(spec)), **{f"{schema.PARAM_COUNTS}{k}": v for k, v in n_params.items()},
              schema.VOCAB_ACTUAL: data.tokenizer.vocab_size}
    name = run_name or f"{spec.model.arch}-s{spec.train.seed}"
    return tracker.start(name, params, run_tags, parent_run_id)


def _run_tracked(tr: Trainer, n_params: dict[str, int], final_splits: tuple[str, ...]) -> TrainResult:
    """Run the loop with truthful statuses: FINISHED, FAILED (exception) or KILLED (signal)."""
    signalled: list[bool] = []  # the signal may surface wrapped in another error (e.g. in an import)
    status = "FAILED"
    try:
        with sigterm_raises(before=lambda: signalled.append(True)):
            final = _train_and_evaluate(tr, final_splits)
        status = "FINISHED"
    except RunStopped as error:
        status = error.status
        if tr.tracker is not None:
            tr.tracker.set_tags(error.tags)
        raise
    except BaseException as error:
        if signalled or isinstance(error, (KeyboardInterrupt, Terminated)):
            status = "KILLED"
            _save_on_interrupt(tr)
        else:
            mark_failed_run(error, tr.run_id if tr.tracker is not None else None)
            if tr.tracker is not None:
                tr.tracker.set_tags({schema.FAILURE: secrets.scrub(one_line(error, 5000))})
        raise
    finally:
        if tr.tracker is not None:
            tr.tracker.finish(status)
    lp = tr.loop
    return TrainResult(tr.run_id, lp.step, lp.tokens, lp.elapsed, lp.best_val, lp.stop_reason, final, n_params,
                       tr.ckpt_root, lp.tokens / max(lp.elapsed, 1e-9))


def _train_and_evaluate(tr: Trainer, final_splits: tuple[str, ...]) -> dict[str, float]:
    """The loop, the final evaluation with the best weights, and the run's metrics and artifacts."""
    with TrainProgress(tr.spec.train.budget, disabled=tr.quiet) as bar:
        tr.run(bar)
    _evaluate_at_the_end(tr)
    tr.save("last")
    final = tr.final_eval(final_splits)
    if tr.tracker is not None:
        lp = tr.loop
        speed = {"tokens_seen": lp.tokens, "train_seconds": lp.elapsed,
                 "train_tokens_per_sec": lp.tokens / max(lp.elapsed, 1e-9)}
        tr.tracker.log_metrics({**final, **speed}, lp.step, synchronous=True)
        tr.tracker.set_tags({schema.STOP_REASON: lp.stop_reason})
        # tuning trials (scored on val only) skip the plot: their metric history is the curve,
        # and rendering it cost about as much CPU as a short trial's training
        summary = {"data": tr.data.stats, "final": final, "stop_reason": lp.stop_reason}
        log_run_artifacts(tr.tracker, tr.spec, tr.ckpt_root, summary,
                          lp.curve if "test" in final_splits else None, tr.samples)
    return final


def _evaluate_at_the_end(tr: Trainer) -> None:
    """One more periodic evaluation when the budget ran out between two, so the validation curve
    ends where training did (e.g. at 400k tokens, not at the last evaluation at 300k). The
    trial's hook is left out: a pruning decision after the whole budget would only waste it."""
    lp = tr.loop
    if lp.stop_reason != "budget" or lp.step % tr.spec.train.eval_interval == 0 or lp.step == 0:
        return
    hook, tr.on_eval = tr.on_eval, None
    try:
        tr._periodic_eval()  # the loop's own evaluation: same subset, metrics, best checkpoint
    finally:
        tr.on_eval = hook


def _save_on_interrupt(tr: Trainer) -> None:
    """Checkpoint where we stopped so ``--resume`` continues exactly here."""
    try:
        tr.save("last")
        if tr.tracker is not None:
            tr.tracker.set_tags({schema.STOP_REASON: f"interrupted at step {tr.loop.step}"})
    except Exception as error:  # the interruption itself must still be reported
        log.warning("could not checkpoint on interrupt: %s", error)
