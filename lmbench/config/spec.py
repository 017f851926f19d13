"""The experiment spec as pydantic models: every section, field, default and range.

Everything a run needs is in one :class:`ExperimentSpec`. Loading, overrides and the checks that
need the model registry are in :mod:`lmbench.config.load`; a problem is a :class:`SpecError` naming
the dotted key path."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lmbench import secrets


class _Strict(BaseModel):
    # allow_inf_nan=False: train.lr=inf or nan is a spec error (exit 2), not a run that fails later
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _redacted(url: str | None) -> str | None:
    """A URL's password stays in this process (lmbench.secrets); the spec holds ``user:***@``, so
    nothing made from a spec (params, spec.yaml, checkpoints, study attributes) can leak it."""
    return secrets.remember(url)


class SplitFiles(_Strict):
    """Explicit split files for corpora that come pre-split (WikiText, PTB, ...)."""

    train: str
    val: str
    test: str


class DataSpec(_Strict):
    source: str = Field(
        "synthetic",
        description="synthetic | tinyshakespeare | path to a .txt file, .jsonl file or folder of .txt",
    )
    splits: SplitFiles | None = Field(None, description="pre-split train/val/test files")
    tokenizer: Literal["char", "word", "bpe", "unigram"] = "word"
    vocab_size: int | None = Field(
        None, ge=8, validate_default=True, description="None = every symbol (char/word only)"
    )
    seq_len: int = Field(64, ge=2, le=65536)
    split: tuple[float, float, float] = Field((0.9, 0.05, 0.05), description="train/val/test fractions")
    size: int = Field(400_000, ge=1000, description="synthetic corpus size in tokens")
    seed: int = Field(0, ge=0, description="synthetic generator seed")
    order: Literal["auto", "stream", "random"] = Field(
        "auto", description="text train batches: stream (contiguous streams, state carried: truncated "
        "BPTT) | random (windows at random offsets, nanoGPT's get_batch) | auto (stream for stateful "
        "architectures, random for the others); records keep their own shuffled batches")

    @field_validator("split")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in v):
            raise ValueError("every split fraction must be > 0")
        if abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {sum(v):g}")
        return v

    @field_validator("vocab_size")
    @classmethod
    def _vocab_for_sentencepiece(cls, v: int | None, info: ValidationInfo) -> int | None:
        tok = info.data.get("tokenizer")
        if v is None and tok in ("bpe", "unigram"):
            raise ValueError(f"tokenizer {tok!r} needs a vocab_size")
        return v


class ModelSpec(_Strict):
    arch: str = "lstm"
    preset: Literal["small", "default", "large"] = "default"
    config: dict[str, Any] = Field(default_factory=dict, description="overrides of the preset")


class BudgetSpec(_Strict):
    """Exactly one of steps, tokens or seconds."""

    steps: int | None = Field(None, ge=1)
    tokens: int | None = Field(None, ge=1)
    seconds: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> BudgetSpec:
        given = [k for k in ("steps", "tokens", "seconds") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of steps, tokens or seconds (got {given or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("steps", "tokens", "seconds") if getattr(self, k) is not None)

    @property
    def amount(self) -> float:
        return getattr(self, self.kind)


class ScheduleSpec(_Strict):
    kind: Literal["constant", "cosine", "exponential", "plateau"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    warmup_fraction: float = Field(0.0, ge=0, lt=1, description="linear warmup over this fraction of "
                                   "the budget (with warmup_steps too, the slower of the two)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a fraction of lr")
    gamma: float = Field(0.999, gt=0, le=1, description="exponential: lr multiplier per step")
    factor: float = Field(0.5, gt=0, lt=1, description="plateau: lr multiplier on a stall")
    patience: int = Field(2, ge=0, description="plateau: evaluations without improvement before a cut "
                          "(0: cut at the first evaluation that does not improve)")
    threshold: float = Field(1e-4, ge=0, description="plateau: relative improvement of the validation "
                             "loss that counts as progress (0: any improvement)")


OPTIMIZER_KINDS = ("adamw", "adam", "sgd")


def _betas_in_range(v: tuple[float, float]) -> tuple[float, float]:
    if not all(0 <= b < 1 for b in v):
        raise ValueError("each beta must be in [0, 1)")
    return v


class AdamSpec(_Strict):
    """Adam, or AdamW (weight decay decoupled from the gradient, as in GPT-2 and nanoGPT)."""

    kind: Literal["adamw", "adam"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = Field(1e-8, gt=0)

    _betas = field_validator("betas")(_betas_in_range)


class SGDSpec(_Strict):
    """SGD with optional (Nesterov) momentum; torch's rules: Nesterov needs momentum and no dampening."""

    kind: Literal["sgd"] = "sgd"
    momentum: float = Field(0.0, ge=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1)
    nesterov: bool = False  # declared last: its check reads momentum and dampening

    @field_validator("nesterov")
    @classmethod
    def _nesterov(cls, v: bool, info: ValidationInfo) -> bool:
        if v and not (info.data.get("momentum", 0) > 0 and info.data.get("dampening", 0) == 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        return v


OptimizerSpec = Annotated[AdamSpec | SGDSpec, Field(discriminator="kind")]
# the settings each optimizer takes besides its kind (search spaces, ablations and error messages)
OPTIMIZER_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(f for f in cls.model_fields if f != "kind")
    for cls in (AdamSpec, SGDSpec) for kind in cls.model_fields["kind"].annotation.__args__
}


def _legacy_optimizer(data: dict[str, Any]) -> dict[str, Any]:
    """``optimizer: sgd`` is short for ``optimizer: {kind: sgd}``; a section without a kind is AdamW's.

    Specs before 0.3 said ``optimizer: adamw`` and put ``betas`` at the top of ``train``; stored
    runs, checkpoints and studies still hold such specs, so ``betas`` moves into the section."""
    data = dict(data)
    opt = data.get("optimizer")
    if isinstance(opt, str):
        opt = {"kind": opt}
    elif isinstance(opt, dict):
        opt = {"kind": "adamw", **opt}
    if "betas" in data:
        betas = data.pop("betas")
        opt = opt if opt is not None else {"kind": "adamw"}
        if isinstance(opt, dict):
            if "betas" in opt:
                raise ValueError("betas are given twice: keep train.optimizer.betas only")
            opt["betas"] = betas
    if opt is not None:
        data["optimizer"] = opt
    return data


class TrainSpec(_Strict):
    # tokens by default, so architectures line up on one axis whatever their batch shapes
    budget: BudgetSpec = Field(default_factory=lambda: BudgetSpec(tokens=400_000))
    batch_size: int = Field(32, ge=1)
    optimizer: OptimizerSpec = Field(default_factory=AdamSpec, description="kind: adamw | adam | sgd, "
                                     "plus its settings (betas, eps | momentum, dampening, nesterov)")
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0, description="decoupled for adamw, an L2 term for adam and sgd; "
                                "matrices only (not biases and norm gains)")
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    grad_clip: float | None = Field(1.0, gt=0)
    early_stopping: int | None = Field(None, ge=1, description="evaluations without improvement")
    eval_interval: int = Field(50, ge=1, description="steps between validation evaluations")
    eval_tokens: int = Field(20_000, ge=1, description="size of the fixed validation subset")
    final_eval_tokens: int | None = Field(
        None, ge=1, description="cap on the final val/test evaluation (None: the full splits)"
    )
    log_interval: int = Field(10, ge=1, description="steps between logged train metrics")
    checkpoint_interval: int = Field(200, ge=1, description="steps between 'last' checkpoints")
    seed: int = Field(0, ge=0)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False
    deterministic: bool = False

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _optimizer_forms(cls, data: Any) -> Any:
        return _legacy_optimizer(data) if isinstance(data, dict) else data


class TrackingSpec(_Strict):
    experiment: str | None = Field(None, description="MLflow experiment (default: the spec name)")
    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")

    _no_password = field_validator("tracking_uri")(_redacted)


class SpaceParam(_Strict):
    """One search dimension: exactly one of float, int (a [low, high] range) or categorical."""

    float_: tuple[float, float] | None = Field(None, alias="float")
    int_: tuple[int, int] | None = Field(None, alias="int")
    categorical: list[Any] | None = Field(None, min_length=1)
    log: bool = False
    step: float | None = Field(None, gt=0)
    when: dict[str, Any] | None = Field(None, description="sampled only when these already sampled "
                                        "parameters have these values (a value or a list), e.g. "
                                        "{optimizer: sgd}")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _exactly_one(self) -> SpaceParam:
        given = [k for k in ("float_", "int_", "categorical") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of float: [low, high], int: [low, high] or categorical: [...]")
        rng = self.float_ or self.int_
        if rng is not None:
            if rng[0] > rng[1]:
                raise ValueError(f"low {rng[0]} is above high {rng[1]}")
            if self.log and rng[0] <= 0:
                raise ValueError("a log-scaled range needs low > 0")
        return self

    def _dist(self) -> dict[str, Any]:
        if self.categorical is not None:
            return {"type": "categorical", "choices": list(self.categorical)}
        kind, (low, high) = ("float", self.float_) if self.float_ is not None else ("int", self.int_)
        d: dict[str, Any] = {"type": kind, "low": low, "high": high, "log": self.log}
        if self.step is not None:
            d["step"] = self.step
        return d

    def as_dist(self) -> dict[str, Any]:
        """The registry's form: {"type": float|int|categorical, low/high/log/step or choices[, when]}."""
        d = self._dist()
        if self.when:
            d["when"] = {k: list(v) if isinstance(v, list | tuple) else [v] for k, v in self.when.items()}
        return d


class SearchSpec(_Strict):
    trials: int = Field(6, ge=1, description="total trials per model (re-running continues to this total)")
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["hyperband", "median", "none"] = "hyperband"
    seed: int = Field(0, ge=0, description="sampler seed")
    budget: BudgetSpec | None = Field(
        default_factory=lambda: BudgetSpec(tokens=200_000),
        description="per-trial budget, the same for every model (null: train.budget)",
    )
    storage: str | None = Field(None, description="Optuna storage URL (default: a journal file in studies/)")
    _no_password = field_validator("storage")(_redacted)
    workers: int = Field(1, ge=0, description="processes sharing a study on this machine "
                         "(0: only create the studies and wait for `lmbench worker`s elsewhere)")
    heartbeat_interval: int = Field(10, ge=1, description="seconds between a running trial's liveness records")
    grace_period: int | None = Field(None, ge=1, description="seconds without a heartbeat before a trial "
                                     "counts as dead (default: 3 x heartbeat_interval)")
    max_retries: int = Field(3, ge=0, description="times a trial whose worker died or was pre-empted is retried")
    devices: str | None = Field(None, description="cuda:0,cuda:1 | all | cpu (round-robin over workers)")
    space: dict[str, dict[str, SpaceParam]] = Field(
        default_factory=dict, description="per model: parameter -> range, overriding/extending its default space"
    )


class CompareSpec(_Strict):
    models: list[str] = Field(default_factory=lambda: ["rnn", "lstm", "gru", "transformer"], min_length=1)
    seeds: int = Field(3, ge=1, description="final runs per model with the best configuration")
    match_params: int | None = Field(None, ge=1, description="size every model to this many non-embedding params")


class AblateSpec(_Strict):
    params: list[str] = Field(default_factory=list, description="parameters to sweep, one at a time")
    values: dict[str, list[Any]] = Field(default_factory=dict, description="values per parameter (default: a grid)")
    model: str | None = Field(None, description="architecture (default: model.arch)")
    baseline: Literal["spec", "best"] = "spec"
    seeds: int = Field(3, ge=1)


class ScaleSpec(_Strict):
    """`lmbench scale`: per architecture and compute budget, a ladder of model sizes, each trained
    on the tokens that spend exactly that budget (IsoFLOP curves, then scaling-law fits)."""

    models: list[str] = Field(default_factory=lambda: ["rnn", "lstm", "gru", "transformer"],
                              min_length=1)
    compute: list[float] = Field(default_factory=lambda: [1.5e10, 3e10, 6e10], min_length=1,
                                 description="budgets C in training FLOPs (forward + backward)")
    sizes: int = Field(3, description="model sizes per budget (a parabola in log N needs >= 3)")
    seeds: int = Field(2, ge=1, description="runs per (size, budget): seeds train.seed, +1, ...")
    ratio: float = Field(2.0, gt=1, le=16, description="size ratio of neighbouring ladder rungs")
    # Chinchilla's D/N ~ 20 counts FLOPs as 6N; the embedded corpus's small models spend most of
    # theirs in the output layer, and their optimum sits near a thousand tokens per parameter
    tokens_per_param: float = Field(850.0, gt=0, description="first guess of the compute-optimal "
                                    "D/N: ladders are centred on N = sqrt(C / (6 * this))")
    evaluations: int = Field(1, ge=1, description="validation evaluations per run (the last at "
                             "its end)")
    from_: str | None = Field(None, alias="from", description="hyperparameters from the best "
                              "trial of this experiment's studies (default: the spec's own)")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False,
                              populate_by_name=True)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: int) -> int:
        if v < 3:
            raise ValueError(f"{v} size(s) per budget: a parabola in log N needs at least 3")
        return v

    @field_validator("compute")
    @classmethod
    def _budgets(cls, v: list[float]) -> list[float]:
        if any(c <= 0 for c in v):
            raise ValueError("every compute budget must be > 0 FLOPs")
        if len(set(v)) != len(v):
            raise ValueError("compute budgets repeat")
        return sorted(v)


class GenerationSpec(_Strict):
    """How text is generated for BLEU (and the defaults of `lmbench generate`)."""

    strategy: Literal["greedy", "sample", "beam"] = "greedy"
    temperature: float = Field(1.0, gt=0, description="sample: logits are divided by it")
    top_k: int = Field(0, ge=0, description="sample: keep the k most likely tokens (0 = all)")
    top_p: float = Field(1.0, gt=0, le=1, description="sample: keep the smallest set with this much mass")
    beams: int = Field(4, ge=1, description="beam: width")
    length_penalty: float = Field(1.0, ge=0, description="beam: hypotheses ranked by logp / length**this")
    max_tokens: int | None = Field(None, ge=1, description="None: longest reference + 8 (records), "
                                   "eval.continuation_tokens (text)")
    seed: int = Field(0, ge=0)


class EvalSpec(_Strict):
    """BLEU of generated completions (records) or continuations (text) at the final evaluation."""

    bleu: bool | None = Field(None, description="None (auto): on prompt/completion data only")
    bleu_prompts: int | None = Field(200, ge=1, description="held-out prompts scored per split (None: all)")
    bleu_interval: int | None = Field(None, ge=1, description="steps between val BLEU during training")
    prefix_tokens: int = Field(32, ge=1, description="text: prompt length of a (prefix, continuation) pair")
    continuation_tokens: int = Field(32, ge=1, description="text: reference length of a pair")
    samples: int = Field(20, ge=0, description="rows of the samples/samples.json artifact")
    generation: GenerationSpec = Field(default_factory=GenerationSpec)


class ExperimentSpec(_Strict):
    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    kind: Literal["train", "tune", "compare", "ablate", "scale"] = "train"
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    compare: CompareSpec = Field(default_factory=CompareSpec)
    ablate: AblateSpec = Field(default_factory=AblateSpec)
    scale: ScaleSpec = Field(default_factory=ScaleSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name
