"""Decoding for every architecture: greedy, sampling (temperature, top-k, top-p) and beam search.

How a model consumes its growing context (:class:`_Context`) is the model's business, never a
branch on the architecture: ``incremental`` models are fed only the new token with their state
(recurrent models step their hidden state; ``gpt`` appends to its key/value cache), the others
re-run the whole context. A context longer than the model's ``max_context`` slides: the model
sees the last ``max_context`` tokens (a cache cannot slide - its positions are baked in - so a
cached model switches to re-running the window from then on). ``compile=True`` asks a cache for
its compiled one-token step (``gpt``: fixed shapes, one graph per batch size; compiling takes
seconds to a minute on a CPU, so it pays off over long generations, not for a few tokens); where
compiling fails, decoding stays eager."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import ValidationError

from lmbench.config import GenerationSpec
from lmbench.data.tokenizers import EOS, PAD
from lmbench.errors import SpecError


def settings(where: str = "--", **values: Any):
    """A validated :class:`~lmbench.spec.GenerationSpec`; a bad value is a SpecError naming
    ``--option`` (``where="--"``, the CLI) or ``eval.generation.key`` (``where`` a key prefix)."""

    try:
        return GenerationSpec(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        err = error.errors()[0]
        key = str(err["loc"][0])
        name = f"--{key.replace('_', '-')}" if where == "--" else f"{where}{key}"
        raise SpecError(name, err["msg"].removeprefix("Value error, ")) from None


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


def pick(logits: torch.Tensor, generation, generator: torch.Generator | None) -> torch.Tensor:
    """Next token per row (LongTensor[B]) from the last position's ``logits`` (B, V)."""
    if generation.strategy != "sample":
        return logits.argmax(-1)
    filtered = filter_logits(logits.float() / generation.temperature, generation.top_k, generation.top_p)
    return torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(1)


class _Context:
    """A batch's growing token context and the model state that goes with it."""

    def __init__(self, model, prompt: torch.Tensor, use_cache: bool, compile: bool = False):
        if prompt.shape[1] == 0:
            raise ValueError("cannot decode from an empty prompt")
        self.model, self.tokens = model, prompt  # (B, T)
        self.limit = model.max_context
        self.cached = use_cache and model.incremental
        self.state = model.decode_state() if self.cached else None
        if compile and hasattr(self.state, "compile"):  # a cache with a compiled step (gpt's)
            self.state.compile = True
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
def decode(model, prompt: torch.Tensor, generation, *, use_cache: bool = True,
           generator: torch.Generator | None = None, compile: bool = False) -> torch.Tensor:
    """Greedy or sampled continuations of ``prompt`` (B, P): LongTensor (B, N), N <= max_tokens.

    A row stops at EOS (kept) and is PAD afterwards; decoding ends when every row has stopped.
    """
    if generation.strategy == "beam":
        return beam_search(model, prompt, generation, use_cache=use_cache, compile=compile)[0][:, 0]
    model.eval()
    ctx = _Context(model, prompt, use_cache, compile)
    n_rows, n_new = prompt.shape[0], generation.max_tokens or 64
    out = prompt.new_full((n_rows, n_new), PAD)
    done = torch.zeros(n_rows, dtype=torch.bool, device=prompt.device)
    for step in range(n_new):
        nxt = pick(ctx.logits(), generation, generator).masked_fill(done, PAD)  # (B,)
        out[:, step] = nxt
        done |= nxt == EOS
        if done.all():
            return out[:, : step + 1]
        ctx.append(nxt)
    return out


@torch.inference_mode()
def beam_search(model, prompt: torch.Tensor, generation, *, use_cache: bool = True,
                compile: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search: (tokens (B, W, N), scores (B, W)), beams ranked best first by
    ``sum logp / length ** length_penalty`` (length counts the tokens up to and with EOS).

    Every beam starts from the prompt; a finished beam is extended with PAD at no cost, so its
    score stays and it keeps competing; the search stops when every beam has finished.
    """
    model.eval()
    n_rows, n_beams, n_new = prompt.shape[0], generation.beams, generation.max_tokens or 64
    ctx = _Context(model, prompt.repeat_interleave(n_beams, 0), use_cache, compile)  # rows: prompt-major
    dev = prompt.device
    scores = torch.zeros(n_rows, n_beams, device=dev)
    scores[:, 1:] = float("-inf")  # identical beams at the start: expand only the first
    out = prompt.new_empty((n_rows * n_beams, 0))
    done = torch.zeros(n_rows * n_beams, dtype=torch.bool, device=dev)
    length = torch.zeros(n_rows * n_beams, device=dev)
    base = torch.arange(n_rows, device=dev)[:, None] * n_beams  # (B, 1)
    for _ in range(n_new):
        logp = F.log_softmax(ctx.logits().float(), dim=-1)  # (BW, V)
        n_vocab = logp.shape[-1]
        logp[done] = float("-inf")
        logp[done, PAD] = 0.0
        top, flat = (scores.reshape(-1, 1) + logp).view(n_rows, n_beams * n_vocab).topk(n_beams, dim=-1)  # (B, W)
        rows = (base + flat // n_vocab).view(-1)  # (BW,) the beam each candidate extends
        tok = (flat % n_vocab).view(-1)
        scores = top
        out = torch.cat([out.index_select(0, rows), tok[:, None]], dim=1)
        length = length.index_select(0, rows) + (~done.index_select(0, rows)).float()
        done = done.index_select(0, rows) | (tok == EOS)
        if done.all():
            break
        ctx.reorder(rows)
        ctx.append(tok)
    norm = scores.view(-1) / length.clamp(min=1) ** generation.length_penalty
    norm = norm.view(n_rows, n_beams)
    rank = norm.argsort(dim=1, descending=True)  # (B, W)
    pick_rows = (base + rank).view(-1)
    return out.index_select(0, pick_rows).view(n_rows, n_beams, -1), norm.gather(1, rank)


def strip(ids: list[int]) -> list[int]:
    """A generated row up to (without) its EOS, PAD removed."""
    if EOS in ids:
        ids = ids[: ids.index(EOS)]
    return [i for i in ids if i != PAD]


def generate_ids(model, prompts: list[list[int]], generation, *, max_tokens: int | None = None, batch_size: int = 64,
                 use_cache: bool = True) -> list[list[int]]:
    """One continuation per prompt (token ids, without EOS). Prompts of equal length are decoded
    together in batches; sampling is seeded by ``generation.seed`` once for the whole call."""
    if max_tokens is not None:
        generation = generation.model_copy(update={"max_tokens": generation.max_tokens or max_tokens})
    dev = _device(model)
    gen = torch.Generator(device=dev).manual_seed(generation.seed)
    by_len: dict[int, list[int]] = defaultdict(list)
    for index, prompt in enumerate(prompts):
        by_len[len(prompt)].append(index)
    out: list[list[int]] = [[] for _ in prompts]
    for idx in by_len.values():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            tokens = torch.tensor([prompts[i] for i in chunk], dtype=torch.long, device=dev)
            rows = decode(model, tokens, generation, use_cache=use_cache, generator=gen).tolist()
            for index, row in zip(chunk, rows, strict=True):
                out[index] = strip(row)
    return out
