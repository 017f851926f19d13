"""Decoding strategies on every architecture, KV cache / sliding window, beam search, top-k/top-p,
BLEU evaluation, and `lmbench generate` end to end from a real quick run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.data.tokenizers import EOS, PAD
from lmbench.generation.bleu import bleu_eval
from lmbench.generation.decoding import (
    beam_search,
    decode,
    filter_logits,
    generate_ids,
    pick,
    settings,
)
from lmbench.models import LanguageModel, arch_names, build_model, get_arch

V = 40
ARCHS = arch_names()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(arch: str, **overrides) -> LanguageModel:
    torch.manual_seed(0)
    if "max_len" in overrides and get_arch(arch).stateful:
        overrides.pop("max_len")  # recurrent models have no context limit
    return build_model(arch, V, "small", overrides or None).eval()


def _prompt(b: int = 3, t: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, V, (b, t), generator=g)  # no special tokens


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Counter(LanguageModel):
    """A fixed toy model: after token t it predicts t + 1, and EOS after ``stop``."""

    def __init__(self, stop: int):
        super().__init__()
        self.vocab_size, self.stop = V, stop
        self.config = type("C", (), {"max_len": None})()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, idx, state=None):
        nxt = torch.where(idx >= self.stop, torch.full_like(idx, EOS), idx + 1)  # (B, T)
        return F.one_hot(nxt, V).float() * 10 + self.dummy, None


# ---------------------------------------------------------------------------------------------
# every strategy on every architecture

STRATEGIES = [{"strategy": "greedy"}, {"strategy": "sample", "temperature": 0.8, "top_k": 10, "top_p": 0.9},
              {"strategy": "beam", "beams": 3}]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kw", STRATEGIES, ids=lambda k: k["strategy"])
def test_every_strategy_on_every_architecture(arch, kw):
    model = _model(arch)
    s = settings(max_tokens=7, **kw)
    x = _prompt()
    a = decode(model, x, s, generator=_gen(3))
    b = decode(model, x, s, generator=_gen(3))
    assert a.shape[0] == 3 and 1 <= a.shape[1] <= 7 and a.dtype == torch.long
    assert torch.equal(a, b)  # reproducible under a seed
    for row in a.tolist():  # nothing but PAD after an EOS
        if EOS in row:
            assert set(row[row.index(EOS) + 1 :]) <= {PAD}
    assert not model.training


def test_sampling_seed_changes_samples():
    model = _model("gpt")
    s = settings(strategy="sample", max_tokens=12)
    x = _prompt(4)
    assert not torch.equal(decode(model, x, s, generator=_gen(0)), decode(model, x, s, generator=_gen(1)))


def test_eos_stops_and_max_tokens_caps():
    model = Counter(stop=10)
    x = torch.tensor([[5], [8]])
    out = decode(model, x, settings(max_tokens=20))
    assert out.tolist() == [[6, 7, 8, 9, 10, EOS], [9, 10, EOS, PAD, PAD, PAD]]
    # beam search stops once every beam has ended (the runner-up beams may take longer)
    best = decode(model, x, settings(strategy="beam", beams=2, max_tokens=20))
    assert [r[: len(w)] for r, w in zip(best.tolist(), out.tolist(), strict=True)] == out.tolist()
    assert best.shape[1] < 20 and (best[:, out.shape[1] :] == PAD).all()
    assert decode(model, x, settings(max_tokens=3)).tolist() == [[6, 7, 8], [9, 10, EOS]]
    # generate_ids strips EOS/PAD and keeps the prompts' order across length groups
    assert generate_ids(model, [[8], [4, 5], [9]], settings(max_tokens=20)) == [[9, 10], [6, 7, 8, 9, 10], [10]]


# ---------------------------------------------------------------------------------------------
# cache, window, beam 1, top-k 1


@pytest.mark.parametrize("arch", ARCHS)
def test_cache_equals_no_cache_and_the_window_slides(arch):
    # max_len 12 < prompt 5 + 20 new tokens: the context outgrows the model and slides
    model = _model(arch, max_len=12)
    s = settings(max_tokens=20)
    x = _prompt()
    cached, plain = decode(model, x, s, use_cache=True), decode(model, x, s, use_cache=False)
    assert cached.shape == (3, 20)
    assert torch.equal(cached, plain)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
def test_gpt_kv_cache_logits_match_full_forward(positions):
    model = _model("gpt", positions=positions)
    x = _prompt(2, 10)
    with torch.no_grad():
        full, _ = model(x)
        cache = model.decode_state()
        first, cache = model(x[:, :6], cache)  # a 6-token prefill, then one token at a time
        steps = [model(x[:, i : i + 1], cache)[0] for i in range(6, 10)]
        assert cache.length == 10
        two, _ = model(x[:, 6:8], model.reorder_state(model(x[:, :6], model.decode_state())[1], torch.arange(2)))
    torch.testing.assert_close(torch.cat([first, *steps], 1), full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(two, full[:, 6:8], atol=1e-5, rtol=1e-4)  # several new tokens at once


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_width_one_and_top_k_one_equal_greedy(arch):
    model = _model(arch)
    x = _prompt()
    greedy = decode(model, x, settings(max_tokens=10))
    assert torch.equal(decode(model, x, settings(strategy="beam", beams=1, max_tokens=10)), greedy)
    top1 = decode(model, x, settings(strategy="sample", top_k=1, temperature=2.0, max_tokens=10), generator=_gen(5))
    assert torch.equal(top1, greedy)


def test_beam_scores_are_the_models_log_probabilities():
    model = _model("gpt")
    x = _prompt(2, 4)
    s = settings(strategy="beam", beams=4, max_tokens=6, length_penalty=0.0)  # raw sums of logp
    tokens, scores = beam_search(model, x, s)
    assert tokens.shape == (2, 4, 6) and scores.shape == (2, 4)
    assert torch.all(scores[:, :-1] >= scores[:, 1:])  # ranked best first
    with torch.no_grad():
        for b in range(2):
            for w in range(4):
                seq = torch.cat([x[b], tokens[b, w]])[None]
                logp = F.log_softmax(model(seq[:, :-1])[0], -1)[0, 3:]  # predictions of the new tokens
                want = logp.gather(1, tokens[b, w][:, None]).sum()
                assert scores[b, w].item() == pytest.approx(want.item(), rel=1e-4)
    greedy = decode(model, x, settings(max_tokens=6))
    with torch.no_grad():
        seq = torch.cat([x, greedy], 1)
        g = F.log_softmax(model(seq[:, :-1])[0], -1)[:, 3:].gather(2, greedy[..., None]).sum((1, 2))
    assert torch.all(scores[:, 0] >= g - 1e-4)  # the search finds at least greedy's score


def test_top_p_never_leaves_the_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.1, 0.3, 0.05]])
    logits = probs.log()
    for p, nucleus in ((0.5, {1}), (0.75, {1, 3}), (0.79, {1, 3}), (0.81, {1, 3, 2}), (1.0, {0, 1, 2, 3, 4})):
        kept = torch.isfinite(filter_logits(logits, top_p=p))[0].nonzero().flatten().tolist()
        assert set(kept) == nucleus, p
        s = settings(strategy="sample", top_p=p)
        draws = pick(logits.expand(4000, -1), s, _gen(0)).tolist()
        assert set(draws) == nucleus  # never outside, and every nucleus token does occur
    # top-k keeps the k most likely
    assert torch.isfinite(filter_logits(logits, top_k=2)).sum() == 2


def test_invalid_settings_name_the_option():
    from lmbench.errors import SpecError

    for kw, where in (({"temperature": 0}, "--temperature"), ({"top_p": 0}, "--top-p"), ({"top_p": 1.5}, "--top-p"),
                      ({"beams": 0}, "--beams"), ({"strategy": "nucleus"}, "--strategy"), ({"top_k": -1}, "--top-k")):
        with pytest.raises(SpecError) as e:
            settings(**kw)
        assert e.value.where == where
    with pytest.raises(SpecError) as e:
        settings("eval.generation.", temperature=-1)
    assert e.value.where == "eval.generation.temperature"


# ---------------------------------------------------------------------------------------------
# BLEU evaluation on prepared data


def test_bleu_eval_on_text_pairs_and_records(tmp_path):
    from lmbench.config.spec import DataSpec, EvalSpec
    from lmbench.data import prepare_data

    ev = EvalSpec(prefix_tokens=6, continuation_tokens=4, samples=3, bleu_prompts=5)
    text = prepare_data(DataSpec(size=3000, tokenizer="word"))
    torch.manual_seed(0)
    model = build_model("lstm", text.vocab_size, "small")
    scores, samples = bleu_eval(model, text, "val", ev)
    assert set(scores) == {"bleu", "bp", "p1", "p2", "p3", "p4"} and 0 <= scores["bleu"] <= 1
    assert len(samples) == 3 and set(samples[0]) == {"prompt", "reference", "generation"}
    assert len(samples[0]["reference"].split()) <= 4  # word tokens: 4-token continuations
    recs = prepare_data(DataSpec(source="synthetic-pairs", size=1500))
    r_scores, r_samples = bleu_eval(build_model("gpt", recs.vocab_size, "small"), recs, "test", ev)
    assert r_samples[0]["prompt"].split()[0] in ("reverse:", "sort:", "next:")
    assert 0 <= r_scores["bleu"] <= 1


# ---------------------------------------------------------------------------------------------
# `lmbench generate` end to end


def _cli(*args):
    return CliRunner().invoke(app, list(args))


def test_cli_generate_from_a_run_and_from_a_checkpoint(isolated):
    r = _cli("train", "--model", "seq2seq", "--data", "synthetic-pairs", "--quick", "--quiet")
    assert r.exit_code == 0, r.output
    from mlflow import MlflowClient

    client = MlflowClient("sqlite:///mlflow.db")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    m = run.data.metrics
    assert {"test_bleu", "final_val_bleu", "test_bleu_bp", *(f"test_bleu_p{n}" for n in range(1, 5))} <= set(m)
    assert 0 <= m["test_bleu"] <= 1
    local = client.download_artifacts(run.info.run_id, "samples/samples.json", str(isolated))
    rows = json.loads(Path(local).read_text())
    assert rows and all(set(row) == {"prompt", "reference", "generation"} for row in rows)

    rid = run.info.run_id
    by_run = _cli("generate", rid, "--prompt", "reverse: alpha bravo charlie")
    assert by_run.exit_code == 0, by_run.output
    by_path = _cli("generate", f"checkpoints/{rid}", "--prompt", "reverse: alpha bravo charlie")
    assert by_path.exit_code == 0 and by_path.output == by_run.output  # the same best weights
    from lmbench.generation.decoding import settings
    from lmbench.training.loading import complete, load_model

    (greedy,) = complete(load_model(rid, tracking_uri="sqlite:///mlflow.db"), "reverse: alpha bravo charlie",
                         settings())
    assert by_run.output.splitlines()[-1] == greedy  # what the CLI printed is the library's greedy decode
    samples = _cli("generate", rid, "-p", "sort: kilo alpha", "--strategy", "sample", "--num", "3", "--seed", "4",
                   "--top-p", "0.9", "--max-tokens", "5")
    assert samples.exit_code == 0 and [ln[:4] for ln in samples.output.splitlines()[-3:]] == ["[1] ", "[2] ", "[3] "]
    beams = _cli("generate", rid, "-p", "next: golf", "--strategy", "beam", "--beams", "3", "--num", "2")
    assert beams.exit_code == 0 and len(beams.output.splitlines()) == 2
    unk = _cli("generate", rid, "-p", "reverse: alpha zzzz")  # unknown word: warned, still generated
    assert unk.exit_code == 0 and "unknown to the tokenizer" in unk.output

    bad = [(["--prompt", ""], "--prompt"), (["--prompt", "a", "--temperature", "0"], "--temperature"),
           (["--prompt", "a", "--top-p", "1.5"], "--top-p"), (["--prompt", "a", "--top-p", "0"], "--top-p"),
           (["--prompt", "a", "--strategy", "beam", "--beams", "0"], "--beams"),
           (["--prompt", "a", "--strategy", "nope"], "--strategy"), (["--prompt", "a", "--num", "2"], "--num")]
    for args, where in bad:
        r = _cli("generate", rid, *args)
        assert r.exit_code == 2 and f"error: {where}:" in r.output, (args, r.output)
    for target in ("0123456789abcdef", "no/such/checkpoint"):
        r = _cli("generate", target, "--prompt", "a")
        assert r.exit_code == 2 and "neither a checkpoint path nor a run" in r.output
    empty = isolated / "empty_ckpt"
    empty.mkdir()
    r = _cli("generate", str(empty), "--prompt", "a")
    assert r.exit_code == 2 and "empty_ckpt" in r.output


def test_cached_decoding_equals_recomputing_and_the_compiled_step_equals_eager():
    """Every strategy (beam too) gives the same tokens with the key/value cache, without it, and
    with the compiled one-token step; the compiled step's logits are the eager ones. One row, as
    the compiled step serves one row on a CPU; a tiny model, so that compiling takes seconds."""
    from conftest import need

    from lmbench.models import gpt

    model = _model("gpt", n_layers=1, d_model=32, n_heads=2, max_len=24)
    x = _prompt(1, 3)
    for kw in STRATEGIES:
        s = settings(max_tokens=16, **kw)
        plain = decode(model, x, s, use_cache=False, generator=_gen(3))
        assert torch.equal(decode(model, x, s, generator=_gen(3)), plain), kw
        assert torch.equal(decode(model, x, s, generator=_gen(3), compile=True), plain), kw
    need("failed" not in gpt._compiled, f"torch.compile unavailable here: {gpt._compiled.get('failed')}")
    with torch.inference_mode():
        eager, compiled = model.decode_state(), model.decode_state()
        compiled.compile = True
        model(x, eager), model(x, compiled)  # the prefill
        for token in _prompt(1, 6, seed=2).unbind(1):
            want, _ = model(token[:, None], eager)
            got, _ = model(token[:, None], compiled)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert "step" in gpt._compiled and compiled.length == eager.length == 9
