"""The MLflow UI and the HTML report in a real browser (Debian's chromium over DevTools).

`lmbench ui` prints the runs page of the latest experiment; there the root run is listed, its
expander shows its children, and a screenshot is not blank. The experiments are marked as model
training, so MLflow 3 opens them on their runs, not on the GenAI overview. The report's results
table fits a 1280 px window: no horizontal scrolling, every cell on one line (no empty space in a
row), the best hyperparameters in a table of their own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _browser import CHROMIUM, Browser
from _services import free_port
from conftest import need
from mlflow import MlflowClient
from PIL import Image
from report_data import ABLATE, COMPARE, MODELS, shared_experiments

from lmbench.tracking.tracker import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    need(CHROMIUM.is_file(), f"{CHROMIUM} is missing (apt-get install chromium)")
    work, _ = shared_experiments(tmp_path_factory)
    return work


@pytest.fixture(scope="module")
def ui(folder, tmp_path_factory):
    """`lmbench ui` on the experiments' store; yields the runs page URL it printed."""
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lmbench.cli", "ui", "--port", str(port)], cwd=folder,
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline, url = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"MLflow UI: (\S+)", log.read_text())
            ready = "Uvicorn running" in log.read_text() or "Application startup complete" in log.read_text()
            if found and ready:
                url = found[1]
                break
            time.sleep(0.5)
        assert url, log.read_text()
        yield url
    finally:
        proc.send_signal(2)  # SIGINT: lmbench ui stops the server's whole process group
        proc.wait(timeout=30)


@pytest.fixture
def browser():
    b = Browser(1280, 900)
    yield b
    b.close()


def test_ui_opens_the_latest_experiments_runs_and_expands_the_root_run(folder, ui, browser, tmp_path):
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    latest = client.get_experiment_by_name(ABLATE)  # built after the compare
    assert ui.endswith(f"/#/experiments/{latest.experiment_id}/runs"), ui
    for name in (COMPARE, ABLATE):  # model training, not GenAI: MLflow 3 opens the runs, not an overview
        assert client.get_experiment_by_name(name).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    runs = client.search_runs([latest.experiment_id])
    (root,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == root.info.run_id)
    assert children
    browser.open(ui)
    names = ("Array.from(document.querySelectorAll('[role=gridcell][col-id*=\"Run Name\"] a'))"
             ".map(a => a.innerText.trim())")
    shown = browser.wait_for(f"(() => {{ const n = {names}; return n.includes({root.info.run_name!r}) && n; }})()",
                             90, "the root run in the runs table")
    assert not set(children) & set(shown)  # collapsed under their parent
    assert "Training runs" in browser.evaluate("document.body.innerText")
    browser.evaluate(f"""Array.from(document.querySelectorAll('[role=gridcell][col-id*="Run Name"]'))
        .find(c => c.querySelector('a') && c.querySelector('a').innerText.trim() === {root.info.run_name!r})
        .querySelector('button').click()""")
    shown = browser.wait_for(f"(() => {{ const n = {names}; return {children!r}.every(c => n.includes(c)) && n; }})()",
                             30, "the root run's children")
    shot = Image.open(browser.screenshot(tmp_path / "runs.png"))
    gray = np.asarray(shot.convert("L"), dtype=float)
    assert shot.size[0] >= 1000 and gray.std() > 15 and (gray < 200).mean() > 0.01  # not a blank page


FIT = """(() => {
  const t = document.querySelector("section#compare table.results");
  const cells = Array.from(t.querySelectorAll("tbody td"));
  const lines = cells.map(c => {
    const s = getComputedStyle(c), pad = parseFloat(s.paddingTop) + parseFloat(s.paddingBottom);
    return (c.clientHeight - pad) / parseFloat(s.lineHeight || 20);
  });
  const heights = Array.from(t.tBodies[0].rows).map(r => r.getBoundingClientRect().height);
  return {pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth,
          boxScroll: t.parentElement.scrollWidth, boxWidth: t.parentElement.clientWidth,
          maxLines: Math.max(...lines), heights: heights, rows: t.tBodies[0].rows.length,
          headers: Array.from(t.tHead.rows[0].cells).map(c => c.innerText.trim()),
          params: Array.from(document.querySelectorAll("section#compare table.params tbody tr")).length};
})()"""


def test_the_results_table_fits_a_1280_window_without_empty_space(folder, browser):
    browser.open((folder / "reports" / COMPARE / "index.html").as_uri())
    seen = browser.wait_for(FIT.replace("(() => {", "(() => { if (!document.querySelector('table.results')) "
                                        "return null;", 1), 30, "the results table")
    assert seen["rows"] == len(MODELS) and seen["params"] == len(MODELS)
    assert seen["pageWidth"] <= seen["viewport"] and seen["boxScroll"] <= seen["boxWidth"], seen  # no scrolling
    assert seen["maxLines"] < 1.6, seen  # every cell on one line: no row with empty space under its values
    assert max(seen["heights"]) - min(seen["heights"]) <= 2, seen
    assert "best hyperparameters" not in " ".join(seen["headers"]).lower()
