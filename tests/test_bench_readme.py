"""The README's generated sections are exactly what the last full `make bench` (latest.json) and
`make bench-studies` (studies.json) wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import readme_table  # noqa: E402
from run import BENCHMARKS, TIER_COMMAND, TIERS, latest_markdown, total_time  # noqa: E402


def recorded(tier: str) -> dict:
    path = readme_table.results_file(tier)
    if not path.is_file():
        pytest.skip(f"no full `{TIER_COMMAND[tier]}` run is recorded ({path})")
    return json.loads(path.read_text())


@pytest.mark.parametrize("tier", list(TIERS))
def test_readme_sections_are_the_results_files(tier):
    """Whatever stands between a tier's markers is generated: its results file's table, or (no
    run recorded) the line saying so - never figures typed by hand."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme == readme_table.with_table(readme, readme_table.table(tier), tier), (
        f"README.md's {tier} section is not {readme_table.results_file(tier)}: run "
        "`.venv/bin/python benchmarks/readme_table.py`")


@pytest.mark.parametrize("tier", list(TIERS))
def test_each_results_file_is_one_full_run_of_its_tier(tier):
    data = recorded(tier)
    assert [row["name"] for row in data["rows"]] == TIERS[tier]
    assert data["command"] == TIER_COMMAND[tier]
    for key in ("cpu", "cpu_count", "torch", "date"):
        assert data["machine"][key]
    for row in data["rows"]:
        assert row["status"] in ("pass", "FAIL", "not judged", "ERROR"), row
        assert row["command"].endswith(f"--only {row['name']}")


def test_the_tiers_hold_every_benchmark_once():
    assert sorted(n for names in TIERS.values() for n in names) == sorted(BENCHMARKS)


def test_the_bench_tier_is_judged_on_its_total_time():
    run = {"total_seconds": 26 * 60, "time_target_minutes": 25}
    assert total_time(run) == "the whole run took 26.0 min (target ≤ 25 min: miss)"
    assert total_time({**run, "total_seconds": 20 * 60}).endswith("(target ≤ 25 min: pass)")
    assert total_time({"total_seconds": 60, "time_target_minutes": None}) == "the whole run took 1.0 min"


def test_the_check_sees_a_hand_typed_figure():
    """A README whose table differs from the run's (one figure typed over) fails the check."""
    run = {"machine": {"cpu": "cpu", "cpu_count": 2, "torch": "2", "torch_threads": 2, "date": "2026-12-01"},
           "total_seconds": 60, "command": "make bench",
           "rows": [{"name": "cli_startup", "result": "0.2 s", "target": "< 0.5 s", "status": "pass",
                     "command": ".venv/bin/python benchmarks/run.py --only cli_startup"}]}
    begin, end = readme_table.MARKERS["bench"]
    readme = readme_table.with_table("intro\n" + begin + "\n" + end + "\n",
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


@pytest.mark.parametrize(("tier", "stem", "target"), [("bench", "latest", 25), ("studies", "studies", None)])
def test_a_tier_run_writes_its_own_results_file(tier, stem, target, tmp_path, monkeypatch):
    """What `run.py --tier T` writes at the end of a full run: T's file, command and time target."""
    import run

    monkeypatch.setattr(run, "RESULTS", tmp_path)
    records = [{"name": n, "summary": "s", "target": "t", "passed": True, "seconds": 1.0} for n in TIERS[tier]]
    machine = {"cpu": "cpu", "cpu_count": 2, "torch": "2", "torch_threads": 2, "date": "2026-12-01"}
    path = run.write_latest(tier, records, machine, 60.0)
    assert path == tmp_path / f"{stem}.json" and (tmp_path / f"{stem}.md").is_file()
    data = json.loads(path.read_text())
    assert data["command"] == TIER_COMMAND[tier] and data["time_target_minutes"] == target
    assert [r["name"] for r in data["rows"]] == TIERS[tier]
    assert (target is not None) == ("target ≤" in (tmp_path / f"{stem}.md").read_text())
