"""Loading a trained model for generation: its best weights, model card and tokenizer.

It lives with training because it reads what training writes (the checkpoint format and the
model card, :mod:`lmbench.training.artifacts`)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch

from lmbench.data import load_tokenizer
from lmbench.data.kinds import KINDS
from lmbench.data.tokenizers import UNK
from lmbench.errors import SpecError, UserError
from lmbench.generation.decoding import _device, beam_search, generate_ids, strip
from lmbench.models import build_model
from lmbench.tracking import schema
from lmbench.tracking.tracker import find_run, resolve_uri
from lmbench.training import checkpoint

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """A model ready to generate, with its tokenizer and model card (``model.json``)."""

    model: Any
    tokenizer: Any
    card: dict[str, Any]


def _find_beside(ckpt_dir, name: str):
    """``name`` in the checkpoint directory or one of its two parents (a run's checkpoint root)."""
    for folder in (ckpt_dir, ckpt_dir.parent, ckpt_dir.parent.parent):
        if (folder / name).exists():
            return folder / name
    return None


def _from_run(run_id: str, tracking_uri: str | None, tmp) -> Any:
    """The run's checkpoint: its logged artifacts, else its local checkpoint folder."""

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stdout to the answer
    run = find_run(run_id, tracking_uri)
    if run is None:
        raise UserError("RUN_ID|CHECKPOINT", f"{run_id!r} is neither a checkpoint path nor a run in the tracking store")
    try:
        for part in ("checkpoint", "tokenizer"):
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=part, dst_path=str(tmp),
                                                tracking_uri=resolve_uri(tracking_uri))
        return Path(tmp) / "checkpoint"
    except Exception:  # an unfinished run has no artifacts yet: use its local checkpoints
        local = run.data.tags.get(schema.CHECKPOINT_DIR)
        if not local or not Path(local).exists():
            raise UserError("RUN_ID|CHECKPOINT", f"run {run_id} has no checkpoint artifact and no local "
                            f"checkpoint on this machine (looked in {local})") from None
        return Path(local)


def load_model(target: str, *, tracking_uri: str | None = None, device: str | None = None) -> Loaded:
    """Rebuild a trained model (best weights, safetensors) and its tokenizer from ``target``: a
    checkpoint path (a run's checkpoint folder, one ``ckpt-*`` folder, or a downloaded
    ``checkpoint/`` artifact) or an MLflow run id."""

    dev = torch.device(device if device not in (None, "auto") else "cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(target) if Path(target).exists() else _from_run(target, tracking_uri, tmp)
        ckpt_dir = checkpoint.locate(path, "best")
        card_path, tok_path = _find_beside(ckpt_dir, "model.json"), _find_beside(ckpt_dir, "tokenizer")
        if card_path is None or tok_path is None:
            missing = "model.json" if card_path is None else "tokenizer/"
            raise checkpoint.CheckpointError(str(path), f"no {missing} beside the checkpoint")
        card = json.loads(card_path.read_text())
        model = build_model(card["arch"], card["vocab_size"], "default", card["config"])
        checkpoint.load_weights(ckpt_dir, model, dev)
        return Loaded(model.to(dev).eval(), load_tokenizer(tok_path), card)


def prompt_ids(loaded: Loaded, prompt: str) -> list[int]:
    """Token ids to decode from: ``[BOS] prompt [EOS]`` for a model trained on prompt/completion
    records, the prompt's tokens for one trained on text. Unknown symbols map to UNK (warned)."""

    if not prompt.strip():
        raise UserError("--prompt", "is empty: give some text to continue")
    ids = list(loaded.tokenizer.encode(prompt))
    if not ids:
        raise UserError("--prompt", f"{prompt!r} has no tokens for this model's tokenizer")
    n_unk = ids.count(UNK)
    if n_unk:
        log.warning("%d of %d prompt tokens are unknown to the tokenizer and map to unk", n_unk, len(ids))
    return KINDS[loaded.card.get("data_kind", "text")].prompt(ids)


def complete(loaded: Loaded, prompt: str, generation, num: int = 1, *, use_cache: bool = True) -> list[str]:
    """``num`` continuations of ``prompt``: samples (``sample``), the ``num`` best beams (``beam``)
    or the one greedy continuation."""
    if num < 1:
        raise SpecError("--num", f"must be >= 1, got {num}")
    if generation.strategy == "greedy" and num > 1:
        raise SpecError("--num", "greedy decoding has one continuation; use --strategy sample or beam")
    if generation.strategy == "beam" and num > generation.beams:
        raise SpecError("--num", f"at most --beams ({generation.beams}) continuations, got {num}")
    ids = prompt_ids(loaded, prompt)
    if generation.strategy == "beam":
        tokens = torch.tensor([ids], dtype=torch.long, device=_device(loaded.model))
        rows = beam_search(loaded.model, tokens, generation, use_cache=use_cache)[0][0, :num].tolist()
        outs = [strip(r) for r in rows]
    else:
        outs = generate_ids(loaded.model, [ids] * num, generation, use_cache=use_cache)
    return [loaded.tokenizer.decode(o) for o in outs]
