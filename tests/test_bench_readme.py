"""The README's benchmark table is exactly what the last full `make bench` wrote (latest.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import readme_table  # noqa: E402
from run import BENCHMARKS, latest_markdown  # noqa: E402


def latest() -> dict:
    if not readme_table.LATEST.is_file():
        pytest.skip("no full `make bench` run is recorded (benchmarks/results/latest.json)")
    return json.loads(readme_table.LATEST.read_text())


def test_readme_table_is_latest_json():
    """Whatever stands between the markers is generated: latest.json's table, or (no run
    recorded) the line saying so - never figures typed by hand."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme == readme_table.with_table(readme, readme_table.table()), (
        "README.md's benchmark table is not benchmarks/results/latest.json: run "
        "`.venv/bin/python benchmarks/readme_table.py`")


def test_latest_json_is_one_full_run():
    data = latest()
    assert [row["name"] for row in data["rows"]] == list(BENCHMARKS)
    for key in ("cpu", "cpu_count", "torch", "date"):
        assert data["machine"][key]
    for row in data["rows"]:
        assert row["status"] in ("pass", "FAIL", "not judged", "ERROR"), row
        assert row["command"].endswith(f"--only {row['name']}")


def test_the_check_sees_a_hand_typed_figure():
    """A README whose table differs from the run's (one figure typed over) fails the check."""
    run = {"machine": {"cpu": "cpu", "cpu_count": 2, "torch": "2", "torch_threads": 2, "date": "2026-12-01"},
           "total_seconds": 60, "command": "make bench",
           "rows": [{"name": "cli_startup", "result": "0.2 s", "target": "< 0.5 s", "status": "pass",
                     "command": ".venv/bin/python benchmarks/run.py --only cli_startup"}]}
    readme = readme_table.with_table("intro\n" + readme_table.BEGIN + "\n" + readme_table.END + "\n",
                                     latest_markdown(run))
    assert readme == readme_table.with_table(readme, latest_markdown(run))
    run["rows"][0]["result"] = "0.1 s"
    assert readme != readme_table.with_table(readme, latest_markdown(run))


def test_a_benchmark_section_follows_the_table():
    """What a benchmark printed for the README (its ``details.readme``) is set below the table."""
    row = {"name": "default_compare", "result": "1 s", "target": "t", "status": "pass",
           "command": ".venv/bin/python benchmarks/run.py --only default_compare",
           "readme": "`lmbench compare` printed:\n\n```\nTABLE\n```\n"}
    plain = {**row, "name": "cli_startup", "readme": None}
    machine = {"cpu": "cpu", "cpu_count": 2, "torch": "2", "torch_threads": 2, "date": "2026-12-01"}
    text = latest_markdown({"machine": machine, "total_seconds": 60, "command": "make bench", "rows": [row, plain]})
    table_end = text.index("| cli_startup |")
    assert text.index("#### `default_compare`") > table_end and "```\nTABLE\n```" in text
    assert "#### `cli_startup`" not in text


def test_every_image_the_readme_shows_is_committed():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    import re

    for path in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        assert (REPO / path).is_file(), f"README.md shows {path}, which is not in the repository"
