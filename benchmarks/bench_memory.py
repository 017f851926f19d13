"""memory: peak RSS of preparing a ~100 MB corpus with the char tokenizer and training on it.

The corpus is Tiny Shakespeare repeated until it reaches the size (~100 MB: about 80 copies),
every line of copy ``c`` prefixed with ``c`` (``"017 "``) so the copies differ; it is written to
the scratch folder once. A fresh child process (this script with ``--child``) then runs
``prepare_data`` (char tokenizer, an empty token cache, so it really tokenises) and
``lmbench.train.train`` for a few hundred steps of the shakespeare_char_gpt model with a real
MLflow tracker, final evaluation and artifacts included (the final evaluation capped at
``FINAL_EVAL_TOKENS`` per split: it streams batches, so the full 5M-token splits would add
minutes and no memory). The peak RSS is the child's ``ru_maxrss`` read with
``getrusage(RUSAGE_CHILDREN)`` after it exits. Also reported: tokenisation time, loop time and the
child's total wall time. Target: peak RSS < 2 GB (one run: the figure hardly varies).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import common

TARGET_MB = 2000  # "< 2 GB"
FINAL_EVAL_TOKENS = 500_000


def kib_to_mb(kib: int) -> float:
    """``ru_maxrss`` is in KiB on Linux (bytes on macOS)."""
    return kib * (1 if sys.platform == "darwin" else 1024) / 1e6


def build_corpus(path: Path, target_bytes: int) -> dict:
    """Write Tiny Shakespeare repeated to ``target_bytes`` with per-copy line prefixes, once."""
    lines = common.shakespeare_source().read_text(encoding="utf-8").splitlines(keepends=True)
    if not path.is_file():
        tmp = path.with_suffix(".part")
        size, copies = 0, 0
        with open(tmp, "w", encoding="utf-8") as f:
            while size < target_bytes:
                chunk = "".join(f"{copies:03d} {line}" for line in lines)
                f.write(chunk)
                size += len(chunk.encode("utf-8"))
                copies += 1
        os.replace(tmp, path)
    return {"path": str(path), "bytes": path.stat().st_size}


def child(corpus: Path, steps: int) -> None:
    """Runs in the measured process: prepare the data, train, print one JSON line."""
    from lmbench.data import prepare_data
    from lmbench.tracking.tracker import Tracker
    from lmbench.training.run import train

    spec = common.bench_spec(f"data.source={json.dumps(str(corpus))}", "data.tokenizer=char",
                             f"train.budget={{steps: {steps}}}", "name=bench-memory",
                             f"train.final_eval_tokens={FINAL_EVAL_TOKENS}")
    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    data = prepare_data(spec.data)
    tokenise_s = time.perf_counter() - t0
    rss_after_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracker = Tracker(spec.experiment_name, os.environ["MLFLOW_TRACKING_URI"])
    t1 = time.perf_counter()
    res = train(spec, tracker=tracker, data=data, quiet=True)
    out = {
        "tokenise_s": tokenise_s, "train_call_s": time.perf_counter() - t1, "loop_s": res.seconds,
        "steps": res.steps, "final_val_loss": res.final.get("final_val_loss"),
        "n_tokens": {s: int(data.stats[s]["n_tokens"]) for s in ("train", "val", "test")},
        "vocab_size": data.vocab_size, "peak_rss_after_imports_mb": kib_to_mb(rss_after_imports),
        "peak_rss_after_prepare_mb": kib_to_mb(rss_after_data),
    }
    print(json.dumps(out), flush=True)


def main() -> None:
    def options(p):
        p.add_argument("--steps", type=int, default=300, help="training steps (smoke: 20)")
        p.add_argument("--child", type=Path, help="internal: be the measured process, on this corpus")

    args = common.parse_args(__doc__, options)
    work = common.setup(args)
    if args.child:
        child(args.child, args.steps)
        return
    steps = 20 if args.smoke else args.steps
    target_bytes = (2 if args.smoke else 100) * 10**6

    t0 = time.perf_counter()
    corpus = build_corpus(work / f"corpus-{target_bytes // 10**6}MB.txt", target_bytes)
    common.say(f"corpus {corpus['bytes'] / 1e6:.1f} MB written in {time.perf_counter() - t0:.1f}s")

    env = {**os.environ, "LMBENCH_BENCH_ROOT": str(work / "child")}  # an empty token cache: tokenise for real
    cmd = [sys.executable, __file__, "--child", corpus["path"], "--steps", str(steps),
           "--workdir", str(work / "child")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the measured child failed with exit code {proc.returncode}")
    peak_mb = kib_to_mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    inner = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    common.emit(common.result(
        "memory", value=peak_mb, unit="MB", target=f"< {TARGET_MB:,} MB peak RSS",
        passed=peak_mb < TARGET_MB,
        summary=(f"peak RSS {peak_mb:,.0f} MB on a {corpus['bytes'] / 1e6:.0f} MB corpus "
                 f"({inner['peak_rss_after_imports_mb']:,.0f} MB after imports); tokenising "
                 f"{inner['tokenise_s']:.1f}s; train() {inner['train_call_s']:.0f}s of which "
                 f"{steps} steps {inner['loop_s']:.0f}s, the rest mostly the final eval "
                 f"({FINAL_EVAL_TOKENS:,} tokens per split)"),
        details={"corpus": corpus, "steps": steps, "child_wall_s": wall, "peak_rss_mb": peak_mb, **inner},
        smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
