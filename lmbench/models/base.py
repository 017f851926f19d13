"""The architecture registry and the :class:`LanguageModel` contract every architecture follows.

An architecture is one module that defines a config dataclass (a :class:`ModelConfig` subclass
with a ``validate()`` method) and a :class:`LanguageModel` subclass, and registers the pair::

    @register("myarch", config=MyConfig, presets={"small": {...}, "default": {}, "large": {...}},
              description="one line for `lmbench models`")
    class MyModel(LanguageModel):
        def __init__(self, vocab_size: int, config: MyConfig): ...
        def forward(self, idx, state=None): ...

Callers never branch on the architecture: they call :func:`build_model` and then
``logits, state = model(x, state)`` / ``state = model.detach_state(state)``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from lmbench.errors import SpecError
from lmbench.models.recipes import DEFAULT as DEFAULT_RECIPE
from lmbench.models.recipes import Recipe

PRESETS = ("small", "default", "large")

State = Any  # None | Tensor | tuple of Tensors (LSTM: (h, c))


# ---------------------------------------------------------------------------------------------
# configs


@dataclass
class ModelConfig:
    """Base of every architecture's config dataclass.

    Subclasses declare typed fields (``int``, ``float``, ``bool`` or ``str``) with defaults and
    override :meth:`validate`, calling :meth:`require` for each rule, so that
    :func:`resolve_config` stays generic.
    """

    def validate(self) -> None:  # pragma: no cover - every subclass overrides
        """Raise :class:`SpecError` (via :meth:`require`) for the first invalid value."""

    @staticmethod
    def require(ok: bool, key: str, reason: str) -> None:
        if not ok:
            raise SpecError(f"model.config.{key}", reason)

    # shared rules ---------------------------------------------------------------------------
    def require_positive(self, *keys: str) -> None:
        for k in keys:
            v = getattr(self, k)
            self.require(v >= 1, k, f"must be >= 1, got {v}")

    def require_dropout(self, key: str = "dropout") -> None:
        v = getattr(self, key)
        self.require(0.0 <= v < 1.0, key, f"must be in [0, 1), got {v}")

    def require_attention(self) -> None:
        """The rules every multi-head attention config shares (d_model, n_heads, d_ff, ...)."""
        self.require_positive("d_model", "n_layers", "n_heads", "max_len")
        self.require(self.d_ff >= 0, "d_ff", f"must be >= 0 (0 = 4 * d_model), got {self.d_ff}")
        self.require_dropout()
        self.require(
            self.d_model % self.n_heads == 0,
            "n_heads",
            f"must divide d_model ({self.d_model} is not divisible by {self.n_heads})",
        )


def _field_types(config_cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def _coerce(value: Any, typ: type, key: str) -> Any:
    """Check ``value`` against a field type; ints are accepted (and converted) for floats."""
    where = f"model.config.{key}"
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise SpecError(where, f"expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise SpecError(where, f"expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str):  # PyYAML reads `1e-3` (no dot) as a string
            try:
                out = float(value)
            except ValueError:
                raise SpecError(where, f"expected a number, got {value!r}") from None
        else:
            raise SpecError(where, f"expected a number, got {value!r}")
        if not math.isfinite(out):
            raise SpecError(where, f"expected a finite number, got {value!r}")
        return out
    if typ is str:
        if isinstance(value, str):
            return value
        raise SpecError(where, f"expected a string, got {value!r}")
    raise TypeError(f"unsupported config field type {typ!r} for {key}")  # programming error


# ---------------------------------------------------------------------------------------------
# the model contract


class LanguageModel(nn.Module):
    """A next-token language model: ``forward(idx[B,T], state) -> (logits[B,T,V], state)``.

    Subclasses set ``self.config`` and ``self.vocab_size`` and implement :meth:`forward`;
    the rest of the contract has working defaults:

    * ``stateful`` (class attribute): recurrent models return their hidden state and accept it
      back; stateless ones ignore ``state`` and return ``None``.
    * :attr:`max_context` reads ``config.max_len`` when the config has one.
    * :meth:`embedding_parameters` names the vocabulary-sized tables (token embedding, learned
      positions, an untied output matrix and its bias); :meth:`num_params` and
      :meth:`flops_per_token` are derived from it.
    * ``attention_layers`` (class attribute): ``True`` when every one of ``config.n_layers``
      layers has self-attention over the sequence (adds the attention FLOPs term).
    * Decoding (:mod:`lmbench.generate`): ``incremental`` models continue a sequence from
      ``forward(new_tokens, state)`` - recurrent models through their hidden state, ``gpt``
      through the key/value cache that :meth:`decode_state` starts (training never passes one,
      so the training loop sees ``None`` as before). Other models are re-run on the whole
      (windowed) context at every step. :meth:`reorder_state` selects batch rows of a state
      (beam search); ``state_batch_dim`` says where the batch is in its tensors.
    """

    arch: str = ""  # set by @register
    stateful: bool = False
    attention_layers: bool = False
    attention_per_layer: int = 1  # attention ops over the sequence per layer (seq2seq: 3)
    incremental: bool = False
    state_batch_dim: int = 0

    config: Any
    vocab_size: int

    def forward(self, idx: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    # --- state -----------------------------------------------------------------------------
    @staticmethod
    def detach_state(state: State) -> State:
        """The same structure with every tensor detached (truncated BPTT); ``None`` passes."""
        if state is None:
            return None
        if isinstance(state, torch.Tensor):
            return state.detach()
        if isinstance(state, tuple | list):
            return type(state)(LanguageModel.detach_state(s) for s in state)
        raise TypeError(f"cannot detach a state of type {type(state).__name__}")

    # --- decoding --------------------------------------------------------------------------
    def decode_state(self) -> State:
        """The state incremental decoding starts from (``None``: the model creates its own)."""
        return None

    def reorder_state(self, state: State, index: torch.Tensor) -> State:
        """``state`` with its batch rows replaced by rows ``index`` (LongTensor[B'])."""
        if state is None:
            return None
        if isinstance(state, torch.Tensor):
            return state.index_select(self.state_batch_dim, index)
        if isinstance(state, tuple | list):
            return type(state)(self.reorder_state(s, index) for s in state)
        if hasattr(state, "reorder"):  # e.g. gpt's KVCache
            return state.reorder(index)
        raise TypeError(f"cannot reorder a state of type {type(state).__name__}")

    # --- limits ----------------------------------------------------------------------------
    @property
    def max_context(self) -> int | None:
        """The longest sequence ``forward`` accepts, or ``None`` when unlimited (recurrent)."""
        return getattr(self.config, "max_len", None)

    def check_length(self, t: int) -> None:
        limit = self.max_context
        if limit is not None and t > limit:
            raise ValueError(
                f"sequence length {t} exceeds {self.arch}'s maximum context {limit} "
                "(raise model.config.max_len)"
            )

    # --- sizes -----------------------------------------------------------------------------
    def embedding_parameters(self) -> list[nn.Parameter]:
        """Vocabulary/position tables: every ``nn.Embedding`` weight plus ``self.head``'s
        weight (and bias) when the head exists and is not tied to an embedding."""
        params: list[nn.Parameter] = [
            m.weight for m in self.modules() if isinstance(m, nn.Embedding)
        ]
        head = getattr(self, "head", None)
        if isinstance(head, nn.Linear):
            params.append(head.weight)
            if head.bias is not None:
                params.append(head.bias)
        return _unique(params)

    def _lookup_only_parameters(self) -> list[nn.Parameter]:
        """Embedding tables that are only indexed, never multiplied (not shared with the head)."""
        head = getattr(self, "head", None)
        head_w = head.weight if isinstance(head, nn.Linear) else None
        return _unique(
            m.weight
            for m in self.modules()
            if isinstance(m, nn.Embedding) and m.weight is not head_w
        )

    def num_params(self) -> dict[str, int]:
        """``{"embedding", "non_embedding", "total"}``; shared (tied) tensors count once."""
        total = sum(p.numel() for p in self.parameters())  # parameters() de-duplicates
        emb = sum(p.numel() for p in self.embedding_parameters())
        return {"embedding": emb, "non_embedding": total - emb, "total": total}

    def matmul_params(self) -> int:
        """Weights used in a matrix multiply per token (every >=2-D tensor, the output head
        included even when tied, minus lookup-only embedding tables)."""
        lookup = {id(p) for p in self._lookup_only_parameters()}
        return sum(p.numel() for p in self.parameters() if p.dim() >= 2 and id(p) not in lookup)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs (forward + backward) per token: ``6 * matmul_params`` plus, for
        attention models, ``12 * n_layers * seq_len * d_model`` (PaLM, appendix B) per attention
        op of a layer (``attention_per_layer``)."""
        flops = 6.0 * self.matmul_params()
        if self.attention_layers:
            flops += 12.0 * self.attention_per_layer * self.config.n_layers * seq_len * self.config.d_model
        return flops

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, vocab_size={getattr(self, 'vocab_size', '?')}"


def _unique(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


# ---------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class Sizing:
    """Which config fields set a model's size, for ``--match-params`` and size ladders."""

    width: str = "d_model"
    depth: str = "n_layers"
    follows_width: tuple[str, ...] = ()  # set equal to the width unless the user fixed them
    scales_with_width: tuple[str, ...] = ()  # left alone: their 0 default already follows the width

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field a parameter budget decides (not searched when sizes are matched)."""
        return (self.width, self.depth, *self.follows_width, *self.scales_with_width)


@dataclass(frozen=True)
class ArchInfo:
    """What the registry knows about one architecture."""

    name: str
    config_cls: type
    model_cls: type
    presets: dict[str, dict[str, Any]]
    description: str
    stateful: bool
    sizing: Sizing | None  # None: the architecture cannot be sized to a parameter budget
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)
    recipe: Recipe = DEFAULT_RECIPE  # how it is trained and tuned unless the spec says otherwise


_REGISTRY: dict[str, ArchInfo] = {}

M = TypeVar("M", bound=type)


def register(
    name: str,
    *,
    config: type,
    presets: dict[str, dict[str, Any]],
    description: str,
    sizing: Sizing | None = None,
    search_space: dict[str, dict[str, Any]] | None = None,
    recipe: Recipe | None = None,
) -> Callable[[M], M]:
    """Class decorator: register a :class:`LanguageModel` subclass under ``name``.

    ``presets`` maps each of ``small``/``default``/``large`` to overrides of the config
    defaults. ``search_space`` is the default Optuna space for the model config: a mapping
    ``param -> {"type": "int", "low", "high"[, "step"]} | {"type": "float", "low", "high"[, "log"]}
    | {"type": "categorical", "choices": [...]}``. ``sizing`` names the width and depth fields
    (and those that follow the width) for parameter matching. ``recipe``
    (:class:`~lmbench.models.recipes.Recipe`) is its default training recipe and the search ranges
    of its training settings (default: lmbench's general AdamW recipe). ``stateful`` comes from the
    class: it decides the batch order ``data.order: auto`` gives the architecture (stateful models
    get contiguous streams, the others random windows).
    """
    if not (isinstance(config, type) and issubclass(config, ModelConfig)):
        raise TypeError(f"{name}: config must be a ModelConfig dataclass")
    missing = [p for p in PRESETS if p not in presets]
    if missing:
        raise ValueError(f"{name}: missing presets {missing}")

    def deco(cls: M) -> M:
        if not issubclass(cls, LanguageModel):
            raise TypeError(f"{name}: {cls.__name__} must subclass LanguageModel")
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        fields = _field_types(config)
        for preset, values in presets.items():
            unknown = set(values) - set(fields)
            if unknown:
                raise ValueError(f"{name}: preset {preset!r} sets unknown fields {sorted(unknown)}")
        for key in [*(search_space or {}), *(sizing.fields if sizing else ())]:
            if key not in fields:
                raise ValueError(f"{name}: search space or sizing names unknown field {key!r}")
        cls.arch = name
        _REGISTRY[name] = ArchInfo(
            name=name,
            config_cls=config,
            model_cls=cls,
            presets={k: dict(v) for k, v in presets.items()},
            description=description,
            stateful=bool(cls.stateful),
            sizing=sizing,
            search_space=dict(search_space or {}),
            recipe=recipe or DEFAULT_RECIPE,
        )
        return cls

    return deco


def arch_names() -> list[str]:
    """Registered architectures, in registration order."""
    return list(_REGISTRY)


def get_arch(name: str, where: str = "model.arch") -> ArchInfo:
    """The registered architecture ``name``; unknown names are a SpecError at key ``where``."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise SpecError(
            where, f"unknown architecture {name!r} (choose from {', '.join(_REGISTRY)})"
        ) from None


def resolve_config(arch: str, preset: str = "default", overrides: dict[str, Any] | None = None):
    """The config dataclass of ``arch``: field defaults, then ``presets[preset]``, then
    ``overrides``; every value type-checked and the result validated (:class:`SpecError` with
    ``where = "model.config.<key>"`` for the first problem)."""
    info = get_arch(arch)
    if preset not in info.presets:
        raise SpecError(
            "model.preset", f"unknown preset {preset!r} (choose from {', '.join(info.presets)})"
        )
    types = _field_types(info.config_cls)
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise SpecError("model.config", f"expected a mapping, got {type(overrides).__name__}")
    values: dict[str, Any] = {}
    for key, value in info.presets[preset].items():
        values[key] = _coerce(value, types[key], key)
    for key, value in overrides.items():
        if key not in types:
            raise SpecError(
                f"model.config.{key}",
                f"unknown parameter for {arch} (known: {', '.join(types)})",
            )
        values[key] = _coerce(value, types[key], key)
    cfg = info.config_cls(**values)
    cfg.validate()
    return cfg


def build_model(
    arch: str,
    vocab_size: int,
    preset: str = "default",
    overrides: dict[str, Any] | None = None,
) -> LanguageModel:
    """Resolve the config and build the model (weights drawn from torch's global RNG)."""
    if (
        isinstance(vocab_size, bool)
        or not isinstance(vocab_size, numbers.Integral)
        or vocab_size < 1
    ):
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    cfg = resolve_config(arch, preset, overrides)
    model = get_arch(arch).model_cls(int(vocab_size), cfg)
    return model


def describe_archs() -> list[dict[str, Any]]:
    """Plain-data description of every architecture (for ``lmbench models``)."""
    out = []
    for info in _REGISTRY.values():
        types = _field_types(info.config_cls)
        fields = [
            {
                "name": f.name,
                "type": types[f.name].__name__,
                "default": f.default,
                "help": f.metadata.get("help", ""),
            }
            for f in dataclasses.fields(info.config_cls)
        ]
        out.append(
            {
                "name": info.name,
                "description": info.description,
                "stateful": info.stateful,
                "fields": fields,
                "presets": {k: dict(v) for k, v in info.presets.items()},
                "search_space": {k: dict(v) for k, v in info.search_space.items()},
                "recipe": info.recipe.describe(),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# small shared helpers


def param(default: Any, help: str) -> Any:  # noqa: A002 - mirrors dataclasses.field naming
    """A dataclass field with a help text (shown by ``lmbench models``)."""
    return field(default=default, metadata={"help": help})
