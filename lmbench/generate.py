"""Decoding for every architecture, and BLEU evaluation of generated text.

Strategies (:class:`~lmbench.spec.GenerationSpec`): ``greedy``; ``sample`` with temperature,
top-k and top-p (nucleus) filtering, seeded by a private ``torch.Generator``; ``beam`` search with
a width, length normalisation (``logp / length ** length_penalty``) and an early stop once every
beam has produced EOS.

How a model consumes its growing context (:class:`_Context`) is the model's business, never a
branch on the architecture: ``incremental`` models are fed only the new token with their state
(recurrent models step their hidden state; ``gpt`` appends to its key/value cache), the others
re-run the whole context. A context longer than the model's ``max_context`` slides: the model
sees the last ``max_context`` tokens (a cache cannot slide - its positions are baked in - so a
cached model switches to re-running the window from then on).

BLEU (:func:`bleu_eval`): prompt/completion records are decoded from ``[BOS] prompt [EOS]``
(the separator the model was trained with) until EOS; plain text is cut into (prefix,
continuation) pairs of ``eval.prefix_tokens`` and ``eval.continuation_tokens`` tokens.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lmbench.errors import SpecError
from lmbench.metrics import corpus_bleu

log = logging.getLogger(__name__)

UNK, BOS, EOS, PAD = 0, 1, 2, 3  # fixed special ids (design.md section 3)


def settings(where: str = "--", **values: Any):
    """A validated :class:`~lmbench.spec.GenerationSpec`; a bad value is a SpecError naming
    ``--option`` (``where="--"``, the CLI) or ``eval.generation.key`` (``where`` a key prefix)."""
    from pydantic import ValidationError

    from lmbench.spec import GenerationSpec

    try:
        return GenerationSpec(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0])
        name = f"--{key.replace('_', '-')}" if where == "--" else f"{where}{key}"
        raise SpecError(name, err["msg"].removeprefix("Value error, ")) from None


# ---------------------------------------------------------------------------------------------
# picking the next token


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``logits`` (B, V) with every token outside the top-k / the nucleus set to -inf.

    The nucleus is the smallest set of most likely tokens whose probability reaches ``top_p``:
    a token is kept when the mass of the tokens ranked above it is still below ``top_p``.
    """
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        above = probs.cumsum(-1) - probs  # mass ranked above each token
        ordered = ordered.masked_fill(above >= top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    return logits


def pick(logits: torch.Tensor, s, generator: torch.Generator | None) -> torch.Tensor:
    """Next token per row (LongTensor[B]) from the last position's ``logits`` (B, V)."""
    if s.strategy != "sample":
        return logits.argmax(-1)
    filtered = filter_logits(logits.float() / s.temperature, s.top_k, s.top_p)
    return torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(1)


# ---------------------------------------------------------------------------------------------
# the context a model decodes from


class _Context:
    """A batch's growing token context and the model state that goes with it."""

    def __init__(self, model, prompt: torch.Tensor, use_cache: bool):
        if prompt.shape[1] == 0:
            raise ValueError("cannot decode from an empty prompt")
        self.model, self.tokens = model, prompt  # (B, T)
        self.limit = model.max_context
        self.cached = use_cache and model.incremental
        self.state = model.decode_state() if self.cached else None
        self.fed = 0  # tokens the state has seen

    def logits(self) -> torch.Tensor:
        """Next-token logits (B, V) after the current context."""
        fits = self.limit is None or self.tokens.shape[1] <= self.limit
        if self.cached and fits:
            logits, self.state = self.model(self.tokens[:, self.fed :], self.state)
            self.fed = self.tokens.shape[1]
        else:
            self.cached = False  # a sliding window shifts every position: re-run from now on
            window = self.tokens if self.limit is None else self.tokens[:, -self.limit :]
            logits, _ = self.model(window, None)
        return logits[:, -1]

    def append(self, token: torch.Tensor) -> None:
        self.tokens = torch.cat([self.tokens, token[:, None]], dim=1)

    def reorder(self, rows: torch.Tensor) -> None:
        self.tokens = self.tokens.index_select(0, rows)
        if self.cached:
            self.state = self.model.reorder_state(self.state, rows)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def decode(model, prompt: torch.Tensor, s, *, use_cache: bool = True,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Greedy or sampled continuations of ``prompt`` (B, P): LongTensor (B, N), N <= max_tokens.

    A row stops at EOS (kept) and is PAD afterwards; decoding ends when every row has stopped.
    """
    if s.strategy == "beam":
        return beam_search(model, prompt, s, use_cache=use_cache)[0][:, 0]
    model.eval()
    ctx = _Context(model, prompt, use_cache)
    b, n = prompt.shape[0], s.max_tokens or 64
    out = prompt.new_full((b, n), PAD)
    done = torch.zeros(b, dtype=torch.bool, device=prompt.device)
    for i in range(n):
        nxt = pick(ctx.logits(), s, generator).masked_fill(done, PAD)  # (B,)
        out[:, i] = nxt
        done |= nxt == EOS
        if done.all():
            return out[:, : i + 1]
        ctx.append(nxt)
    return out


@torch.inference_mode()
def beam_search(model, prompt: torch.Tensor, s, *, use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search: (tokens (B, W, N), scores (B, W)), beams ranked best first by
    ``sum logp / length ** length_penalty`` (length counts the tokens up to and with EOS).

    Every beam starts from the prompt; a finished beam is extended with PAD at no cost, so its
    score stays and it keeps competing; the search stops when every beam has finished.
    """
    model.eval()
    b, w, n = prompt.shape[0], s.beams, s.max_tokens or 64
    ctx = _Context(model, prompt.repeat_interleave(w, 0), use_cache)  # rows: prompt-major
    dev = prompt.device
    scores = torch.zeros(b, w, device=dev)
    scores[:, 1:] = float("-inf")  # identical beams at the start: expand only the first
    out = prompt.new_empty((b * w, 0))
    done = torch.zeros(b * w, dtype=torch.bool, device=dev)
    length = torch.zeros(b * w, device=dev)
    base = torch.arange(b, device=dev)[:, None] * w  # (B, 1)
    for _ in range(n):
        logp = F.log_softmax(ctx.logits().float(), dim=-1)  # (BW, V)
        v = logp.shape[-1]
        logp[done] = float("-inf")
        logp[done, PAD] = 0.0
        top, flat = (scores.reshape(-1, 1) + logp).view(b, w * v).topk(w, dim=-1)  # (B, W)
        rows = (base + flat // v).view(-1)  # (BW,) the beam each candidate extends
        tok = (flat % v).view(-1)
        scores = top
        out = torch.cat([out.index_select(0, rows), tok[:, None]], dim=1)
        length = length.index_select(0, rows) + (~done.index_select(0, rows)).float()
        done = done.index_select(0, rows) | (tok == EOS)
        if done.all():
            break
        ctx.reorder(rows)
        ctx.append(tok)
    norm = scores.view(-1) / length.clamp(min=1) ** s.length_penalty
    norm = norm.view(b, w)
    rank = norm.argsort(dim=1, descending=True)  # (B, W)
    pick_rows = (base + rank).view(-1)
    return out.index_select(0, pick_rows).view(b, w, -1), norm.gather(1, rank)


def strip(ids: list[int]) -> list[int]:
    """A generated row up to (without) its EOS, PAD removed."""
    if EOS in ids:
        ids = ids[: ids.index(EOS)]
    return [i for i in ids if i != PAD]


def generate_ids(model, prompts: list[list[int]], s, *, max_tokens: int | None = None, batch_size: int = 64,
                 use_cache: bool = True) -> list[list[int]]:
    """One continuation per prompt (token ids, without EOS). Prompts of equal length are decoded
    together in batches; sampling is seeded by ``s.seed`` once for the whole call."""
    if max_tokens is not None:
        s = s.model_copy(update={"max_tokens": s.max_tokens or max_tokens})
    dev = _device(model)
    gen = torch.Generator(device=dev).manual_seed(s.seed)
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    out: list[list[int]] = [[] for _ in prompts]
    for idx in by_len.values():
        for a in range(0, len(idx), batch_size):
            chunk = idx[a : a + batch_size]
            x = torch.tensor([prompts[i] for i in chunk], dtype=torch.long, device=dev)
            rows = decode(model, x, s, use_cache=use_cache, generator=gen).tolist()
            for i, r in zip(chunk, rows, strict=True):
                out[i] = strip(r)
    return out


# ---------------------------------------------------------------------------------------------
# BLEU evaluation


@dataclass
class Pairs:
    """Held-out prompts (token ids, as fed to the model) with their texts and reference texts."""

    prompt_ids: list[list[int]]
    prompts: list[str]
    references: list[str]
    max_tokens: int


def eval_pairs(data, split: str, ev, limit: int | None) -> Pairs:
    """The first ``limit`` (prompt, reference) pairs of ``split`` (see the module docstring)."""
    tok, src = data.tokenizer, data.splits[split]
    ids, prompts, refs = [], [], []
    if data.kind == "records":
        n = len(src) if limit is None else min(limit, len(src))
        longest = 0
        for i in range(n):
            toks = [int(t) for t in src[i][0]]
            p = int(src.n_prompt[i])
            ids.append(toks[: p + 2])  # BOS + prompt + the EOS separator
            prompts.append(tok.decode(toks[1 : p + 1]))
            refs.append(tok.decode(toks[p + 2 : -1]))
            longest = max(longest, len(toks) - p - 3)
        return Pairs(ids, prompts, refs, longest + 8)
    a, c = ev.prefix_tokens, ev.continuation_tokens
    n = len(src) // (a + c)
    n = n if limit is None else min(n, limit)
    for i in range(n):
        window = [int(t) for t in src[i * (a + c) : (i + 1) * (a + c)]]
        ids.append(window[:a])
        prompts.append(tok.decode(window[:a]))
        refs.append(tok.decode(window[a:]))
    return Pairs(ids, prompts, refs, c)


def bleu_eval(model, data, split: str, ev, limit: int | None = None) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Generate for the held-out prompts of ``split`` and score corpus BLEU-4.

    Returns ``({"bleu", "bp", "p1".."p4"}, samples)`` with samples the first ``ev.samples`` rows
    ``{"prompt", "reference", "generation"}``. ``limit`` defaults to ``ev.bleu_prompts``.
    """
    pairs = eval_pairs(data, split, ev, limit if limit is not None else ev.bleu_prompts)
    if not pairs.prompt_ids:
        raise ValueError(f"the {split} split has no prompts to generate from")
    was_training = model.training
    gens = generate_ids(model, pairs.prompt_ids, ev.generation, max_tokens=pairs.max_tokens)
    model.train(was_training)
    texts = [data.tokenizer.decode(g) for g in gens]
    scores = corpus_bleu(pairs.references, texts)
    samples = [{"prompt": p, "reference": r, "generation": g}
               for p, r, g in list(zip(pairs.prompts, pairs.references, texts, strict=True))[: ev.samples]]
    return scores, samples


def bleu_enabled(ev, data) -> bool:
    """``eval.bleu``: on by default for prompt/completion data, off for plain text."""
    return data.kind == "records" if ev.bleu is None else ev.bleu


# ---------------------------------------------------------------------------------------------
# `lmbench generate`: a trained model from a run id or a checkpoint path


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
    import os
    from pathlib import Path

    import mlflow

    from lmbench.errors import UserError
    from lmbench.tracking import find_run, resolve_uri

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
        local = run.data.tags.get("lmbench.checkpoint_dir")
        if not local or not Path(local).exists():
            raise UserError("RUN_ID|CHECKPOINT", f"run {run_id} has no checkpoint artifact and no local "
                            f"checkpoint on this machine (looked in {local})") from None
        return Path(local)


def load_model(target: str, *, tracking_uri: str | None = None, device: str | None = None) -> Loaded:
    """Rebuild a trained model (best weights, safetensors) and its tokenizer from ``target``: a
    checkpoint path (a run's checkpoint folder, one ``ckpt-*`` folder, or a downloaded
    ``checkpoint/`` artifact) or an MLflow run id."""
    import json
    import tempfile
    from pathlib import Path

    from lmbench import checkpoint
    from lmbench.data import load_tokenizer
    from lmbench.models import build_model

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
    from lmbench.errors import UserError

    if not prompt.strip():
        raise UserError("--prompt", "is empty: give some text to continue")
    ids = list(loaded.tokenizer.encode(prompt))
    if not ids:
        raise UserError("--prompt", f"{prompt!r} has no tokens for this model's tokenizer")
    n_unk = ids.count(UNK)
    if n_unk:
        log.warning("%d of %d prompt tokens are unknown to the tokenizer and map to unk", n_unk, len(ids))
    return [BOS, *ids, EOS] if loaded.card.get("data_kind") == "records" else ids


def complete(loaded: Loaded, prompt: str, s, num: int = 1, *, use_cache: bool = True) -> list[str]:
    """``num`` continuations of ``prompt``: samples (``sample``), the ``num`` best beams (``beam``)
    or the one greedy continuation."""
    if num < 1:
        raise SpecError("--num", f"must be >= 1, got {num}")
    if s.strategy == "greedy" and num > 1:
        raise SpecError("--num", "greedy decoding has one continuation; use --strategy sample or beam")
    if s.strategy == "beam" and num > s.beams:
        raise SpecError("--num", f"at most --beams ({s.beams}) continuations, got {num}")
    ids = prompt_ids(loaded, prompt)
    if s.strategy == "beam":
        x = torch.tensor([ids], dtype=torch.long, device=_device(loaded.model))
        rows = beam_search(loaded.model, x, s, use_cache=use_cache)[0][0, :num].tolist()
        outs = [strip(r) for r in rows]
    else:
        outs = generate_ids(loaded.model, [ids] * num, s, use_cache=use_cache)
    return [loaded.tokenizer.decode(o) for o in outs]
