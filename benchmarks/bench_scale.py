"""default_scale: the default `lmbench scale` (rnn, lstm, gru, transformer) end to end.

Target: it finishes in <= 15 minutes on a 2-core CPU. Reported beside the time: how many
(architecture, budget) IsoFLOP curves had an interior minimum, the fitted loss exponents, and the
largest deviation of any run's spent compute from its budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import common

TARGET_SECONDS = 900


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
            cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "160"}
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
            },
            smoke=args.smoke,
        )
    )


if __name__ == "__main__":
    main()
