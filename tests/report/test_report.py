"""`lmbench report` from real experiments: a quick compare and a quick ablation (see report_data.py).

The HTML is parsed with the standard library's parser and checked against numbers computed here,
independently, from the MLflow runs (scipy for the t intervals and paired tests).
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from PIL import Image
from report_data import ABLATE, COMPARE, MODELS, SEEDS, cli, shared_experiments
from scipy import stats as sps

from lmbench.report.studies import study_view
from lmbench.stats import format_mean_ci, format_p
from lmbench.tracking.tracker import resolve_uri
from lmbench.tuning.storage import default_storage_path

# -- helpers ---------------------------------------------------------------------------------


class Page(HTMLParser):
    """Tables (with each cell's text and data-v), images and every URL-bearing attribute."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.section = None
        self.tables: list[dict] = []
        self.images: list[dict] = []
        self.urls: list[str] = []
        self.texts: dict[str, list[str]] = {}
        self._cell = None
        self._row = None
        self._tag: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._tag.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "poster", "srcset") and v]
        if tag == "section":
            self.section = a.get("id")
        elif tag == "table":
            self.tables.append({"section": self.section, "class": a.get("class", ""), "headers": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = {"text": "", "v": a.get("data-v"), "th": tag == "th"}
        elif tag == "img":
            self.images.append({"section": self.section, **a})

    def handle_endtag(self, tag):
        if self._tag:
            self._tag.pop()
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            table = self.tables[-1]
            if self._row and all(c["th"] for c in self._row):
                table["headers"] = [c["text"].strip() for c in self._row]
            else:
                table["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._tag:
            self.texts.setdefault(self._tag[-1], []).append(data)

    def table(self, section: str, cls: str) -> dict:
        (t,) = [t for t in self.tables if t["section"] == section and cls in t["class"].split()]
        return t


def page(work: Path, experiment: str) -> tuple[str, Page]:
    text = (work / "reports" / experiment / "index.html").read_text()
    return text, Page(text)


def client() -> MlflowClient:
    return MlflowClient(resolve_uri(None))


def finals(experiment: str, **tags: str) -> list:
    c = client()
    exp = c.get_experiment_by_name(experiment)
    clauses = ["tags.stage = 'final'", "attributes.status = 'FINISHED'"] + [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    return sorted(c.search_runs([exp.experiment_id], " and ".join(clauses)), key=lambda r: int(r.data.tags["seed"]))


def t_ci(x: np.ndarray) -> float:
    return float(sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def cell(row: list[dict], headers: list[str], name: str) -> dict:
    return row[headers.index(name)]


def run_count() -> int:
    c = client()
    return sum(len(c.search_runs([e.experiment_id], max_results=1000)) for e in c.search_experiments())


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    return shared_experiments(tmp_path_factory)


@pytest.fixture
def work(experiments, monkeypatch) -> Path:
    folder, _ = experiments
    monkeypatch.chdir(folder)
    return folder


# -- the report of a real compare and a real ablation ----------------------------------------


def test_compare_and_ablate_build_the_report_and_print_its_path(experiments):
    folder, outputs = experiments
    assert f"report: reports/{COMPARE}/index.html" in outputs["compare"]
    assert f"report: reports/{ABLATE}/index.html" in outputs["ablate"]
    assert (folder / "reports" / COMPARE / "index.html").is_file()


def test_compare_table_has_one_row_per_model_with_the_stored_numbers(work):
    _, doc = page(work, COMPARE)
    t = doc.table("compare", "results")
    h = t["headers"]
    assert h[:4] == ["model", "test loss", "perplexity", "token accuracy"]
    assert "excess over floor" in h and "BLEU" not in h  # synthetic data: a floor; BLEU was off
    names = [r[0]["text"].removeprefix("★ ").strip() for r in t["rows"]]
    assert sorted(names) == sorted(MODELS)
    loss = {m: np.array([r.data.metrics["test_loss"] for r in finals(COMPARE, **{"lmbench.model": m})]) for m in MODELS}
    assert all(len(v) == SEEDS for v in loss.values())
    best = min(loss, key=lambda m: loss[m].mean())
    assert names[0] == best and t["rows"][0][0]["text"].startswith("★")
    for name, row in zip(names, t["rows"], strict=True):
        c = cell(row, h, "test loss")
        assert float(c["v"]) == pytest.approx(loss[name].mean(), rel=1e-12)
        assert c["text"] == format_mean_ci(loss[name].mean(), t_ci(loss[name]))
        p = cell(row, h, "p vs best")
        if name == best:
            assert cell(row, h, "Δ loss vs best")["text"] == "ref"
        else:
            expected = sps.ttest_rel(loss[name], loss[best]).pvalue
            assert float(p["v"]) == pytest.approx(expected, rel=1e-9)
            assert p["text"] == format_p(expected)
        assert cell(row, h, "seeds")["text"] == str(SEEDS)
    # the table written by compare itself (reports/<exp>/results.csv) agrees
    stored = pd.read_csv(work / "reports" / COMPARE / "results.csv", index_col=0)
    for name in MODELS:
        assert stored.loc[name, "test_loss_mean"] == pytest.approx(loss[name].mean(), rel=1e-12)


def test_ablation_rows_are_paired_deltas_to_the_baseline(work):
    _, doc = page(work, ABLATE)
    t = doc.table("ablate", "results")
    h = t["headers"]
    assert "BLEU" in h  # BLEU was on: shown with the other metrics
    rows = {r[1]["text"].removeprefix("★ ").strip(): r for r in t["rows"]}
    base_value = [k for k in rows if k.endswith("(baseline)")]
    assert len(base_value) == 1 and len(rows) == 2
    base = {r.data.tags["seed"]: r for r in finals(ABLATE, **{"ablate.value": "baseline"})}
    other = [k for k in rows if k not in base_value][0]
    runs = {r.data.tags["seed"]: r for r in finals(ABLATE, **{"ablate.value": f"n_layers={other}"})}
    assert sorted(base) == sorted(runs) and len(runs) == SEEDS
    x = np.array([runs[s].data.metrics["test_loss"] for s in sorted(runs)])
    b = np.array([base[s].data.metrics["test_loss"] for s in sorted(runs)])
    delta = cell(rows[other], h, "Δ loss vs baseline")
    assert float(delta["v"]) == pytest.approx((x - b).mean(), rel=1e-9)
    assert delta["text"] == format_mean_ci((x - b).mean(), t_ci(x - b), signed=True)
    assert float(cell(rows[other], h, "p")["v"]) == pytest.approx(sps.ttest_rel(x, b).pvalue, rel=1e-9)
    bleu = np.array([base[s].data.metrics["test_bleu"] for s in sorted(base)])
    assert float(cell(rows[base_value[0]], h, "BLEU")["v"]) == pytest.approx(bleu.mean(), rel=1e-12)
    assert cell(rows[base_value[0]], h, "Δ loss vs baseline")["text"] == "ref"


def test_every_image_is_an_embedded_png_of_sensible_size(work):
    counts = {}
    for experiment in (COMPARE, ABLATE):
        _, doc = page(work, experiment)
        counts[experiment] = len(doc.images)
        for img in doc.images:
            assert img["src"].startswith("data:image/png;base64,")
            im = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
            im.load()
            assert im.format == "PNG"
            assert im.width >= 500 and im.height >= 300
            assert (int(img["width"]), int(img["height"])) == im.size
            assert img.get("alt")
    # compare: curves (linear, log) + one search figure per model; ablate: the ablation plot + curves
    assert counts == {COMPARE: 2 + len(MODELS), ABLATE: 3}


def test_figures_and_html_are_logged_to_the_root_run(work):
    c = client()
    exp = c.get_experiment_by_name(COMPARE)
    (root,) = c.search_runs([exp.experiment_id], "tags.`lmbench.kind` = 'compare'")
    names = {Path(a.path).name for a in c.list_artifacts(root.info.run_id, "report")}
    assert {"index.html", "curves.png", "curves-log.png"} | {f"search-{m}.png" for m in MODELS} <= names
    local = c.download_artifacts(root.info.run_id, "report/curves.png", str(work / "dl"))
    assert Image.open(local).format == "PNG"


def test_the_report_is_self_contained(work):
    for experiment in (COMPARE, ABLATE):
        text, doc = page(work, experiment)
        assert doc.urls and all(u.startswith(("data:image/png;base64,", "#")) for u in doc.urls), doc.urls
        rest = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text).replace("sqlite:////", "")
        assert not re.search(r"(https?:|ftp:)?//[a-z0-9]", rest, re.I)
        assert "url(" not in text and "@import" not in text and "<link" not in text
        assert "<script src" not in text and text.count("<script") == 1  # only the sort script
        assert "default-src 'none'" in text  # the CSP: a browser fetches nothing
        assert '<meta name="viewport"' in text


def test_special_characters_are_escaped(work):
    text, doc = page(work, COMPARE)
    assert COMPARE not in text  # <&" never appear raw
    assert "cmp &lt;&amp;&#34;x" in text
    assert "".join(doc.texts["h1"]) == f"lmbench report: {COMPARE}"
    # the ablation's samples were generated from a corpus full of markup
    text, doc = page(work, ABLATE)
    (run,) = finals(ABLATE, **{"ablate.value": "baseline", "seed": "0"})
    stored = json.loads(Path(client().download_artifacts(run.info.run_id, "samples/samples.json",
                                                         str(work / "dl-samples"))).read_text())
    shown = " ".join(doc.texts.get("p", []))
    first = stored[0]["prompt"]
    assert re.search(r"[<&]", "".join(s["prompt"] + s["reference"] for s in stored[:3]))
    assert " ".join(first.split()) in " ".join(shown.split())
    assert text.count("<script>") == 1 and "&lt;script&gt;" in text  # ours (the sort script) only


def test_summary_answer_search_and_reproduce(work):
    from lmbench.config import build_spec
    from lmbench.experiments.runtree import root_key

    text, doc = page(work, COMPARE)
    answer = doc.texts["p"][[i for i, p in enumerate(doc.texts["p"]) if "lowest mean test loss" in p][0]]
    best = doc.table("compare", "results")["rows"][0][0]["text"].removeprefix("★ ").strip()
    assert answer.startswith(f"{best} has the lowest mean test loss")
    assert "95%" in answer or "p < 0.05" in answer  # the uncertainty is stated, whichever the outcome
    facts = dict(zip([t.strip() for t in doc.texts["dt"]], [t.strip() for t in doc.texts["dd"]], strict=False))
    assert facts["data"].startswith("synthetic, word tokenizer") and "tokens: train" in facts["data"]
    assert {"budget", "machine", "versions", "wall time"} <= set(facts)
    # search: one trials table per model, a row per Optuna trial
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(default_storage_path(COMPARE))))
    for m in MODELS:
        study = optuna.load_study(study_name=f"{COMPARE}/{m}", storage=storage)
        tables = [t for t in doc.tables if "trials" in t["class"].split()]
        states = [[r[1]["text"] for r in t["rows"]] for t in tables]
        assert [s.state.name for s in study.trials] in states
    # reproduce: the root run's spec.yaml is shown; it rebuilds the same command (same root key)
    assert "lmbench compare spec.yaml" in text
    shown = [c for c in doc.texts["code"] if c.lstrip().startswith("name:")]
    c = client()
    exp = c.get_experiment_by_name(COMPARE)
    (root,) = c.search_runs([exp.experiment_id], "tags.`lmbench.kind` = 'compare'")
    spec = build_spec(yaml.safe_load(shown[0]))
    assert spec.compare.models == MODELS and spec.experiment_name == COMPARE
    assert root_key(spec) == root.data.tags["lmbench.root_key"]


def test_markdown_and_csv_formats(work, tmp_path):
    r = cli("report", COMPARE, "--format", "md", "--out", str(tmp_path / "md"))
    assert r.exit_code == 0, r.output
    md = (tmp_path / "md" / "index.md").read_text()
    assert "| model | test loss |" in md
    assert md.splitlines()[0] == '# lmbench report: cmp &lt;&amp;"x'  # no raw markup outside code blocks
    pngs = sorted((tmp_path / "md" / "plots").glob("*.png"))
    assert len(pngs) == 2 + len(MODELS) and all(f"(plots/{p.name})" in md for p in pngs)
    r = cli("report", COMPARE, "--format", "csv", "--out", str(tmp_path / "csv"))
    assert r.exit_code == 0, r.output
    runs = pd.read_csv(tmp_path / "csv" / "runs.csv")
    assert len(runs) == len(MODELS) * SEEDS and set(runs["model"]) == set(MODELS)
    trials = pd.read_csv(tmp_path / "csv" / "trials.csv")
    assert len(trials) == 2 * len(MODELS) and set(trials["model"]) == set(MODELS)
    table = pd.read_csv(tmp_path / "csv" / "compare_table.csv", index_col=0)
    for m in MODELS:
        loss = [r.data.metrics["test_loss"] for r in finals(COMPARE, **{"lmbench.model": m})]
        assert table.loc[m, "test_loss_mean"] == pytest.approx(np.mean(loss), rel=1e-12)
    assert not (tmp_path / "md" / "index.html").exists()


# -- importances -----------------------------------------------------------------------------


def conditional(trial: optuna.Trial) -> float:
    kind = trial.suggest_categorical("kind", ["a", "b"])
    if kind == "a":
        return trial.suggest_float("x", 0, 1) ** 2
    return 1 + trial.suggest_int("y", 1, 4) * 0.1


def test_importances_on_a_conditional_space_and_with_too_few_trials():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(conditional, n_trials=1)
    view = study_view("gru", study)
    assert view.importances == {} and view.note.startswith("not enough trials")
    study.optimize(conditional, n_trials=11)
    view = study_view("gru", study)
    assert set(view.importances) <= {"kind", "x", "y"} and view.importances
    assert sum(view.importances.values()) == pytest.approx(1.0)
    assert len(view.trials) == 12 and {"params_x", "params_y"} <= set(view.trials.columns)


# -- partly finished and bad input -----------------------------------------------------------

BROKEN_GPT = ["--set", "search.space.gpt.n_heads={categorical: [3]}", "--set", "search.space.gpt.d_model={categorical: [64]}"]
TINY = ["--quick", "--quiet", "--trials", "1", "--set", "train.budget={steps: 8}", "--set", "search.budget=null",
        "--set", "train.eval_interval=4", "--set", "data.size=8000", "--set", "data.seq_len=16",
        "--set", "train.eval_tokens=600"]


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """`part`: rnn finished, every gpt trial failed (heads do not divide the width), so the compare
    failed half-way; `none`: only gpt, so nothing finished at all; `tun`: a finished tune of rnn."""
    work = tmp_path_factory.mktemp("broken")
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    mp.setenv("LMBENCH_CACHE_DIR", str(work / "token-cache"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    part = cli("compare", "--models", "rnn,gpt", "--seeds", "2", "--set", "name=part", *TINY, *BROKEN_GPT)
    none = cli("compare", "--models", "gpt", "--seeds", "1", "--set", "name=none", *TINY, *BROKEN_GPT)
    tune = cli("tune", "--model", "rnn", "--set", "name=tun", *TINY, "--trials", "2")
    mp.undo()
    assert part.exit_code == 2 and none.exit_code == 2, part.output + none.output
    assert tune.exit_code == 0, tune.output
    return work


def test_a_partly_finished_experiment_renders_what_exists(broken, monkeypatch):
    monkeypatch.chdir(broken)
    r = cli("report", "part")
    assert r.exit_code == 0, r.output
    text, doc = page(broken, "part")
    rows = doc.table("compare", "results")["rows"]
    assert [row[0]["text"].removeprefix("★ ").strip() for row in rows] == ["rnn"]
    missing = " ".join(doc.texts["li"])
    assert "root run is FAILED" in missing and "gpt: 0 of 2 seed runs finished" in missing
    assert "gpt: its model run is FAILED" in missing
    assert "not enough trials" in text  # rnn: one trial; gpt: none complete
    assert "must divide d_model" in text  # the failed trial's reason, in the trials table


def test_a_tune_report_shows_the_search(broken, monkeypatch):
    monkeypatch.chdir(broken)
    r = cli("report", "tun")
    assert r.exit_code == 0, r.output
    text, doc = page(broken, "tun")
    (trials,) = [t for t in doc.tables if "trials" in t["class"].split()]
    assert len(trials["rows"]) == 2
    values = [float(row[2]["v"]) for row in trials["rows"] if row[1]["text"] == "COMPLETE"]
    answer = [p for p in doc.texts["p"] if p.startswith("Best validation loss")]
    assert values and answer and "of 2" in answer[0]
    assert len(doc.images) == 1  # the search figure


def test_bad_input_is_one_line_and_exit_2(broken, monkeypatch, tmp_path):
    monkeypatch.chdir(broken)
    before = run_count()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = {
        ("report", "nope"): "no experiment 'nope'",
        ("report", "none"): "no finished runs",
        ("report", "part", "--format", "pdf"): "--format",
        ("report", "part", "--out", str(blocker / "x")): "--out",
        ("report", "part", "--storage", "postgresql://nobody@127.0.0.1:1/x"): "--storage",
    }
    for args, expected in cases.items():
        r = cli(*args)
        assert r.exit_code == 2, (args, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (args, r.output)
    assert "'part'" in cli("report", "nope").output  # the known experiments are listed
    assert not (broken / "reports" / "nope").exists() and not (broken / "reports" / "none").exists()
    assert run_count() == before
    monkeypatch.chdir(tmp_path)  # no store here: an error, and no mlflow.db is created
    r = cli("report", "part")
    assert r.exit_code == 2 and "no MLflow store" in r.output
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "reports").exists()
