"""The one training loop, for every architecture.

The loop never branches on the architecture: every model maps ``(idx, state) -> (logits, state)``;
the data says whether a batch continues the previous one (``batch.carry``), and only then is the
(detached) state carried over — truncated BPTT for recurrent models, a no-op for the others.

Host/device synchronisation happens only at log and eval intervals: the training loss is
accumulated on the device and read back once per ``log_interval`` steps.
"""

from __future__ import annotations

import logging
import math
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmbench import checkpoint
from lmbench.metrics import EvalSums, correct_sum, nll_sum, summarize
from lmbench.runtime import Runtime, pick_runtime, rng_state, seed_everything, set_rng_state
from lmbench.schedule import Schedule, progress
from lmbench.spec import ExperimentSpec, TrainSpec, dump_raw

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the run is marked FAILED with this reason."""


class Terminated(BaseException):
    """Raised from the SIGTERM handler so the run can checkpoint and end KILLED."""


class RunStopped(Exception):
    """Raised by a hook to end a run early with a given MLflow status and tags.

    E.g. a pruned Optuna trial ends ``KILLED`` with ``optuna_state=PRUNED``.
    """

    def __init__(self, status: str, tags: dict[str, str]):
        super().__init__(f"run stopped ({status}, {tags})")
        self.status, self.tags = status, tags


@dataclass
class LoopState:
    """Everything about the loop's position that a resumed run needs, besides model/optimizer."""

    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    best_val: float = math.inf
    bad_evals: int = 0
    stop_reason: str = ""
    curve: list[list[float]] = field(default_factory=list)  # [step, tokens, train_loss, val_loss|nan]


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


Hook = Callable[[int, int, dict[str, float]], None]  # (step, tokens, metrics)


def make_optimizer(model: torch.nn.Module, spec: TrainSpec, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; weight decay only on matrices (not on biases and norm gains), as in GPT-2/nanoGPT.

    The fused kernel (one op for all parameters) is ~10% faster per step on CPU for small models.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = True if device.type in ("cpu", "cuda") else None
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, fused=fused)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, rt: Runtime) -> EvalSums:
    """Token-weighted sums over ``batches``; state carried across contiguous batches."""
    was_training = model.training
    model.eval()
    nll = torch.zeros((), device=rt.device)
    correct = torch.zeros((), device=rt.device, dtype=torch.long)
    tokens, state = 0, None
    for b in batches:
        x, y = rt.to_device(b.x), rt.to_device(b.y)
        with rt.autocast():
            logits, state = model(x, state if b.carry else None)
        nll += nll_sum(logits, y)
        correct += correct_sum(logits, y)
        tokens += b.n_tokens
    model.train(was_training)
    return EvalSums(float(nll.item()), tokens, int(correct.item()))


class Trainer:
    """One training run: owns the model, optimizer, schedule, loop state and its tracking."""

    def __init__(self, spec: ExperimentSpec, data, tracker=None, *, quiet: bool = False,
                 workdir: Path = Path("."), on_eval: Hook | None = None, on_step: Hook | None = None):
        from lmbench.models import build_model

        self.spec, self.data, self.tracker, self.quiet = spec, data, tracker, quiet
        self.on_eval, self.on_step = on_eval, on_step
        t = spec.train
        self.rt = pick_runtime(t)
        seed_everything(t.seed, t.deterministic)
        m = spec.model
        self.model = build_model(m.arch, data.tokenizer.vocab_size, m.preset, m.config).to(self.rt.device)
        self.step_model = torch.compile(self.model) if t.compile else self.model
        self.opt = make_optimizer(self.model, t, self.rt.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.rt.amp_dtype == torch.float16)
        self.schedule = Schedule(t.schedule, t.lr)
        self.batcher = data.train_batches(t.batch_size, spec.data.seq_len, t.seed)
        self.loop = LoopState()
        self.carry = None  # hidden state carried between contiguous batches
        self.run_id: str | None = None
        self.ckpt_root = workdir / "checkpoints"
        self.signalled = False  # set by the SIGTERM handler
        self.samples: list[dict[str, str]] = []  # (prompt, reference, generation) rows of the final BLEU

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "loop": asdict(self.loop), "optimizer": self.opt.state_dict(),
            "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": rng_state(), "carry": self.model.detach_state(self.carry),
            "spec": dump_raw(self.spec), "run_id": self.run_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loop = LoopState(**state["loop"])
        self.opt.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        carry = state["carry"]
        self.carry = None if carry is None else _map_tensors(carry, lambda t: t.to(self.rt.device))

    def save(self, tag: str) -> Path:
        return checkpoint.save(self.ckpt_root, tag, self.model, self.state_dict(), self.loop.step,
                               val_loss=self.loop.best_val)

    def resume(self, ckpt_dir: Path) -> None:
        checkpoint.load_weights(ckpt_dir, self.model, self.rt.device)
        self.load_state_dict(checkpoint.load_state(ckpt_dir))

    # -- the loop ----------------------------------------------------------------------------

    def train_step(self) -> torch.Tensor:
        """One optimizer step; returns the batch's summed NLL as a device tensor (no sync)."""
        t, lp = self.spec.train, self.loop
        batch = self.batcher.batch(lp.step)
        x, y = self.rt.to_device(batch.x), self.rt.to_device(batch.y)
        lr = self.schedule.lr(lp.step, progress(t.budget, lp.step, lp.tokens, lp.elapsed))
        for g in self.opt.param_groups:
            g["lr"] = lr
        with self.rt.autocast():
            logits, state = self.step_model(x, self.carry if batch.carry else None)
        total = nll_sum(logits, y)
        self.scaler.scale(total / max(batch.n_tokens, 1)).backward()
        if t.grad_clip:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.carry = self.model.detach_state(state)
        lp.step += 1
        lp.tokens += batch.n_tokens
        self.last_lr = lr
        return total.detach()

    def run(self, bar=None) -> None:
        """Train until the budget is spent or early stopping triggers."""
        t, lp = self.spec.train, self.loop
        window_nll = torch.zeros((), device=self.rt.device)
        window_tokens, window_start = 0, lp.elapsed
        while progress(t.budget, lp.step, lp.tokens, lp.elapsed) < 1.0:
            t0 = time.perf_counter()
            before = lp.tokens
            window_nll += self.train_step()
            window_tokens += lp.tokens - before
            log_now = lp.step % t.log_interval == 0
            if log_now:
                train_loss = window_nll.item() / max(window_tokens, 1)  # the one sync per interval
            # training time only (evals and checkpoints excluded), the sync wait included
            lp.elapsed += time.perf_counter() - t0
            if log_now:
                if not math.isfinite(train_loss):
                    raise NonFiniteLoss(f"non-finite training loss at step {lp.step}")
                tps = window_tokens / max(lp.elapsed - window_start, 1e-9)
                self._log_train(train_loss, tps, bar)
                window_nll.zero_()
                window_tokens, window_start = 0, lp.elapsed
            if self.on_step:
                self.on_step(lp.step, lp.tokens, {})
            if lp.step % t.eval_interval == 0 and self._periodic_eval():
                lp.stop_reason = "early_stopping"
                break
            if self.spec.eval.bleu_interval and lp.step % self.spec.eval.bleu_interval == 0:
                self._interval_bleu()
            if lp.step % t.checkpoint_interval == 0:
                self.save("last")
        lp.stop_reason = lp.stop_reason or "budget"

    def _log_train(self, train_loss: float, tps: float, bar) -> None:
        lp = self.loop
        metrics = {"train_loss": train_loss, "lr": self.last_lr, "tokens_seen": lp.tokens, "tokens_per_sec": tps}
        lp.curve.append([lp.step, lp.tokens, train_loss, math.nan])
        if self.tracker:
            self.tracker.log_metrics(metrics, lp.step)
        if bar is not None:
            bar.update(self, train_loss, tps)

    def _periodic_eval(self) -> bool:
        """Evaluate on the fixed validation subset; returns True when early stopping triggers."""
        t, lp = self.spec.train, self.loop
        sums = evaluate(self.model, self.data.eval_batches("val", t.batch_size, self.spec.data.seq_len,
                                                           max_tokens=t.eval_tokens), self.rt)
        m = summarize(sums)
        if not math.isfinite(m["loss"]):
            raise NonFiniteLoss(f"non-finite validation loss at step {lp.step}")
        metrics = {"val_loss": m["loss"], "val_ppl": m["ppl"], "val_accuracy": m["accuracy"]}
        lp.curve.append([lp.step, lp.tokens, math.nan, m["loss"]])
        if self.tracker:
            self.tracker.log_metrics({**metrics, "tokens_seen": lp.tokens}, lp.step)
        self.schedule.on_eval(m["loss"])
        if m["loss"] < lp.best_val:
            lp.best_val, lp.bad_evals = m["loss"], 0
            self.save("best")
        else:
            lp.bad_evals += 1
        if self.on_eval:  # may raise (e.g. optuna.TrialPruned)
            self.on_eval(lp.step, lp.tokens, metrics)
        return t.early_stopping is not None and lp.bad_evals >= t.early_stopping

    def final_eval(self, splits: tuple[str, ...] = ("val", "test")) -> dict[str, float]:
        """Full evaluation of ``splits`` with the best weights (by validation loss)."""
        ptr = checkpoint.pointer(self.ckpt_root, "best")
        if ptr is not None:
            checkpoint.load_weights(self.ckpt_root / ptr["dir"], self.model, self.rt.device)
        out: dict[str, float] = {}
        for split in splits:
            t = self.spec.train
            batches = self.data.eval_batches(split, t.batch_size, self.spec.data.seq_len, max_tokens=t.final_eval_tokens)
            floor = (self.data.floor or {}).get(split)
            sums = evaluate(self.model, batches, self.rt)
            m = summarize(sums, self._chars_evaluated(split, sums.tokens), floor)
            # "final_val_*": full split with the best weights, unlike the per-step subset "val_*"
            prefix = "final_val" if split == "val" else split
            out.update({f"{prefix}_{k}": v for k, v in m.items()})
        if "test" in splits:  # final runs only: generation is too slow for every tuning trial
            out.update(self._final_bleu(splits))
        return out

    def _final_bleu(self, splits: tuple[str, ...]) -> dict[str, float]:
        """``{final_val,test}_bleu`` (+ ``_p1``..``_p4``, ``_bp``) when BLEU is on; keeps test samples."""
        from lmbench.generate import bleu_enabled, bleu_eval

        if not bleu_enabled(self.spec.eval, self.data):
            return {}
        out: dict[str, float] = {}
        for split in splits:
            scores, samples = bleu_eval(self.model, self.data, split, self.spec.eval)
            prefix = "final_val" if split == "val" else split
            out.update({f"{prefix}_{k}" if k == "bleu" else f"{prefix}_bleu_{k}": v for k, v in scores.items()})
            if split == "test":
                self.samples = samples  # logged as samples/samples.json
        return out

    def _interval_bleu(self) -> None:
        """``val_bleu`` on ``eval.bleu_prompts`` validation prompts every ``eval.bleu_interval`` steps."""
        from lmbench.generate import bleu_enabled, bleu_eval

        if self.tracker is not None and bleu_enabled(self.spec.eval, self.data):
            scores, _ = bleu_eval(self.model, self.data, "val", self.spec.eval)
            self.tracker.log_metrics({"val_bleu": scores["bleu"]}, self.loop.step)


    def _chars_evaluated(self, split: str, targets: int) -> float | None:
        """Characters covered by the evaluated targets, for bits per character.

        Every token of a text split but the first is a target, so we scale the split's character
        count by targets/tokens (exact for char data: bits per char == bits per token). Records
        score completions only, and their character share is not tracked: no bpc there.
        """
        if self.data.kind != "text":
            return None
        return self.data.n_chars[split] * targets / self.data.stats[split]["n_tokens"]


def _map_tensors(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    return obj


# ---------------------------------------------------------------------------------------------
# entry point


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
    from lmbench.data import prepare_data

    data = data or prepare_data(spec.data, progress=not quiet)
    tr = Trainer(spec, data, tracker, quiet=quiet, workdir=workdir, on_eval=on_eval, on_step=on_step)
    if resume is not None:
        tr.resume(resume)
    n_params = tr.model.num_params()
    if tracker is None:
        tr.run_id = uuid.uuid4().hex
    elif resume_run_id:
        tracker.reopen(resume_run_id)
        tr.run_id = resume_run_id
    else:
        tr.run_id = _open_run(tr, n_params, parent_run_id, run_name, tags)
    tr.ckpt_root = workdir / "checkpoints" / tr.run_id
    if resume is not None and not resume_run_id:
        # a retried trial: a new run that takes over its predecessor's best weights, so its final
        # evaluation uses them even if it does not improve on them
        checkpoint.adopt(Path(resume).parent, tr.ckpt_root)
    if tracker is not None:
        tracker.set_tags({"lmbench.checkpoint_dir": str(tr.ckpt_root.resolve())})
    from lmbench.artifacts import save_model_card

    save_model_card(tr, tr.ckpt_root)  # what `lmbench generate <checkpoint>` needs besides weights
    return _run_tracked(tr, n_params, final_splits)


def _open_run(tr: Trainer, n_params: dict[str, int], parent_run_id: str | None, run_name: str | None,
              tags: dict[str, str] | None) -> str:
    """Create the MLflow run: the flattened resolved spec as params, provenance as tags."""
    from lmbench.spec import flatten, resolved_dict, spec_hash

    spec = tr.spec
    run_tags = {"lmbench.kind": "train", "lmbench.spec_hash": spec_hash(spec), "lmbench.arch": spec.model.arch,
                "device": str(tr.rt.device), "device.name": tr.rt.name, "precision": tr.rt.precision,
                "mlflow.source.name": "lmbench train", **(tags or {})}
    params = {**flatten(resolved_dict(spec)), **{f"params.{k}": v for k, v in n_params.items()},
              "data.vocab_size_actual": tr.data.tokenizer.vocab_size}
    name = run_name or f"{spec.model.arch}-s{spec.train.seed}"
    return tr.tracker.start(name, params, run_tags, parent_run_id)


def _run_tracked(tr: Trainer, n_params: dict[str, int], final_splits: tuple[str, ...]) -> TrainResult:
    """Run the loop with truthful statuses: FINISHED, FAILED (exception) or KILLED (signal)."""
    from lmbench.artifacts import log_run_artifacts
    from lmbench.progress import TrainProgress

    previous = _install_sigterm(tr)
    status = "FAILED"
    try:
        with TrainProgress(tr.spec.train.budget, disabled=tr.quiet) as bar:
            tr.run(bar)
        tr.save("last")
        final = tr.final_eval(final_splits)
        if tr.tracker is not None:
            summary = {"tokens_seen": tr.loop.tokens, "train_seconds": tr.loop.elapsed,
                       "train_tokens_per_sec": tr.loop.tokens / max(tr.loop.elapsed, 1e-9)}
            tr.tracker.log_metrics({**final, **summary}, tr.loop.step, synchronous=True)
            tr.tracker.set_tags({"lmbench.stop_reason": tr.loop.stop_reason})
            # tuning trials (scored on val only) skip the plot: their metric history is the curve,
            # and rendering it cost about as much CPU as a short trial's training
            log_run_artifacts(tr, final, curve_png="test" in final_splits)
        status = "FINISHED"
    except RunStopped as e:
        status = e.status
        if tr.tracker is not None:
            tr.tracker.set_tags(e.tags)
        raise
    except (KeyboardInterrupt, Terminated):
        status = "KILLED"
        _save_on_interrupt(tr)
        raise
    except BaseException as e:
        if tr.signalled:  # the signal surfaced wrapped in another error (e.g. during an import)
            status = "KILLED"
            _save_on_interrupt(tr)
        elif tr.tracker is not None:
            tr.tracker.set_tags({"lmbench.failure": f"{type(e).__name__}: {e}"[:5000]})
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if tr.tracker is not None:
            tr.tracker.finish(status)
    lp = tr.loop
    return TrainResult(tr.run_id, lp.step, lp.tokens, lp.elapsed, lp.best_val, lp.stop_reason, final, n_params,
                       tr.ckpt_root, lp.tokens / max(lp.elapsed, 1e-9))


def _save_on_interrupt(tr: Trainer) -> None:
    """Checkpoint where we stopped so ``--resume`` continues exactly here."""
    try:
        tr.save("last")
        if tr.tracker is not None:
            tr.tracker.set_tags({"lmbench.stop_reason": f"interrupted at step {tr.loop.step}"})
    except Exception as e:  # the interruption itself must still be reported
        log.warning("could not checkpoint on interrupt: %s", e)


def _install_sigterm(tr: Trainer):
    def handler(signum, frame):
        tr.signalled = True  # remembered: the exception may be wrapped by whatever it interrupts
        raise Terminated(f"signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None
