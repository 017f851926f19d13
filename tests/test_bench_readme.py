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
    path = REPO / "benchmarks" / "results" / "latest.json"
    if not path.is_file():
        pytest.fail("benchmarks/results/latest.json is missing: run `make bench` and commit it")
    return json.loads(path.read_text())


def test_readme_table_is_latest_json():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme == readme_table.with_table(readme, latest_markdown(latest())), (
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
    data = latest()
    data["rows"][0]["result"] = "typed by hand"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme != readme_table.with_table(readme, latest_markdown(data))
