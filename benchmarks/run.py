"""Run lmbench's benchmarks, each in its own process; print a table; write benchmarks/results/.

    .venv/bin/python benchmarks/run.py                  # the benchmarks (what `make bench` runs)
    .venv/bin/python benchmarks/run.py --tier studies   # the three studies (`make bench-studies`)
    .venv/bin/python benchmarks/run.py --smoke          # tiny sizes: checks the scripts (< 2 min)
    .venv/bin/python benchmarks/run.py --only loop_overhead,cli_startup

Two tiers, because they cannot share one time budget: ``bench`` (speed, overhead, memory, scaling,
reliability, the two reproductions, generation; <= 25 min on an idle 2-core CPU, judged on the
run's total) and ``studies`` (the default compare, the Tiny Shakespeare compare with recipes and
the default scale sweep: together longer than that budget, each judged against its own target).
Results: ``benchmarks/results/<name>.json`` per benchmark; a full run of a tier (all its
benchmarks, not ``--smoke``) also writes that tier's ``latest.json|md`` (bench) or
``studies.json|md``: every row of that one run (figure, target, pass/miss, the command that
reproduces it) and the machine. The README's two generated sections come from those files by
``benchmarks/readme_table.py``; a test fails when they disagree, so no figure in the README is
typed by hand.
Everything runs on the CPU, in a scratch folder with its own data, token cache and MLflow store.
The exit code is 1 when a benchmark crashed; a missed target is a result, not an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCHMARKS = {  # name -> script, in the order they run
    "loop_overhead": "bench_loop.py",
    "tracking_overhead": "bench_tracking.py",
    "throughput": "bench_throughput.py",
    "memory": "bench_memory.py",
    "nanogpt_reference": "bench_reference.py",
    "word_lm_reference": "bench_wordlm.py",
    "cli_startup": "bench_cli.py",
    "workers_scaling": "bench_workers.py",
    "distributed_scaling": "bench_distributed.py",
    "load": "bench_load.py",
    "search_efficiency": "bench_search.py",
    "default_compare": "bench_compare.py",
    "shakespeare_compare": "bench_shakespeare_compare.py",
    "default_scale": "bench_scale.py",
    "generation": "bench_generate.py",
}
STUDIES = ("default_compare", "shakespeare_compare", "default_scale")
TIERS = {"bench": [n for n in BENCHMARKS if n not in STUDIES], "studies": list(STUDIES)}
TIER_FILE = {"bench": "latest", "studies": "studies"}  # results/<this>.json|md
TIER_COMMAND = {"bench": "make bench", "studies": "make bench-studies"}
TIME_TARGET_MIN = {"bench": 25}  # the whole tier's wall time, on an idle 2-core CPU


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    u = platform.uname()
    return {
        "cpu": cpu or u.machine, "uname": f"{u.system} {u.release} {u.machine}", "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average_at_start": round(os.getloadavg()[0], 2),  # > ~1 on 2 cores: figures are slowed
    }


def run_one(name: str, root: Path, env: dict[str, str], smoke: bool) -> dict:
    """Run one benchmark script in a fresh process; its last stdout line is its JSON result."""
    work = root / name
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / BENCHMARKS[name]), "--workdir", str(work)] + (["--smoke"] if smoke else [])
    print(f"[{name}]", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:  # progress (stderr) goes straight to the terminal
        proc = subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.PIPE, text=True,
                              timeout=600 if smoke else 3600)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"exit code {proc.returncode}, no result (its stderr is above)")
        record = json.loads(lines[-1])
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        record = common.result(name, value=None, unit="", target="", passed=None,
                               summary=f"ERROR: {e}", details={}, smoke=smoke)
        record["error"] = True
    record["seconds"] = round(time.perf_counter() - t0, 1)
    return record


def status(record: dict) -> str:
    if record.get("error"):
        return "ERROR"
    if record["passed"] is None:
        return "not judged"
    return "pass" if record["passed"] else "FAIL"


def print_table(records: list[dict], info: dict, smoke: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    title = "lmbench benchmarks" + (" (SMOKE: tiny sizes, numbers not meaningful)" if smoke else "")
    table = Table(title=title, caption=f"{info['cpu']}, {info['cpu_count']} CPUs, torch {info['torch']} "
                                       f"({info['torch_threads']} threads), {info['date']}")
    for col in ("benchmark", "result", "target", "status", "time"):
        table.add_column(col, overflow="fold")
    colors = {"pass": "green", "FAIL": "red", "ERROR": "bold red"}
    for r in records:
        s = status(r)
        table.add_row(r["name"], r["summary"], r["target"], f"[{colors.get(s, 'yellow')}]{s}[/]", f"{r['seconds']:.0f}s")
    Console(width=None if sys.stdout.isatty() else 150).print(table)


def row_of(record: dict) -> dict:
    """One row of latest.json: what was measured, against what, and how to measure it again."""
    return {"name": record["name"], "result": record["summary"], "value": record.get("value"),
            "unit": record.get("unit", ""), "target": record["target"], "status": status(record),
            "seconds": record["seconds"],
            "command": f".venv/bin/python benchmarks/run.py --only {record['name']}",
            "readme": (record.get("details") or {}).get("readme")}  # its README section, if any


def write_latest(tier: str, records: list[dict], info: dict, seconds: float) -> Path:
    """A tier's latest.json|md (studies.json|md): one full run on one machine, the only source of
    its README section."""
    info = {**info, "load_average_at_end": round(os.getloadavg()[0], 2)}
    latest = {"machine": info, "total_seconds": round(seconds, 1), "command": TIER_COMMAND[tier],
              "time_target_minutes": TIME_TARGET_MIN.get(tier), "rows": [row_of(r) for r in records]}
    path = RESULTS / f"{TIER_FILE[tier]}.json"
    path.write_text(json.dumps(latest, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(latest_markdown(latest))
    return path


def total_time(latest: dict) -> str:
    """'the whole run took 21.0 min (target <= 25 min: pass)'; no verdict where there is no target."""
    minutes, target = latest["total_seconds"] / 60, latest.get("time_target_minutes")
    verdict = f" (target ≤ {target} min: {'pass' if minutes <= target else 'miss'})" if target else ""
    return f"the whole run took {minutes:.1f} min{verdict}"


def latest_markdown(latest: dict) -> str:
    """A README section (machine line, table, what the benchmarks printed) from a tier's results file."""
    m = latest["machine"]
    lines = [f"Measured by `{latest['command']}` on {m['cpu']}, {m['cpu_count']} CPUs, PyTorch {m['torch']} "
             f"({m['torch_threads']} threads), {m['date'][:10]}; {total_time(latest)}; load average {m.get('load_average_at_start', '?')} "
             f"at the start, {m.get('load_average_at_end', '?')} at the end (2 cores: above ~1, other "
             "processes shared the CPU and timings are slower than on an idle machine).", "",
             "| benchmark | result | target | status | reproduce |", "|---|---|---|---|---|"]
    for row in latest["rows"]:
        cells = [row["name"], row["result"], row["target"], row["status"], f"`{row['command']}`"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    for row in latest["rows"]:  # what a benchmark printed, for the README (e.g. a compare's table)
        if row.get("readme"):
            lines += ["", f"#### `{row['name']}`", "", row["readme"].rstrip("\n")]
    return "\n".join(lines) + "\n"


def write_summary(info: dict) -> Path:
    """summary.md from every result in results/ (a later --only run updates its own rows)."""
    rows = []
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if path.is_file():
            r = json.loads(path.read_text())
            smoke = " (smoke)" if r.get("smoke") else ""
            rows.append(f"| {name}{smoke} | {r['summary']} | {r['target']} | {status(r)} | {r['machine']['date'][:10]} |")
    md = [
        "## Benchmark results",
        "",
        f"Machine: {info['cpu']} ({info['uname']}), {info['cpu_count']} CPUs, PyTorch {info['torch']} "
        f"with {info['torch_threads']} threads, Python {info['python']}; run {info['date']}. "
        "Everything on the CPU; `make bench` (see `benchmarks/README.md`).",
        "",
        "| benchmark | result | target | status | date |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    out = RESULTS / "summary.md"
    out.write_text("\n".join(md))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description="Run lmbench's benchmarks (each in its own process).")
    p.add_argument("--tier", choices=[*TIERS, "all"], default="bench",
                   help="bench (default, `make bench`), studies (`make bench-studies`) or all: one after the other")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the scripts, not the numbers")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (printed at the end)")
    args = p.parse_args()
    tiers = list(TIERS) if args.tier == "all" else [args.tier]
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            p.error(f"unknown benchmark(s) {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
        return run_tier(None, names, args)
    return max(run_tier(tier, TIERS[tier], args) for tier in tiers)


def run_tier(tier: str | None, names: list[str], args: argparse.Namespace) -> int:
    """Run ``names``; a whole tier (``tier`` given, not --smoke) also writes its results file."""
    info = machine()
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="lmbench-bench-"))
    env = {**os.environ, **common.bench_env(root)}  # read by common.setup in every benchmark
    common.stage_data(Path(env["LMBENCH_DATA_DIR"]))  # once for all; benchmarks never download
    RESULTS.mkdir(exist_ok=True)
    records = []
    try:
        for name in names:
            record = run_one(name, root, env, args.smoke)
            record["machine"] = info
            (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
            records.append(record)
    finally:
        if args.keep:
            print(f"scratch folder kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(records, info, args.smoke)
    summary = write_summary(info)
    total = time.perf_counter() - started
    print(f"results: {RESULTS}/<name>.json, {summary}")
    if tier and not args.smoke:
        path = write_latest(tier, records, info, total)
        print(f"one full run of the {tier} tier: {path} (benchmarks/readme_table.py puts it in the README)")
    target = TIME_TARGET_MIN.get(tier) if tier else None
    print(f"total time: {total / 60:.1f} min" + (f" (target ≤ {target} min on an idle 2-core CPU)" if target else ""))
    return 1 if any(r.get("error") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
