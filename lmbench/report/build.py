"""`lmbench report`: stores -> frames -> figures and tables -> reports/<experiment>/index.html.

Order of work: find the experiment and check the output folder (user errors, exit 2, before
anything is written), read everything into frames, draw, render in memory, then write each file
atomically. The figures (and the HTML) are also logged as artifacts of each section's root run;
a failure there is only a warning, the report on disk is the product.
"""

from __future__ import annotations

import base64
import logging
import os
import shlex
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmbench.errors import UserError
from lmbench.files import report_dir
from lmbench.report import export, plots, scaling_views, views
from lmbench.report.frames import ExperimentData, Section, Store, load_experiment, open_store
from lmbench.report.plots import arch_colors
from lmbench.report.scaling import scale_sections

log = logging.getLogger(__name__)

FORMATS = ("html", "md", "csv")
ARTIFACT_DIR = "report"


@dataclass
class Figure:
    key: str  # file stem, unique within a section
    caption: str
    alt: str
    png: bytes

    @property
    def b64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")

    @property
    def size(self) -> tuple[int, int]:
        return struct.unpack(">II", self.png[16:24])  # the PNG header's IHDR width and height

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]


def build_report(experiment: str, *, tracking_uri: str | None = None, storage: str | None = None,
                 out: Path | str | None = None, fmt: str = "html", log_to_mlflow: bool = True) -> Path:
    """Build the report of ``experiment`` from the MLflow and Optuna stores; returns its path.

    ``out``: the folder (default ``reports/<experiment>``); ``fmt``: html (index.html), md
    (index.md + plots/) or csv (tables as CSV files; the folder is returned).
    """
    if fmt not in FORMATS:
        raise UserError("--format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    store, _ = open_store(experiment, tracking_uri)
    out_dir = Path(out) if out is not None else report_dir(experiment)
    check_writable(out_dir)
    data = load_experiment(experiment, tracking_uri, storage, store=store)
    data.sections += scale_sections(store)
    parts = present(data)

    path = {"html": export.write_html, "md": export.write_md, "csv": export.write_csv}[fmt](data, parts, out_dir)
    if log_to_mlflow:
        log_artifacts(store, parts, path if fmt == "html" else None)
    return path


def check_writable(out: Path) -> None:
    """The output folder, or its nearest existing ancestor, must be a writable folder."""
    p = out
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise UserError("--out", f"cannot write the report to {out}: {p} is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UserError("--out", f"cannot write the report to {out}: {p} is not writable")


# -- presentation ----------------------------------------------------------------------------


def present(data: ExperimentData) -> list[dict[str, Any]]:
    """Per section: texts, tables and figures, ready for a template or a Markdown writer."""

    extra = [g for s in data.sections for g in ([s.arch] if s.arch else s.groups)]
    colors = arch_colors(extra)
    # a scale section overlays its own parts on the common ones (every key the template reads)
    return [{**present_section(sec, colors), **scaling_views.present(sec, colors, Figure)} if sec.kind == "scale"
            else present_section(sec, colors) for sec in data.sections]


def present_section(sec: Section, colors: dict[str, str]) -> dict[str, Any]:
    part: dict[str, Any] = {
        "id": sec.kind, "kind": sec.kind, "title": views.title(sec), "question": views.question(sec),
        "answer": views.answer(sec), "facts": sec.facts, "missing": sec.missing, "root_id": sec.root_id,
        "root_name": sec.root.info.run_name, "spec_yaml": sec.spec_yaml, "command": command(sec),
        "samples": sec.samples, "results": None, "params": None, "ablation_fig": None, "curves": None, "studies": [],
        "section": sec,
    }
    color = colors.get(sec.arch or "", "#444444")
    if sec.kind == "compare":
        group_colors = {g: colors[g] for g in sec.groups}
    else:  # the values of one architecture: shades of its colour
        group_colors = dict(zip(sec.groups, plots.shades(color, len(sec.groups)), strict=True))
    if sec.table is not None and not sec.table.empty:
        if sec.kind == "compare":
            part["results"] = views.results_view(sec, colors)
            part["params"] = views.params_view(sec, colors)
        else:
            part["results"] = views.ablation_view(sec)
            part["ablation_fig"] = Figure("ablation", f"{sec.arch}: test loss per value, mean ± 95% CI over seeds; "
                                          "the star is the baseline", "ablation plot", plots.ablation_png(sec.table, color))
    if not sec.curves.empty:
        note = plots.BAND_NOTE
        part["curves"] = [Figure("curves", f"Validation loss vs tokens seen ({note})", "learning curves",
                                 plots.curves_png(sec.curves, group_colors)),
                          Figure("curves-log", f"The same on log–log axes ({note})", "learning curves, log scale",
                                 plots.curves_png(sec.curves, group_colors, log=True))]
    for st in sec.studies:
        c = colors.get(st.model, color)
        fig = None
        if not st.trials.empty:
            fig = Figure(f"search-{st.model}", f"{st.model}: validation loss per trial (best so far as a line) and "
                         "Optuna's parameter importances", f"search of {st.model}",
                         plots.search_png(st.trials, st.importances, c, st.note))
        part["studies"].append({"model": st.model, "name": st.name, "color": c, "note": st.note, "figure": fig,
                                "trials": views.trials_view(st) if not st.trials.empty else None, "view": st})
    part["figures"] = [f for f in [part["ablation_fig"], *(part["curves"] or []),
                                   *[s["figure"] for s in part["studies"]]] if f is not None]
    return part


def command(sec: Section) -> str:
    """A command rebuilt from the root run's params (when it has no spec.yaml artifact)."""
    p = sec.root.data.params
    q = shlex.quote
    if sec.kind == "compare":
        cmd = ["lmbench", "compare", "--models", p.get("models", "?"), "--trials", p.get("trials", "?"),
               "--seeds", p.get("seeds", "?")]
    elif sec.kind == "ablate":
        cmd = ["lmbench", "ablate", "--model", sec.arch or "?"]
        for name in p.get("params", "").split(","):
            cmd += ["--param", name]
    else:
        cmd = ["lmbench", "tune", "--model", sec.arch or "?"]
    return " ".join(q(c) for c in cmd)


def log_artifacts(store: Store, parts: list[dict[str, Any]], html: Path | None) -> None:
    """Log every figure (PNG) and the HTML to the section's root run, under report/."""
    for part in parts:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                for fig in part["figures"]:
                    (Path(tmp) / f"{fig.key}.png").write_bytes(fig.png)
                if html is not None:
                    (Path(tmp) / html.name).write_bytes(html.read_bytes())
                store.client.log_artifacts(part["root_id"], tmp, ARTIFACT_DIR)
        except Exception as e:  # the report on disk is the product; MLflow is a copy
            log.warning("could not log the report to MLflow run %s: %s", part["root_id"], e)
