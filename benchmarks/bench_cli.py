"""cli_startup: wall time of ``lmbench --help`` in fresh processes (median of 5, after one untimed run).

For scale, the same is measured for a bare ``python -c pass``, alternating with it run by run.
Target: median < 0.5 s (the summary gives the range of the 5).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import common

TARGET_SECONDS = 0.5


def wall(cmd: list[str]) -> float:
    def go():
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    return common.timed(go)


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    runs = 3 if args.smoke else 5
    lmbench = [str(Path(sys.executable).with_name("lmbench")), "--help"]
    python = [sys.executable, "-c", "pass"]
    wall(lmbench)  # warm the page cache
    cli, bare = common.interleaved(runs, lambda: wall(lmbench), lambda: wall(python), "cli")
    med = statistics.median(cli)
    common.emit(common.result(
        "cli_startup", value=med, unit="s", target=f"< {TARGET_SECONDS} s", passed=med < TARGET_SECONDS,
        summary=(f"lmbench --help {common.span(common.spread([1e3 * x for x in cli]), '{:.0f}')} ms "
                 f"(python -c pass {1e3 * statistics.median(bare):.0f} ms)"),
        details={"runs_s": cli, "python_bare_s": bare, "median_s": med, "command": lmbench},
        smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
