"""shakespeare_compare: ``lmbench compare`` on Tiny Shakespeare (characters) with the recipes.

Runs ``lmbench compare --data tinyshakespeare --set data.tokenizer=char --models
rnn,lstm,gru,transformer,gpt --quiet`` end to end through the CLI with nothing else set: every
architecture is tuned and trained with its registered recipe (recurrent models the word-LM SGD
recipe with AdamW searched beside it, attention models nanoGPT's AdamW recipe), the budgets scale
with the corpus (one epoch per final run, half an epoch per trial), and the command prints its
adequacy verdicts. Reported, not judged: the wall time, the table (for the README), the best model,
whether the worst is worse than the best at p < 0.05, and the verdicts. ``--smoke`` adds
``--quick --trials 2 --seeds 2``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import common

MODELS = "rnn,lstm,gru,transformer,gpt"


def main() -> None:
    args = common.parse_args(__doc__)
    work = common.setup(args)
    cmd = [str(Path(sys.executable).with_name("lmbench")), "compare", "--data", "tinyshakespeare", "--set",
           "data.tokenizer=char", "--set", "name=shakespeare-compare", "--models", MODELS, "--quiet"]
    if args.smoke:
        cmd += ["--quick", "--trials", "2", "--seeds", "2"]
    common.say(" ".join(cmd))
    out: dict = {}

    def go():
        out["proc"] = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "220"})

    seconds = common.timed(go)
    proc = out["proc"]
    if proc.returncode != 0:
        raise SystemExit(f"compare failed:\n{proc.stdout}\n{proc.stderr}")
    payload = json.loads((work / "reports" / "shakespeare-compare" / "results.json").read_text())
    table = payload["table"]
    worst = max(table, key=lambda r: r["test_loss_mean"])
    separated = worst["p_vs_best"] is not None and worst["p_vs_best"] < 0.05
    rows = [{k: r.get(k) for k in ("model", "test_loss_mean", "test_loss_ci", "test_ppl_mean", "test_accuracy_mean",
                                   "params_non_embedding_mean", "train_tokens_per_sec_mean", "p_vs_best",
                                   "still_improving")} for r in table]
    common.emit(common.result(
        "shakespeare_compare", value=seconds, unit="s", target="- (the table for the README)", passed=None,
        summary=(f"{seconds / 60:.1f} min; best {table[0]['model']} ({table[0]['test_loss_mean']:.4f} nats/char), "
                 f"worst {worst['model']} ({worst['test_loss_mean']:.4f}, p={worst['p_vs_best']}, "
                 f"{'separated' if separated else 'not separated'})" + (" [smoke]" if args.smoke else "")),
        details={"command": " ".join(cmd[1:]), "table": rows, "budgets": payload["meta"].get("budgets"),
                 "adequacy": payload["meta"].get("adequacy", {}).get("lines"), "terminal": proc.stdout[-8000:],
                 "readme": common.readme_section("lmbench " + " ".join(cmd[1:]), proc.stdout[-8000:],
                                                 "(recipes and corpus-scaled budgets, nothing else set) printed:")},
        smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
