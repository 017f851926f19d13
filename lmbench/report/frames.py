"""What MLflow and Optuna stored about one experiment, read back as pandas frames.

A report is built only from the stores (never from a command's memory), so anyone with access
to the tracking store and the studies can rebuild it at any time. One :class:`Section` per root
run (the latest ``compare``, ``ablate`` and ``tune`` root of the experiment); each holds the
finished final (seed) runs, their summary table from :mod:`lmbench.stats`, the per-step curves,
the Optuna studies (:mod:`.studies`) and a list of what is missing, so a partly finished
experiment still renders.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmbench import secrets
from lmbench.config import param_path
from lmbench.errors import UserError
from lmbench.report import adequacy
from lmbench.report.studies import StudyView, find_storage, load_studies
from lmbench.stats import ablation_table, compare_table
from lmbench.tracking import schema
from lmbench.tracking.tracker import resolve_uri

log = logging.getLogger(__name__)

ROOT_KINDS = ("compare", "ablate", "tune", "scale")  # scale sections: lmbench.report.scaling
HISTORY = ("val_loss", "train_loss", "tokens_seen")
SAMPLES_ARTIFACT = "samples/samples.json"
MAX_SAMPLES = 3


@dataclass
class Section:
    """Everything the report shows about one root run (compare | ablate | tune)."""

    kind: str
    root: Any  # mlflow.entities.Run
    arch: str | None = None  # the ablated / tuned architecture
    groups: list[str] = field(default_factory=list)  # models or ablation value labels, in run order
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # finished final runs: group, seed, metrics
    table: pd.DataFrame | None = None  # stats.compare_table / stats.ablation_table of ``runs``
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # group, seed, step, tokens_seen, losses
    studies: list[StudyView] = field(default_factory=list)
    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    best_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)  # ablation: param -> baseline value
    missing: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)  # summary: data, budget, machine, versions
    spec_yaml: str | None = None

    @property
    def root_id(self) -> str:
        return self.root.info.run_id


@dataclass
class ExperimentData:
    name: str
    tracking_uri: str
    sections: list[Section]


# -- the MLflow store ------------------------------------------------------------------------


class Store:
    """The runs of one MLflow experiment, indexed by parent, with helpers to read more."""

    def __init__(self, client, experiment_id: str):
        self.client = client
        self.runs = _all_runs(client, experiment_id)
        self.children: dict[str, list] = defaultdict(list)
        for r in self.runs:  # newest first, as searched
            parent = r.data.tags.get(schema.PARENT_TAG)
            if parent:
                self.children[parent].append(r)

    def kids(self, run, kind: str | None = None, **tags: str) -> list:
        """Direct children of ``run`` (newest first) with ``lmbench.kind`` and these tags."""
        out = []
        for r in self.children.get(run.info.run_id, []):
            t = r.data.tags
            if (kind is None or t.get(schema.KIND) == kind) and all(t.get(k) == v for k, v in tags.items()):
                out.append(r)
        return out

    def history(self, run_id: str) -> pd.DataFrame:
        """Per-step ``val_loss``, ``train_loss`` and ``tokens_seen`` of a run (one row per step)."""
        cols = {}
        for key in HISTORY:
            points = sorted(self.client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
            cols[key] = pd.Series({m.step: m.value for m in points}, dtype=float)  # last value per step wins
        frame = pd.DataFrame(cols).rename_axis("step").reset_index()
        return frame.sort_values("step", ignore_index=True)

    def artifact_text(self, run_id: str, path: str) -> str | None:
        """The text of an artifact of a run, or None when the run has no such artifact."""
        parent = str(Path(path).parent) if "/" in path else None
        names = {a.path for a in self.client.list_artifacts(run_id, parent)}
        if path not in names:
            return None
        with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
            local = self.client.download_artifacts(run_id, path, tmp)
            return Path(local).read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow progress bar per small artifact (it would flood the terminal)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _all_runs(client, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        runs += list(page)
        token = page.token
        if not token:
            return runs


def open_store(experiment: str, tracking_uri: str | None = None) -> tuple[Store, str]:
    """The experiment's runs; an unknown experiment or one with no finished run is a UserError."""
    from mlflow import MlflowClient

    uri = resolve_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # opening a missing SQLite store would create it: a report never writes to the store
        raise UserError("--tracking-uri", f"no MLflow store at {uri} (run lmbench here, or pass --tracking-uri)")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage != "active":
        known = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        listed = ", ".join(repr(k) for k in known) or "none"
        raise UserError("EXPERIMENT", f"no experiment {experiment!r} in {secrets.redact(uri)} (known: {listed})")
    store = Store(client, exp.experiment_id)
    if not any(r.info.status == "FINISHED" for r in store.runs):
        raise UserError(f"experiment {experiment!r}", "has no finished runs yet")
    if not any(r.data.tags.get(schema.KIND) in ROOT_KINDS for r in store.runs):
        raise UserError(f"experiment {experiment!r}", "has only single training runs; a report needs lmbench "
                        "compare, ablate, tune or scale")
    return store, uri


def load_experiment(experiment: str, tracking_uri: str | None = None, storage: str | None = None,
                    store: Store | None = None) -> ExperimentData:
    """Read every section of ``experiment``: the latest compare, ablate and tune root runs."""

    if store is None:
        store, _ = open_store(experiment, tracking_uri)
    sections = []
    builders = {"compare": compare_section, "ablate": ablate_section, "tune": tune_section}
    for kind, build in builders.items():
        roots = [r for r in store.runs if r.data.tags.get(schema.KIND) == kind and schema.PARENT_TAG not in r.data.tags]
        if roots:  # newest first: a changed spec makes a new root; the latest one is the answer
            sections.append(build(store, roots[0], experiment, storage))
    # shown in the report: a store's password never is
    return ExperimentData(experiment, secrets.redact(resolve_uri(tracking_uri)), sections)


# -- sections --------------------------------------------------------------------------------


def compare_section(store: Store, root, experiment: str, storage: str | None) -> Section:
    """Per model: finished seed runs, curves, the study and best params; notes on what is missing."""

    sec = Section("compare", root)
    model_runs = {}
    for r in reversed(store.kids(root, "model")):  # oldest first: run order, the latest run per model wins
        model_runs[schema.model_of(r.data.tags) or r.info.run_name] = r
    listed = [m for m in root.data.params.get("models", "").split(",") if m]
    seeds = _int(root.data.params.get("seeds"))
    rows = []
    for arch in dict.fromkeys(listed + list(model_runs)):
        mrun = model_runs.get(arch)
        if mrun is None:
            sec.missing.append(f"{arch}: not started")
            continue
        if schema.BEST_PARAMS in mrun.data.tags:
            sec.best_params[arch] = json.loads(mrun.data.tags[schema.BEST_PARAMS])
        finals = _final_runs(store, mrun, seeds, arch, sec.missing)
        if mrun.info.status != "FINISHED":
            sec.missing.append(f"{arch}: its model run is {mrun.info.status}" + _failure(store, mrun))
        rows += [_metric_row(r, group=arch, model=arch) for r in finals]
        sec.groups.append(arch)
    sec.runs = pd.DataFrame(rows)
    if not sec.runs.empty:
        sec.table = compare_table(sec.runs.drop(columns=["group", "run_id"]), metric="test_loss")
    _fill_common(store, sec, experiment)
    sec.studies = _studies(store, sec, experiment, storage, list(model_runs),
                           {a: r.data.tags.get(schema.STUDY) for a, r in model_runs.items()})
    adequacy.annotate(sec)  # search levelled off? training converged? what the seeds can detect
    return sec


def ablate_section(store: Store, root, experiment: str, storage: str | None) -> Section:
    """Per ablated value: finished seed runs and curves; the table from :func:`stats.ablation_table`."""

    sec = Section("ablate", root, arch=schema.model_of(root.data.tags))
    params = [p for p in root.data.params.get("params", "").split(",") if p]
    seeds = None  # the seeds are not a root param: every value is compared with the baseline's count
    value_runs = {}
    for r in reversed(store.kids(root, "value")):
        value_runs[r.data.tags.get(schema.ABLATE_VALUE, r.info.run_name)] = r
    if "baseline" not in value_runs:
        sec.missing.append("baseline: not started")
    per_label = {label: _final_runs(store, r, seeds, label, sec.missing) for label, r in value_runs.items()}
    base = per_label.get("baseline", [])
    seeds = len(base)
    for p in params:
        if base:
            sec.baselines[p] = base[0].data.params.get(param_path(sec.arch, p), "?")
    rows = []
    for label, finals in per_label.items():
        if label == "baseline":
            continue
        p, _, v = label.partition("=")
        if base and len(finals) < seeds:
            sec.missing.append(f"{label}: {len(finals)} of {seeds} seed runs finished")
        rows += [_metric_row(r, group=label, param=p, value=v) for r in finals]
    for p, v in sec.baselines.items():  # the baseline runs serve every swept parameter
        rows += [_metric_row(r, group="baseline", param=p, value=v) for r in base]
    frame = pd.DataFrame(rows)
    if not frame.empty and base:
        frame = _sort_values(frame)
        sec.table = ablation_table(frame.drop(columns=["group", "run_id"]), sec.baselines, metric="test_loss")
    elif not frame.empty:
        sec.missing.append("no finished baseline runs: deltas cannot be computed")
    sec.runs = frame.drop_duplicates(subset=["group", "seed"]) if not frame.empty else frame
    sec.groups = list(dict.fromkeys(sec.runs["group"])) if not frame.empty else []
    _fill_common(store, sec, experiment)
    adequacy.annotate(sec)  # what the seeds can detect
    return sec


def tune_section(store: Store, root, experiment: str, storage: str | None) -> Section:
    """A single study: the search part of the report only."""
    arch = schema.model_of(root.data.tags) or "?"
    sec = Section("tune", root, arch=arch, groups=[arch])
    if schema.BEST_PARAMS in root.data.tags:
        sec.best_params[arch] = json.loads(root.data.tags[schema.BEST_PARAMS])
    _fill_common(store, sec, experiment)
    sec.studies = _studies(store, sec, experiment, storage, [arch], {})
    return sec


def _failure(store: Store, run) -> str:
    """Why a run or its newest failed child failed, from the ``lmbench.failure`` tags."""
    for r in [run, *store.kids(run)]:
        if "lmbench.failure" in r.data.tags:
            return f" ({r.data.tags['lmbench.failure'][:300]})"
    return ""


def _final_runs(store: Store, parent, seeds: int | None, label: str, missing: list[str]) -> list:
    """Finished seed runs under ``parent`` (one per seed, the latest); notes the ones not finished."""
    by_seed: dict[str, Any] = {}
    others: dict[str, str] = {}
    for r in store.kids(parent, None, stage="final"):
        seed = r.data.tags.get(schema.SEED, "?")
        if r.info.status == "FINISHED":
            by_seed.setdefault(seed, r)
        else:
            others.setdefault(seed, r.info.status)
    unfinished = {s: st for s, st in others.items() if s not in by_seed}
    if seeds is not None and len(by_seed) < seeds:
        detail = ", ".join(f"seed {s} {st}" for s, st in sorted(unfinished.items()))
        missing.append(f"{label}: {len(by_seed)} of {seeds} seed runs finished" + (f" ({detail})" if detail else ""))
    elif seeds is None and unfinished:
        missing.append(f"{label}: " + ", ".join(f"seed {s} {st}" for s, st in sorted(unfinished.items())))
    return sorted(by_seed.values(), key=lambda r: _int(r.data.tags.get(schema.SEED)) or 0)


def _metric_row(run, **columns: Any) -> dict[str, Any]:
    row = {**columns, "seed": _int(run.data.tags.get(schema.SEED)), "run_id": run.info.run_id}
    row.update({m: run.data.metrics[m] for m in schema.METRICS if m in run.data.metrics})
    if "params.non_embedding" in run.data.params:
        row["params_non_embedding"] = int(run.data.params["params.non_embedding"])
    return row


def _sort_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Within each parameter, values in numeric order when they are all numbers (plots read left to right)."""
    parts = []
    for _, g in frame.groupby("param", sort=False):
        key = pd.to_numeric(g["value"], errors="coerce")
        parts.append(g.iloc[key.argsort(kind="stable")] if key.notna().all() else g)
    return pd.concat(parts, ignore_index=True)


def _int(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


# -- curves, samples, facts ------------------------------------------------------------------


def _fill_common(store: Store, sec: Section, experiment: str) -> None:
    if sec.root.info.status != "FINISHED":
        sec.missing.insert(0, f"the {sec.kind} command's root run is {sec.root.info.status}: results are partial")
    frames = [store.history(r).assign(group=g, seed=s)
              for r, g, s in zip(sec.runs.get("run_id", []), sec.runs.get("group", []), sec.runs.get("seed", []),
                                 strict=True)]
    sec.curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not sec.runs.empty:
        for group, g in sec.runs.groupby("group", sort=False):
            samples = _samples(store, g["run_id"].iloc[0])
            if samples:
                sec.samples[str(group)] = samples
    sec.spec_yaml = store.artifact_text(sec.root_id, "spec.yaml")
    sec.facts = facts(store, sec)


def _samples(store: Store, run_id: str) -> list[dict[str, str]]:
    text = store.artifact_text(run_id, SAMPLES_ARTIFACT)
    if text is None:
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        log.warning("run %s: unreadable %s: %s", run_id, SAMPLES_ARTIFACT, e)
        return []
    keys = ("prompt", "reference", "generation")
    return [{k: str(item.get(k, ""))[:1000] for k in keys} for item in items[:MAX_SAMPLES] if isinstance(item, dict)]


def facts(store: Store, sec: Section) -> dict[str, str]:
    """The summary lines: data, budget, machine and device, versions, wall time."""
    root = sec.root
    first_id = sec.runs["run_id"].iloc[0] if not sec.runs.empty else None
    sample = next((r for r in store.runs if r.info.run_id == first_id), None) or _any_trial(store, root)
    p = sample.data.params if sample else {}
    out: dict[str, str] = {}
    if p:
        data = [p.get("data.source", "?"), f"{p.get('data.tokenizer', '?')} tokenizer",
                f"vocabulary {p.get('data.vocab_size_actual', '?')}", f"sequence length {p.get('data.seq_len', '?')}"]
        if p.get("data.source") == "synthetic":
            data.append(f"{int(p.get('data.size', 0)):,} generated tokens (seed {p.get('data.seed', '?')})")
        out["data"] = ", ".join(data) + _split_sizes(store, first_id)
        out["budget"] = _budget(p, root, sec.kind)
    # the machines of the final runs, or of the trials when there are none (tune)
    ids = set(sec.runs.get("run_id", [])) or {r.info.run_id for c in [root, *store.kids(root)] for r in store.kids(c)}
    devices = sorted({f"{r.data.tags.get('device.name', r.data.tags.get('device', '?'))} on "
                      f"{r.data.tags.get('host', '?')} ({r.data.tags.get('precision', '?')})"
                      for r in store.runs if r.info.run_id in ids})
    if devices:
        out["machine"] = "; ".join(devices)
    t = root.data.tags
    out["versions"] = (f"lmbench {t.get('lmbench.version', '?')} (git {t.get('lmbench.git_sha', '?')[:12]}), "
                       f"torch {t.get('torch.version', '?')}, python {t.get('python.version', '?')}")
    if root.info.end_time and root.info.start_time:
        out["wall time"] = _duration((root.info.end_time - root.info.start_time) / 1000) + f" ({root.info.status})"
    else:
        out["wall time"] = f"still {root.info.status}"
    if "train_seconds" in sec.runs:
        out["training time"] = f"{_duration(sec.runs['train_seconds'].sum())} in {len(sec.runs)} final runs"
    return out


def _any_trial(store: Store, root):
    for child in store.kids(root):
        for r in [child, *store.kids(child)]:
            if r.data.params.get("data.source"):
                return r
    return None


def _split_sizes(store: Store, run_id: str | None) -> str:
    text = store.artifact_text(run_id, "summary.json") if run_id else None
    if not text:
        return ""
    data = json.loads(text).get("data", {})
    sizes = [f"{s} {data[s]['n_tokens']:,}" for s in ("train", "val", "test") if "n_tokens" in data.get(s, {})]
    return f"; tokens: {', '.join(sizes)}" if sizes else ""


def _budget(p: dict[str, str], root, kind: str) -> str:
    def amount(prefix: str) -> str:
        parts = [f"{p[f'{prefix}.{k}']} {k}" for k in ("steps", "tokens", "seconds") if p.get(f"{prefix}.{k}", "None") != "None"]
        return " / ".join(parts)

    final = amount("train.budget")
    if kind == "tune":  # only trials: each trained with the search budget (or train.budget)
        return f"{p.get('search.trials', '?')} trials of {amount('search.budget') or final}"
    trial = amount("search.budget") or (f"{final} (= the final budget)" if final else "")
    rp = root.data.params
    parts = [f"final runs {final}" if final else ""]
    if "trials" in rp:
        parts.append(f"{rp['trials']} trials per model of {trial}")
    if "seeds" in rp:
        parts.append(f"{rp['seeds']} seeds per model")
    return "; ".join(x for x in parts if x)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _studies(store: Store, sec: Section, experiment: str, storage: str | None, models: list[str],
             names: dict[str, str | None]) -> list[StudyView]:
    sample = _any_trial(store, sec.root)
    st = find_storage(experiment, storage, sample.data.params.get("search.storage") if sample else None, sec.missing)
    return load_studies(st, experiment, models, names)
