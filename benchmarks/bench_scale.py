"""default_scale: the default `lmbench scale` (rnn, lstm, gru, transformer) end to end.

Target: it finishes in <= 15 minutes on a 2-core CPU. Reported beside the time: how many
(architecture, budget) IsoFLOP curves had an interior minimum, the fitted loss exponents, and the
largest deviation of any run's spent compute from its budget.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import common

TARGET_SECONDS = 900
RESULTS = Path(__file__).resolve().parent / "results"
PLOTS = {"IsoFLOP curves": "scale_isoflop.png", "compute-optimal frontier": "scale_frontier.png"}


def save_plots(report: Path) -> list[str]:
    """The report's two scaling plots (inline PNGs, found by their alt text) as files in
    benchmarks/results/, for the README; returns the markdown that shows them."""
    html = report.read_text(encoding="utf-8")
    shown = []
    for alt, name in PLOTS.items():
        found = re.search(r'<img src="data:image/png;base64,([^"]+)"[^>]*alt="' + re.escape(alt) + '"', html)
        if found is None:
            raise SystemExit(f"{report}: no {alt!r} plot")
        (RESULTS / name).write_bytes(base64.b64decode(found.group(1)))
        shown.append(f"![{alt}](benchmarks/results/{name})")
    return shown


def main() -> None:
    args = common.parse_args(__doc__)
    work = common.setup(args)
    cmd = [str(Path(sys.executable).with_name("lmbench")), "scale", "--quiet"]
    if args.smoke:
        cmd += ["--quick", "--models", "rnn,gpt"]
    common.say(" ".join(cmd))
    out: dict = {}

    def go():
        out["proc"] = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "220"}
        )

    seconds = common.timed(go)
    proc = out["proc"]
    if proc.returncode != 0:
        raise SystemExit(f"scale failed:\n{proc.stdout}\n{proc.stderr}")
    payload = json.loads((work / "reports" / "default" / "results.json").read_text())
    optima = payload["optima"]
    fitted = sum(bool(o["fittable"]) for o in optima)
    worst = max(abs(p["spent_ratio"] - 1) for p in payload["points"])
    alphas = {arch: fits["free"]["alpha"] for arch, fits in payload["fits"].items()}
    alpha_text = ", ".join(
        f"{arch} {a['estimate']:.3g}" if a["estimate"] is not None else f"{arch} -"
        for arch, a in alphas.items()
    )
    passed = None if args.smoke else seconds <= TARGET_SECONDS
    plots = [] if args.smoke else save_plots(work / "reports" / "default" / "index.html")
    readme = common.readme_section("lmbench " + " ".join(cmd[1:]), proc.stdout[-6000:], "(the defaults: "
                                   "experiments/scale.yaml) printed:") + "\n" + "\n".join(plots)
    common.emit(
        common.result(
            "default_scale",
            value=seconds,
            unit="s",
            target=f"<= {TARGET_SECONDS} s",
            passed=passed,
            summary=(
                f"{seconds:.0f} s, {len(payload['points'])} runs; {fitted} of {len(optima)} IsoFLOP curves "
                f"with an interior minimum; alpha (free E): {alpha_text}; spend within {worst:.2%} of C"
            ),
            details={
                "command": " ".join(cmd),
                "optima": optima,
                "crossovers": payload["crossovers"],
                "terminal": proc.stdout[-6000:],
                "readme": readme,
            },
            smoke=args.smoke,
        )
    )


if __name__ == "__main__":
    main()
