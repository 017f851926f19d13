"""nanogpt_reference: the full shakespeare_char_gpt run through the real CLI vs nanoGPT's CPU numbers.

Runs ``lmbench train experiments/shakespeare_char_gpt.yaml --quiet --device cpu --tracking-uri
sqlite:///<scratch>/mlflow.db`` (2000 steps, its periodic evals included) after tokenising the
data once, so the timed command does not pay the one-off tokenisation. Reported times:

* ``train_wall_s`` (judged): from the MLflow run's creation to the last logged training step:
  the steps plus the periodic evals and checkpoints, i.e. what nanoGPT's figure covers;
* ``steps_s``: ``TrainResult.seconds`` (optimizer steps only, no evals): the run's
  ``train_seconds`` metric, or where that is not logged the value the CLI prints;
* ``command_wall_s``: the whole command (imports, cached data, final full-split evaluation on
  val and test, artifacts).

Reference: nanoGPT's README, section "I only have a macbook (or other cheap computer)": this
exact configuration (``--device=cpu --compile=False --eval_iters=20 --block_size=64
--batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
--dropout=0.0``) "runs in about ~3 minutes, but gets us a loss of only 1.88". Targets: training
wall time below 100 s (lmbench's own, stricter than the README's ~180 s) and final validation
loss <= 1.88 + 0.05. The losses are comparable, not identical: nanoGPT's val split is the last
10% of the text (estimated on 20 random batches), lmbench's is the 90-95% slice (the full slice,
with the best weights by periodic validation).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import common

NANOGPT_SECONDS = 180  # "~3 minutes"
NANOGPT_VAL_LOSS = 1.88
TARGET_SECONDS = 100
TARGET_VAL_LOSS = NANOGPT_VAL_LOSS + 0.05
# the CLI's result title "run <id>  (<reason>, N steps, T tokens, S s, R tok/s)"; rich wraps it
# to the table's width, so it is matched with the whitespace collapsed
RESULT_LINE = re.compile(r"run (\w+) \((\w+), ([\d,]+) steps, ([\d,]+) tokens, ([\d.]+)s, ([\d,]+) tok/s\)")


def parse_result(stdout: str) -> dict | None:
    m = RESULT_LINE.search(" ".join(stdout.split()))
    if m is None:
        return None
    return {"run_id": m.group(1), "steps_s": float(m.group(5)),
            "tokens_per_sec": float(m.group(6).replace(",", ""))}


def main() -> None:
    args = common.parse_args(__doc__)
    work = common.setup(args)
    steps = 100 if args.smoke else None

    from mlflow import MlflowClient

    from lmbench.data import prepare_data

    t0 = time.perf_counter()
    prepare_data(common.bench_spec().data)  # tokenise once, outside the timed command
    prep_s = time.perf_counter() - t0

    uri = f"sqlite:///{work / 'reference.db'}"
    lmbench = Path(sys.executable).with_name("lmbench")
    cmd = [str(lmbench), "train", str(common.SPEC_PATH), "--quiet", "--device", "cpu", "--tracking-uri", uri]
    if steps:
        cmd += ["--steps", str(steps), "--set", "train.eval_interval=50"]
    common.say(" ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    command_wall = time.perf_counter() - t0
    sys.stderr.write(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"lmbench train failed with exit code {proc.returncode}")
    printed = parse_result(proc.stdout)
    if printed is None:
        common.say("warning: the CLI's result line was not found; steps_s is unknown")

    client = MlflowClient(uri)
    if printed:
        run = client.get_run(printed["run_id"])
    else:  # the store is private to this benchmark: its newest run is ours
        exp = client.get_experiment_by_name(common.bench_spec().experiment_name)
        run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])[0]
    run_id = run.info.run_id
    last_train = max(client.get_metric_history(run_id, "train_loss"), key=lambda x: x.step)
    train_wall = (last_train.timestamp - run.info.start_time) / 1e3
    m = run.data.metrics
    val_loss = m["final_val_loss"]
    # nanoGPT's val split is the last 10% of the text = our val (90-95%) + test (95-100%) slices
    last10 = (m["final_val_loss"] * m["final_val_tokens"] + m["test_loss"] * m["test_tokens"]) / (
        m["final_val_tokens"] + m["test_tokens"])
    # TrainResult.seconds: the run's `train_seconds` metric where lmbench logs it, else the printed one
    steps_s = run.data.metrics.get("train_seconds", printed["steps_s"] if printed else float("nan"))
    judged = not args.smoke
    passed = (train_wall < TARGET_SECONDS and val_loss <= TARGET_VAL_LOSS) if judged else None
    common.emit(common.result(
        "nanogpt_reference", value=train_wall, unit="s",
        target=f"< {TARGET_SECONDS} s and val loss <= {TARGET_VAL_LOSS:.2f} (nanoGPT: ~{NANOGPT_SECONDS} s, {NANOGPT_VAL_LOSS})",
        passed=passed,
        summary=(f"{int(run.data.params['train.budget.steps'])} steps: train {train_wall:.1f}s "
                 f"(steps only {steps_s:.1f}s, command {command_wall:.1f}s), final val loss {val_loss:.3f}, "
                 f"last-10% loss (nanoGPT's val split) {last10:.3f}"
                 + ("" if judged else " [smoke: not judged]")),
        details={
            "run_id": run_id, "train_wall_s": train_wall, "steps_s": steps_s, "command_wall_s": command_wall,
            "final_val_loss": val_loss, "test_loss": run.data.metrics.get("test_loss"),
            "last_10pct_loss": last10,
            "printed": printed, "tokenise_once_s": prep_s,
            "time_ok": train_wall < TARGET_SECONDS, "loss_ok": val_loss <= TARGET_VAL_LOSS,
            "reference": {"source": "nanoGPT README, 'I only have a macbook (or other cheap computer)'",
                          "seconds": NANOGPT_SECONDS, "val_loss": NANOGPT_VAL_LOSS},
            "command": cmd,
        },
        smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
