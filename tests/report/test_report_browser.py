"""The report in a real browser: Debian's chromium, headless, from the file on disk.

A copy of the report gets a small probe script (the CSP allows inline scripts) that records what
the browser sees - decoded image widths, the table, the sort, the page width - into the DOM,
which ``--dump-dom`` prints. Screenshots on a desktop and a phone-sized window must not be blank.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import need
from PIL import Image
from report_data import COMPARE, MODELS, shared_experiments

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
         "--virtual-time-budget=10000"]
PROBE = """<script>
window.addEventListener("load", function () {
  var t = document.querySelector("section#compare table.results"), body = t.tBodies[0];
  var first = function () { return body.rows[0].cells[0].textContent.replace("\\u2605", "").trim(); };
  var out = {images: Array.prototype.map.call(document.images, function (i) { return i.naturalWidth; }),
             rows: body.rows.length, first: first(), headers: t.tHead.rows[0].cells.length,
             pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
  var th = t.tHead.rows[0].cells[1];  /* test loss: ascending, then descending */
  th.click(); out.ascending = first(); th.click(); out.descending = first();
  out.sorted = th.getAttribute("aria-sort");
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a fresh profile per run
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, cwd=tmp)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    need(CHROMIUM.is_file(), f"{CHROMIUM} is missing (apt-get install chromium)")
    folder, _ = shared_experiments(tmp_path_factory)
    return folder / "reports" / COMPARE / "index.html"


def probe(report: Path, tmp: Path, width: int) -> dict:
    page = tmp / f"probe-{width}.html"
    page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    r = chromium(tmp, f"--window-size={width},900", "--dump-dom", page.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert found, r.stderr[-2000:]
    return json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def test_the_browser_renders_tables_images_and_sorts(report, tmp_path):
    seen = probe(report, tmp_path, 1280)
    assert seen["rows"] == len(MODELS) and seen["headers"] >= 10
    assert len(seen["images"]) == 2 + len(MODELS) and all(w > 0 for w in seen["images"])
    # the rows come best first; sorting test loss ascending keeps the best first, descending reverses
    assert seen["ascending"] == seen["first"] and seen["descending"] != seen["first"]
    assert seen["sorted"] == "descending"


def test_readable_on_a_phone(report, tmp_path):
    seen = probe(report, tmp_path, 390)  # headless chromium widens windows to at least 500 px
    assert seen["viewport"] <= 640  # the phone layout (the CSS media query) applies
    assert seen["pageWidth"] <= seen["viewport"]  # wide tables scroll inside their box, not the page
    assert all(w > 0 for w in seen["images"])


@pytest.mark.parametrize("size", ["1280,2400", "390,1600"])
def test_screenshots_are_not_blank(report, tmp_path, size):
    shot = tmp_path / "shot.png"
    r = chromium(tmp_path, f"--window-size={size}", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    im = Image.open(shot)
    assert im.size == tuple(int(x) for x in size.split(","))
    gray = np.asarray(im.convert("L"), dtype=float)
    assert gray.std() > 20  # text, tables and plots, not a blank page
    assert (gray < 200).mean() > 0.02
    assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 100  # colours of the plots
