"""Artifacts of a finished training run: resolved spec, tokenizer, best weights, curve, stats,
and the generation samples of the final BLEU evaluation."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from lmbench import checkpoint


def plot_curve(curve: list[list[float]], path: Path, title: str) -> None:
    """Training (faint) and validation loss against tokens seen, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(c[1], c[2]) for c in curve if not math.isnan(c[2])]
    val = [(c[1], c[3]) for c in curve if not math.isnan(c[3])]
    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), alpha=0.35, label="train")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", ms=3, label="val")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def model_card(trainer) -> dict:
    """What is needed to rebuild the model around the saved weights (used by generate/resume)."""
    m = trainer.model
    return {"arch": m.arch, "vocab_size": trainer.data.tokenizer.vocab_size, "config": asdict(m.config),
            "num_params": m.num_params(), "data_kind": trainer.data.kind}


def save_model_card(trainer, folder: Path) -> None:
    """``model.json`` and ``tokenizer/`` in ``folder`` (a run's checkpoint root), so a checkpoint
    there can be loaded for generation without MLflow."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(model_card(trainer), indent=2))
    trainer.data.tokenizer.save(folder / "tokenizer")


def log_run_artifacts(trainer, final: dict[str, float], curve_png: bool = True) -> None:
    """Log the run's artifacts to MLflow: spec.yaml, tokenizer/, checkpoint/, curve.png, stats."""
    from lmbench.spec import to_yaml

    tracker = trainer.tracker
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "spec.yaml").write_text(to_yaml(trainer.spec))
        tracker.log_artifact(out / "spec.yaml")
        root = trainer.ckpt_root  # train() saved model.json and tokenizer/ there (save_model_card)
        tracker.log_artifact(root / "tokenizer", "tokenizer")
        ckpt = out / "checkpoint"
        ckpt.mkdir()
        best = checkpoint.locate(root, "best")
        shutil.copy(best / checkpoint.WEIGHTS, ckpt / checkpoint.WEIGHTS)
        shutil.copy(root / "model.json", ckpt / "model.json")
        tracker.log_artifact(ckpt, "checkpoint")
        if curve_png:
            plot_curve(trainer.loop.curve, out / "curve.png", f"{trainer.spec.model.arch} on {trainer.spec.data.source}")
            tracker.log_artifact(out / "curve.png")
        stats = {"data": trainer.data.stats, "final": final, "stop_reason": trainer.loop.stop_reason}
        (out / "summary.json").write_text(json.dumps(stats, indent=2, default=str))
        tracker.log_artifact(out / "summary.json")
        if trainer.samples:  # read by the report: a list of {"prompt", "reference", "generation"}
            (out / "samples").mkdir()
            (out / "samples" / "samples.json").write_text(json.dumps(trainer.samples, indent=1, ensure_ascii=False))
            tracker.log_artifact(out / "samples", "samples")
