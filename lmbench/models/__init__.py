"""Language-model architectures behind one contract, and the registry that names them.

``build_model(arch, vocab_size, preset, overrides)`` gives a :class:`LanguageModel`:
``logits, state = model(idx, state)``; ``state = model.detach_state(state)``.
Adding an architecture = one new module that calls :func:`register`, plus an import line here.
"""

from lmbench.models.base import (
    PRESETS,
    ArchInfo,
    LanguageModel,
    ModelConfig,
    Sizing,
    arch_names,
    build_model,
    describe_archs,
    get_arch,
    register,
    resolve_config,
)

# One import per architecture module; the import order is the registration order (arch_names()).
# isort: off
from lmbench.models import recurrent  # noqa: F401  (rnn, lstm, gru)
from lmbench.models import transformer  # noqa: F401
from lmbench.models import gpt  # noqa: F401
from lmbench.models import seq2seq  # noqa: F401
# isort: on

__all__ = [
    "PRESETS",
    "ArchInfo",
    "LanguageModel",
    "ModelConfig",
    "Sizing",
    "arch_names",
    "build_model",
    "describe_archs",
    "get_arch",
    "register",
    "resolve_config",
]
