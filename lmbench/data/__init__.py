"""Data: sources (corpora), splits, tokenizers, the token cache and batching.

``prepare_data(spec.data)`` is the entry point; see :mod:`lmbench.data.prepare` for the cache
layout, :mod:`lmbench.data.batching` for the batch layouts and :mod:`lmbench.data.tokenizers`
for the tokenizers. Importing this package does not import torch or sentencepiece.
"""

from lmbench.data.batching import (
    Batch,
    RandomTextBatcher,
    RecordBatcher,
    RecordSplit,
    TextBatcher,
    resolve_order,
)
from lmbench.data.prepare import PreparedData, cache_root, corpus_stats, fingerprint, prepare_data
from lmbench.data.sources import (
    DATASETS,
    Corpus,
    DatasetInfo,
    data_dir,
    ensure_dataset,
    list_datasets,
    load_corpus,
    register_dataset,
)
from lmbench.data.tokenizers import (
    BOS,
    EOS,
    PAD,
    UNK,
    Tokenizer,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "BOS",
    "DATASETS",
    "EOS",
    "PAD",
    "UNK",
    "Batch",
    "Corpus",
    "DatasetInfo",
    "PreparedData",
    "RandomTextBatcher",
    "RecordBatcher",
    "RecordSplit",
    "TextBatcher",
    "Tokenizer",
    "cache_root",
    "corpus_stats",
    "data_dir",
    "ensure_dataset",
    "fingerprint",
    "list_datasets",
    "load_corpus",
    "load_tokenizer",
    "prepare_data",
    "register_dataset",
    "resolve_order",
    "train_tokenizer",
]
