"""The one training loop, for every architecture.

The loop never branches on the architecture: every model maps ``(idx, state) -> (logits, state)``;
the data says whether a batch continues the previous one (``batch.carry``), and only then is the
(detached) state carried over - truncated BPTT for recurrent models, a no-op for the others.

Host/device synchronisation happens only at log and eval intervals: the training loss is
accumulated on the device and read back once per ``log_interval`` steps."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmbench.config import ExperimentSpec, TrainSpec, dump_raw
from lmbench.data import resolve_order
from lmbench.generation.bleu import bleu_enabled, bleu_eval
from lmbench.models import build_model
from lmbench.training import checkpoint
from lmbench.training.metrics import EvalSums, correct_sum, nll_sum, summarize
from lmbench.training.runtime import (
    Runtime,
    pick_runtime,
    rng_state,
    seed_everything,
    set_rng_state,
)
from lmbench.training.schedule import Schedule, progress


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the run is marked FAILED with this reason."""


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


Hook = Callable[[int, int, dict[str, float]], None]  # (step, tokens, metrics)


def make_optimizer(model: torch.nn.Module, spec: TrainSpec, device: torch.device) -> torch.optim.Optimizer:
    """``train.optimizer``: AdamW, Adam or SGD; weight decay only on matrices (not on biases and
    norm gains), as in GPT-2/nanoGPT. The schedule sets each group's lr before every step.

    The fused kernels (one op for all parameters) are ~10% faster per step on CPU for small models.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = True if device.type in ("cpu", "cuda") else None
    opt = spec.optimizer
    if opt.kind == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=opt.momentum, dampening=opt.dampening,
                               nesterov=opt.nesterov, fused=fused)
    adam = torch.optim.AdamW if opt.kind == "adamw" else torch.optim.Adam
    return adam(groups, lr=spec.lr, betas=opt.betas, eps=opt.eps, fused=fused)


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


@dataclass(frozen=True)
class Built:
    """The model of a run on its device, built before the run's MLflow run exists."""

    runtime: Runtime
    model: torch.nn.Module

    @classmethod
    def of(cls, spec: ExperimentSpec, vocab_size: int) -> Built:
        """Seed first, then build: the initial weights are a pure function of the seed."""
        t, m = spec.train, spec.model
        rt = pick_runtime(t)
        seed_everything(t.seed, t.deterministic)
        return cls(rt, build_model(m.arch, vocab_size, m.preset, m.config).to(rt.device))


class Trainer:
    """One training run: owns the model, optimizer, schedule, loop state and its tracking."""

    def __init__(self, spec: ExperimentSpec, data, built: Built, *, run_id: str, ckpt_root: Path,
                 tracker=None, quiet: bool = False, on_eval: Hook | None = None, on_step: Hook | None = None):
        self.spec, self.data, self.tracker, self.quiet = spec, data, tracker, quiet
        self.run_id, self.ckpt_root = run_id, ckpt_root
        self.on_eval, self.on_step = on_eval, on_step
        t = spec.train
        self.rt, self.model = built.runtime, built.model
        self.step_model = torch.compile(self.model) if t.compile else self.model
        self.opt = make_optimizer(self.model, t, self.rt.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.rt.amp_dtype == torch.float16)
        self.schedule = Schedule(t.schedule, t.lr)
        self.order = resolve_order(spec.data.order, self.model.stateful)
        self.batcher = data.train_batches(t.batch_size, spec.data.seq_len, t.seed, self.order)
        self.loop = LoopState()
        self.carry = None  # hidden state carried between contiguous batches
        self.last_lr = t.lr
        self.samples: list[dict[str, str]] = []  # (prompt, reference, generation) rows of the final BLEU

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "loop": asdict(self.loop), "optimizer": self.opt.state_dict(),
            "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": rng_state(), "carry": self.model.detach_state(self.carry),
            "spec": dump_raw(self.spec), "run_id": self.run_id, "order": self.order,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loop = LoopState(**state["loop"])
        self.opt.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        carry = state["carry"]
        self.carry = None if carry is None else _map_tensors(carry, lambda t: t.to(self.rt.device))
        # checkpoints from before data.order trained on streams: a resumed run keeps its order
        order = state.get("order", "stream")
        if order != self.order:
            t = self.spec.train
            self.order = order
            self.batcher = self.data.train_batches(t.batch_size, self.spec.data.seq_len, t.seed, order)

    def save(self, tag: str) -> Path:
        return checkpoint.save(self.ckpt_root, tag, self.model, self.state_dict(), self.loop.step,
                               val_loss=self.loop.best_val)

    def resume(self, ckpt_dir: Path, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: its weights, and its ``state`` (read by the caller first)."""
        checkpoint.load_weights(ckpt_dir, self.model, self.rt.device)
        self.load_state_dict(state)

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
            bar.update(self.loop, train_loss, tps)

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
            m = summarize(sums, self.data.chars_evaluated(split, sums.tokens), floor)
            # "final_val_*": full split with the best weights, unlike the per-step subset "val_*"
            prefix = "final_val" if split == "val" else split
            out.update({f"{prefix}_{k}": v for k, v in m.items()})
        if "test" in splits:  # final runs only: generation is too slow for every tuning trial
            out.update(self._final_bleu(splits))
        return out

    def _final_bleu(self, splits: tuple[str, ...]) -> dict[str, float]:
        """``{final_val,test}_bleu`` (+ ``_p1``..``_p4``, ``_bp``) when BLEU is on; keeps test samples."""

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

        if self.tracker is not None and bleu_enabled(self.spec.eval, self.data):
            scores, _ = bleu_eval(self.model, self.data, "val", self.spec.eval)
            self.tracker.log_metrics({"val_bleu": scores["bleu"]}, self.loop.step)


def _map_tensors(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    return obj
