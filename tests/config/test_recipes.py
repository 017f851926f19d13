"""Per-architecture recipes, conditional optimizer search spaces, corpus-sized default budgets, and
bad optimizer / order values stopping before anything is created."""

from __future__ import annotations

import json
import logging

import optuna
import pytest
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.config import build_spec, model_spec, space_for
from lmbench.config.budgets import MAX_DEFAULT_TOKENS, scaled_budgets
from lmbench.config.raw import dump_raw
from lmbench.config.spec import OPTIMIZER_KINDS
from lmbench.errors import SpecError
from lmbench.models import get_arch
from lmbench.models.recipes import OPTIMIZER_DEFAULTS
from lmbench.tuning.samplers import suggest
from lmbench.tuning.trials import trial_spec


def test_every_architecture_has_a_recipe_the_spec_accepts():
    assert set(OPTIMIZER_DEFAULTS) == set(OPTIMIZER_KINDS)
    for arch in ("rnn", "lstm", "gru", "transformer", "gpt", "seq2seq"):
        spec = model_spec(build_spec({}), arch)  # validated like any spec
        recipe = get_arch(arch).recipe
        assert spec.train.optimizer.kind == recipe.kind and spec.train.lr == recipe.lr
        assert spec.train.grad_clip == recipe.grad_clip and spec.train.schedule.kind == recipe.schedule["kind"]


def test_recipes_follow_published_practice():
    lstm = model_spec(build_spec({}), "lstm").train  # pytorch/examples word_language_model
    assert (lstm.optimizer.kind, lstm.lr, lstm.grad_clip, lstm.weight_decay) == ("sgd", 20.0, 0.25, 0.0)
    assert (lstm.schedule.kind, lstm.schedule.factor, lstm.schedule.patience) == ("plateau", 0.25, 0)
    gpt = model_spec(build_spec({}), "gpt").train  # nanoGPT: AdamW, warmup, cosine, clip 1.0
    assert (gpt.optimizer.kind, gpt.grad_clip, gpt.schedule.kind) == ("adamw", 1.0, "cosine")
    assert gpt.schedule.warmup_fraction > 0


def test_what_the_user_set_wins_over_the_recipe():
    spec = build_spec({"train": {"lr": 0.5, "schedule": {"patience": 3}, "grad_clip": None}})
    lstm = model_spec(spec, "lstm").train
    assert (lstm.lr, lstm.schedule.patience, lstm.grad_clip) == (0.5, 3, None)
    assert (lstm.optimizer.kind, lstm.schedule.factor) == ("sgd", 0.25)  # the rest is the recipe's
    # another optimizer than the recipe's starts from that optimizer's own lr, not SGD's 20
    adam = model_spec(build_spec({"train": {"optimizer": "adam"}}), "lstm").train
    assert adam.optimizer.kind == "adam" and adam.lr == OPTIMIZER_DEFAULTS["adam"]["lr"]
    # a value equal to the default but written by the user is still the user's
    assert model_spec(build_spec({"train": {"lr": 3e-3}}), "gpt").train.lr == 3e-3
    # pre-0.3 specs (optimizer: adamw, train.betas) still load and keep their betas
    old = model_spec(build_spec({"train": {"optimizer": "adamw", "betas": [0.9, 0.95]}}), "gpt").train
    assert old.optimizer.betas == (0.9, 0.95) and old.lr == get_arch("gpt").recipe.lr


def test_set_values_survive_the_trip_through_studies_and_workers():
    """A spec travels as dump_raw (study attributes, worker processes): defaults stay defaults."""
    spec = build_spec({"train": {"lr": 0.5}})
    again = build_spec(dump_raw(spec))
    assert model_spec(again, "lstm") == model_spec(spec, "lstm")
    assert model_spec(again, "gpt").train.lr == 0.5
    assert model_spec(model_spec(spec, "gru"), "gru") == model_spec(spec, "gru")  # applying twice: no-op


def test_conditional_optimizer_space_produces_only_valid_trials():
    spec = build_spec({"name": "cond"}, ["data.size=8000", "data.seq_len=16", "model.preset=small"])
    space = space_for(spec, "lstm")
    assert space["optimizer"]["choices"] == ["sgd", "adamw"] and "lr" not in space
    assert space["lr_sgd"]["when"] == {"optimizer": ["sgd"]} and (space["lr_sgd"]["low"], space["lr_sgd"]["high"]) == (0.1, 40.0)
    assert space["weight_decay"]["when"] == {"optimizer": ["adamw"]}
    for sampler in (optuna.samplers.RandomSampler(seed=0), optuna.samplers.TPESampler(seed=0, multivariate=True,
                                                                                     group=True, n_startup_trials=4)):
        study = optuna.create_study(sampler=sampler)
        kinds = set()
        for _ in range(12):
            trial = study.ask()
            params = suggest(trial, space)
            kind = params["optimizer"]
            kinds.add(kind)
            other = "adamw" if kind == "sgd" else "sgd"
            assert f"lr_{kind}" in params and f"lr_{other}" not in params
            assert ("weight_decay" in params) == (kind == "adamw")
            tspec = trial_spec(spec, "lstm", params)  # a valid spec with that optimizer and its lr
            assert tspec.train.optimizer.kind == kind and tspec.train.lr == params[f"lr_{kind}"]
            low, high = (0.1, 40.0) if kind == "sgd" else (1e-4, 1e-2)
            assert low <= tspec.train.lr <= high
            study.tell(trial, tspec.train.lr if kind == "adamw" else 1.0 / tspec.train.lr)
        assert kinds == {"sgd", "adamw"}


def test_one_optimizer_searches_a_plain_lr_in_its_own_range():
    gpt = space_for(build_spec({}), "gpt")
    assert "optimizer" not in gpt and (gpt["lr"]["low"], gpt["lr"]["high"]) == (1e-4, 1e-2)
    sgd = space_for(build_spec({}, ["train.optimizer=sgd"]), "gpt")  # the user's optimizer wins
    assert (sgd["lr"]["low"], sgd["lr"]["high"]) == (0.1, 40.0) and "weight_decay" not in sgd
    mine = space_for(build_spec({}, ["search.space.lstm.lr={float: [0.5, 5.0], log: true}"]), "lstm")
    assert "optimizer" not in mine and mine["lr"]["high"] == 5.0  # one lr range: the recipe's optimizer only
    momentum = space_for(build_spec({}, ["search.space.gpt.optimizer={categorical: [adamw, sgd]}",
                                         "search.space.gpt.momentum={float: [0.0, 0.9]}"]), "gpt")
    assert momentum["momentum"]["when"] == {"optimizer": ["sgd"]}


@pytest.mark.parametrize(("overrides", "where"), [
    (["search.space.lstm.optimizer={categorical: [sgd, adam]}", "search.space.lstm.lr={float: [0.01, 1.0]}"],
     "search.space.lstm.lr"),
    (["search.space.gpt.momentum={float: [0.0, 0.9]}"], "search.space.gpt.momentum"),
    (["search.space.gpt.optimizer={categorical: [adamw, lion]}"], "search.space.gpt.optimizer"),
    (["search.space.lstm.dropout={float: [0.0, 0.5], when: {optimizer2: sgd}}"], "search.space.lstm.dropout.when"),
])
def test_inconsistent_optimizer_spaces_name_the_key(overrides, where):
    with pytest.raises(SpecError) as exc:
        build_spec({}, overrides)
    assert exc.value.where == where, str(exc.value)


@pytest.mark.parametrize(("args", "where"), [
    (["compare", "--set", "train.optimizer=lion"], "train.optimizer.kind"),
    (["compare", "--set", "train.optimizer={kind: sgd, momentum: -0.5}"], "train.optimizer.momentum"),
    (["compare", "--set", "train.optimizer.momentum=0.9"], "train.optimizer.momentum"),  # adamw has none
    (["compare", "--set", "data.order=sideways"], "data.order"),
    (["train", "--set", "data.order=sideways"], "data.order"),
    (["ablate", "--model", "gru", "--param", "optimizer", "--values", "sgd,lion"], "train.optimizer.kind"),
    (["tune", "--model", "gpt", "--set", "search.space.gpt.momentum={float: [0.0, 0.9]}"],
     "search.space.gpt.momentum"),
])
def test_bad_optimizer_and_order_values_exit_2_creating_nothing(args, where, isolated):
    result = CliRunner().invoke(app, [*args, "--quick", "--quiet"])
    assert result.exit_code == 2, result.output
    assert where in result.output and result.output.strip().count("\n") == 0, result.output
    assert not (isolated / "mlflow.db").exists() and not (isolated / "studies").exists()
    assert not (isolated / "mlruns").exists() and not (isolated / "checkpoints").exists()


def test_default_budgets_scale_with_a_corpus_and_say_why():
    shakespeare = build_spec({"data": {"source": "tinyshakespeare", "tokenizer": "char"}})
    spec, notes = scaled_budgets(shakespeare, 1_003_854)
    assert spec.train.budget.tokens == 1_003_854 and spec.search.budget.tokens == 501_927
    assert "one epoch" in notes[0] and "half the final budget" in notes[1]
    big, notes = scaled_budgets(shakespeare, 10 * MAX_DEFAULT_TOKENS)
    assert big.train.budget.tokens == MAX_DEFAULT_TOKENS and "capped" in notes[0]
    small, _ = scaled_budgets(shakespeare, 50_000)
    assert small.train.budget.tokens == 400_000  # at least the fixed default
    assert scaled_budgets(build_spec({}), 10**6) == (build_spec({}), [])  # generated corpora keep theirs
    mine = build_spec({"data": {"source": "x.txt"}, "train": {"budget": {"steps": 50}}})
    kept, notes = scaled_budgets(mine, 10**6)
    assert kept.train.budget.steps == 50 and kept.search.budget.steps == 25 and len(notes) == 1
    quick = build_spec({"data": {"source": "x.txt"}}, ["train.budget={steps: 40}", "search.budget=null"])
    assert scaled_budgets(quick, 10**6) == (quick, [])  # budgets the user set are never changed


def test_train_on_a_user_corpus_logs_the_budget_it_chose(isolated, caplog):
    from lmbench.experiments.single import budgeted

    corpus = isolated / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 20_000)
    spec = build_spec({"data": {"source": str(corpus), "tokenizer": "char"}})
    with caplog.at_level(logging.INFO, logger="lmbench.experiments.single"):
        scaled, notes = budgeted(spec)
    assert scaled.train.budget.tokens > 400_000 and notes and notes[0] in caplog.text
    assert json.loads(json.dumps(notes))  # plain text, stored in results.json


def test_a_spec_stored_before_recipes_still_loads_and_trains_as_it_did():
    """Studies, checkpoints and spec.yaml files before 0.3 hold full dumps: `optimizer: adamw`, a
    top-level `betas`, no `data.order`. They load, and every value in them counts as set, so the
    recipe changes nothing a stored run or study trained with."""
    old = build_spec({}).model_dump(mode="json", by_alias=True)
    old["train"]["optimizer"] = "adamw"
    old["train"]["betas"] = [0.9, 0.98]
    del old["data"]["order"]
    for key in ("threshold", "warmup_fraction"):
        del old["train"]["schedule"][key]
    spec = build_spec(old)
    assert spec.train.optimizer.kind == "adamw" and spec.train.optimizer.betas == (0.9, 0.98)
    lstm = model_spec(spec, "lstm").train
    assert (lstm.optimizer.kind, lstm.lr, lstm.grad_clip, lstm.schedule.kind) == ("adamw", 3e-3, 1.0, "cosine")
