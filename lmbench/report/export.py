"""Writers of the three report formats: HTML (one file), Markdown (+ PNG files), CSV tables."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

from lmbench import files
from lmbench.errors import UserError
from lmbench.report.frames import ExperimentData
from lmbench.report.html import render_html
from lmbench.report.views import TableView


def write_atomic(path: Path, content: str | bytes) -> None:
    """Readers see the old or the new file, never half of one; a failure names ``--out``."""
    try:
        files.write_atomic(path, content)
    except OSError as e:
        raise UserError("--out", f"cannot write {path}: {e.strerror or e}") from None

def write_html(data: ExperimentData, parts: list[dict[str, Any]], out: Path) -> Path:
    path = out / "index.html"
    write_atomic(path, render_html(data, parts))
    return path


# -- Markdown --------------------------------------------------------------------------------


def md_cell(text: str) -> str:
    """A table cell: no line breaks, pipes escaped, no raw HTML (Markdown renders inline HTML)."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def md_table(view: TableView) -> list[str]:
    lines = ["| " + " | ".join(md_cell(h) for h in view.headers) + " |",
             "|" + "|".join("---" for _ in view.headers) + "|"]
    for row, strong in zip(view.rows, view.strong, strict=True):
        cells = [md_cell(c.text) for c in row]
        if strong:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def fenced(text: str, lang: str = "") -> list[str]:
    """A code block whose fence is longer than any backtick run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, text.rstrip("\n"), fence]


def write_md(data: ExperimentData, parts: list[dict[str, Any]], out: Path) -> Path:
    """index.md with tables and the figures as PNG files in plots/."""
    lines = [f"# lmbench report: {md_cell(data.name)}", "",
             f"From the MLflow store `{data.tracking_uri}` and the Optuna studies; means ± 95% CI (t over seeds), "
             "p-values from paired t-tests on shared seeds.", ""]
    for part in parts:
        lines += [f"## {md_cell(part['title'])}", "", f"> {md_cell(part['answer'])}", ""]
        if part["missing"]:
            lines += ["**Missing or unfinished:**", ""] + [f"- {md_cell(m)}" for m in part["missing"]] + [""]
        lines += ["### Summary", "", f"- **question**: {md_cell(part['question'])}"]
        lines += [f"- **{md_cell(k)}**: {md_cell(v)}" for k, v in part["facts"].items()] + [""]
        if part["results"] is not None:
            lines += ["### Results", "", *md_table(part["results"]), ""]
        if part.get("params") is not None:
            lines += ["### Best hyperparameters", "", *md_table(part["params"]), ""]
        for block in part.get("blocks", []):  # sections made of blocks (scale); figures follow below
            lines += [f"### {md_cell(block['title'])}", ""]
            lines += [md_cell(block["note"]), ""] if block["note"] else []
            lines += [*md_table(block["view"]), ""] if block["view"] is not None else []
        for fig in part["figures"]:
            name = f"plots/{part['id']}-{fig.key}.png"
            write_atomic(out / name, fig.png)
            lines += [f"![{md_cell(fig.alt)}]({name})", "", f"*{md_cell(fig.caption)}*", ""]
        for st in part["studies"]:
            if st["trials"] is not None:
                lines += [f"### Trials of {md_cell(st['model'])}", "", *md_table(st["trials"]), ""]
        for group, items in part["samples"].items():
            lines += [f"### Samples of {md_cell(group)}", ""]
            for it in items:
                lines += [f"- prompt: {md_cell(it['prompt'])}", f"  reference: {md_cell(it['reference'])}",
                          f"  generated: {md_cell(it['generation'])}"]
            lines.append("")
        lines += ["### Reproduce", ""]
        if part["spec_yaml"]:
            lines += [f"Save the spec below as `spec.yaml` and run `lmbench {part['kind']} spec.yaml`.", "",
                      *fenced(part["spec_yaml"], "yaml"), ""]
        else:
            lines += fenced(part["command"], "bash") + [""]
    path = out / "index.md"
    write_atomic(path, "\n".join(lines))
    return path


# -- CSV -------------------------------------------------------------------------------------


def write_csv(data: ExperimentData, parts: list[dict[str, Any]], out: Path) -> Path:
    """runs.csv (every finished seed run), <kind>_table.csv, trials.csv and curves.csv; returns ``out``."""
    runs, curves, trials = [], [], []
    for part in parts:
        sec = part["section"]
        tag = {"section": sec.kind, "root_run_id": sec.root_id}
        if not sec.runs.empty:
            runs.append(sec.runs.assign(**tag))
        if not sec.curves.empty:
            curves.append(sec.curves.assign(**tag))
        if sec.table is not None:
            write_atomic(out / f"{sec.kind}_table.csv", sec.table.to_csv())
        for name, frame in part.get("csv", {}).items():  # a section's own tables (scale: scaling.csv)
            write_atomic(out / name, frame.to_csv(index=False))
        trials += [st.trials.assign(model=st.model, study=st.name, **tag) for st in sec.studies if not st.trials.empty]
    for name, frames in (("runs", runs), ("curves", curves), ("trials", trials)):
        if frames:
            write_atomic(out / f"{name}.csv", pd.concat(frames, ignore_index=True).to_csv(index=False))
    return out
