"""Spec loading and validation: shipped specs, overrides, and a table of bad specs."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.config import build_spec, flatten, load_spec, resolved_dict, spec_hash
from lmbench.errors import SpecError

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_shipped_spec_validates(path):
    spec = load_spec(path)
    assert spec.name
    assert resolved_dict(spec)["model"]["config"], "the model config resolves against the registry"


def test_there_are_shipped_specs():
    names = {p.name for p in EXPERIMENTS}
    assert {"default.yaml", "shakespeare_char_gpt.yaml"} <= names
    assert {load_spec(p).kind for p in EXPERIMENTS} == {"train", "tune", "compare", "ablate", "scale"}


def test_shakespeare_spec_is_nanogpt_configuration():
    spec = load_spec(Path(EXPERIMENTS[0]).parent / "shakespeare_char_gpt.yaml")
    cfg = resolved_dict(spec)["model"]["config"]
    assert (cfg["n_layers"], cfg["n_heads"], cfg["d_model"]) == (4, 4, 128)
    assert spec.data.seq_len == 64 and spec.train.batch_size == 12 and spec.data.tokenizer == "char"


def test_shakespeare_256_spec_is_nanogpt_gpu_configuration():
    """nanoGPT's config/train_shakespeare_char.py: the context-256 model the KV-cache benchmark uses."""
    from lmbench.models import build_model

    spec = load_spec(Path(EXPERIMENTS[0]).parent / "shakespeare_char_gpt256.yaml")
    cfg = resolved_dict(spec)["model"]["config"]
    assert (cfg["n_layers"], cfg["n_heads"], cfg["d_model"], cfg["max_len"], cfg["dropout"]) == (6, 6, 384, 256, 0.2)
    assert spec.data.seq_len == 256 and spec.train.batch_size == 64 and spec.train.budget.amount == 5000
    model = build_model("gpt", 65, "default", spec.model.config)
    non_position = sum(p.numel() for p in model.parameters()) - model.pos_emb.weight.numel()
    assert round(non_position / 1e6, 2) == 10.65  # nanoGPT prints "number of parameters: 10.65M"


def test_overrides_are_typed_and_validated():
    spec = build_spec({}, ["train.lr=1e-3", "model.arch=gru", "model.config.d_model=32", "train.budget={tokens: 5000}",
                           "data.split=[0.8, 0.1, 0.1]", "train.compile=true"])
    assert spec.train.lr == 1e-3 and spec.model.arch == "gru" and spec.model.config == {"d_model": 32}
    assert spec.train.budget.kind == "tokens" and spec.train.budget.amount == 5000
    assert spec.data.split == (0.8, 0.1, 0.1) and spec.train.compile is True


def test_hash_depends_on_resolved_values_only():
    a = build_spec({}, ["model.arch=gpt"])
    b = build_spec({"model": {"arch": "gpt", "preset": "default"}})
    c = build_spec({}, ["model.arch=gpt", "train.lr=0.01"])
    assert spec_hash(a) == spec_hash(b) != spec_hash(c)
    assert "train.lr" in flatten(resolved_dict(c))


BAD_SPECS = [
    ({"foo": 1}, [], "foo"),
    ({"data": {"tokenizer": "xyz"}}, [], "data.tokenizer"),
    ({"data": {"seq_len": 1}}, [], "data.seq_len"),
    ({"data": {"split": [0.5, 0.5, 0.5]}}, [], "data.split"),
    ({"data": {"split": [1.0, 0.0, 0.0]}}, [], "data.split"),
    ({"data": {"vocab_size": 4}}, [], "data.vocab_size"),
    ({"data": {"tokenizer": "bpe"}}, [], "data.vocab_size"),
    ({"data": {"sorce": "x.txt"}}, [], "data.sorce"),
    ({"model": {"arch": "foo"}}, [], "model.arch"),
    ({"model": {"preset": "huge"}}, [], "model.preset"),
    ({"model": {"arch": "lstm", "config": {"nope": 1}}}, [], "model.config.nope"),
    ({"model": {"arch": "lstm", "config": {"d_model": -5}}}, [], "model.config.d_model"),
    ({"model": {"arch": "gpt", "config": {"dropout": 1.5}}}, [], "model.config.dropout"),
    ({"model": {"arch": "gpt", "config": {"d_model": 100, "n_heads": 3}}}, [], "model.config.n_heads"),
    ({"model": {"arch": "gpt"}, "data": {"seq_len": 100000}}, [], "data.seq_len"),
    ({"train": {"budget": {"steps": 0}}}, [], "train.budget.steps"),
    ({"train": {"budget": {"steps": 10, "tokens": 10}}}, [], "train.budget"),
    ({"train": {"lr": -1}}, [], "train.lr"),
    ({"train": {"device": "gpu"}}, [], "train.device"),
    ({"train": {"schedule": {"kind": "linear"}}}, [], "train.schedule.kind"),
    ({"train": {"batch_size": "abc"}}, [], "train.batch_size"),
    ({"train": {"precision": "fp8"}}, [], "train.precision"),
    ({"train": {"betas": [0.9, 1.5]}}, [], "train.optimizer.betas"),  # pre-0.3 place, mapped
    ({"train": {"optimizer": "lion"}}, [], "train.optimizer.kind"),
    ({"train": {"optimizer": {"kind": "adam", "momentum": 0.9}}}, [], "train.optimizer.momentum"),
    ({"train": {"optimizer": {"kind": "sgd", "momentum": -0.1}}}, [], "train.optimizer.momentum"),
    ({"train": {"optimizer": {"kind": "sgd", "nesterov": True}}}, [], "train.optimizer.nesterov"),
    ({"train": {"optimizer": {"kind": "sgd", "eps": 1e-6}}}, [], "train.optimizer.eps"),
    ({"data": {"order": "sideways"}}, [], "data.order"),
    ({"train": {"schedule": {"threshold": -1}}}, [], "train.schedule.threshold"),
    ({"name": "bad name!"}, [], "name"),
    ({"tracking": 5}, [], "tracking"),
    ({}, ["train.lr.x=1"], "train.lr"),
    ({}, ["no-equals-sign"], "--set"),
    ({}, ["train.early_stopping=0"], "train.early_stopping"),
]


@pytest.mark.parametrize(("raw", "overrides", "where"), BAD_SPECS, ids=[b[2] + str(i) for i, b in enumerate(BAD_SPECS)])
def test_bad_spec_names_the_key(raw, overrides, where):
    with pytest.raises(SpecError) as exc:
        build_spec(raw, overrides)
    assert exc.value.where == where, str(exc.value)
    assert exc.value.reason


@pytest.mark.parametrize(("raw", "overrides", "where"), BAD_SPECS[::3], ids=[b[2] for b in BAD_SPECS[::3]])
def test_bad_spec_on_the_cli_exits_2_and_creates_nothing(raw, overrides, where, isolated):
    spec = isolated / "bad.yaml"
    spec.write_text(yaml.safe_dump(raw))
    args = ["train", str(spec), "--quiet"] + [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert where in result.output and result.output.count("\n") == 1, result.output
    assert sorted(p.name for p in isolated.iterdir()) == ["bad.yaml"], "nothing may be created"


@pytest.mark.parametrize(("args", "where"), [
    (["--steps", "0"], "train.budget.steps"),
    (["--device", "gpu"], "train.device"),
    (["--model", "transformr"], "model.arch"),
    (["--steps", "5", "--tokens", "5"], "--steps/--tokens"),
    (["--resume", "abc", "--model", "gru"], "--model"),
    (["missing.yaml"], "missing.yaml"),
])
def test_bad_cli_values_exit_2(args, where, isolated):
    result = CliRunner().invoke(app, ["train", "--quiet", *args])
    assert result.exit_code == 2, result.output
    assert where in result.output
    assert list(isolated.iterdir()) == []


def test_invalid_yaml_file(isolated):
    (isolated / "broken.yaml").write_text("name: [unclosed\n")
    result = CliRunner().invoke(app, ["train", "broken.yaml"])
    assert result.exit_code == 2 and "broken.yaml" in result.output and "YAML" in result.output
