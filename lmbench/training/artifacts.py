"""Artifacts of a finished training run: resolved spec, tokenizer, best weights, curve, stats,
and the generation samples of the final BLEU evaluation."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from lmbench.config import to_yaml
from lmbench.training import checkpoint


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


def model_card(model, data) -> dict:
    """What is needed to rebuild the model around the saved weights (used by generate/resume)."""
    return {"arch": model.arch, "vocab_size": data.tokenizer.vocab_size, "config": asdict(model.config),
            "num_params": model.num_params(), "data_kind": data.kind}


def save_model_card(model, data, folder: Path) -> None:
    """``model.json`` and ``tokenizer/`` in ``folder`` (a run's checkpoint root), so a checkpoint
    there can be loaded for generation without MLflow."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(model_card(model, data), indent=2))
    data.tokenizer.save(folder / "tokenizer")


def log_run_artifacts(tracker, spec, ckpt_root: Path, summary: dict, curve: list | None,
                      samples: list[dict[str, str]]) -> None:
    """Log a finished run's artifacts: spec.yaml, tokenizer/, checkpoint/ (best weights and model
    card), summary.json, curve.png (unless ``curve`` is None) and samples/samples.json."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "spec.yaml").write_text(to_yaml(spec))
        tracker.log_artifact(out / "spec.yaml")
        tracker.log_artifact(ckpt_root / "tokenizer", "tokenizer")  # train() saved it (save_model_card)
        ckpt = out / "checkpoint"
        ckpt.mkdir()
        best = checkpoint.locate(ckpt_root, "best")
        shutil.copy(best / checkpoint.WEIGHTS, ckpt / checkpoint.WEIGHTS)
        shutil.copy(ckpt_root / "model.json", ckpt / "model.json")
        tracker.log_artifact(ckpt, "checkpoint")
        if curve is not None:
            plot_curve(curve, out / "curve.png", f"{spec.model.arch} on {spec.data.source}")
            tracker.log_artifact(out / "curve.png")
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        tracker.log_artifact(out / "summary.json")
        if samples:  # read by the report: a list of {"prompt", "reference", "generation"}
            (out / "samples").mkdir()
            (out / "samples" / "samples.json").write_text(json.dumps(samples, indent=1, ensure_ascii=False))
            tracker.log_artifact(out / "samples", "samples")
