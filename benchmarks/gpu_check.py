"""gpu_check: lmbench's CUDA paths on one GPU, end to end, in about 5 minutes (``make gpu-check``).

Every part runs lmbench's own code:

1. Training throughput through the real loop (``Trainer.run``, driven in segments by
   ``common.run_more`` as the other benchmarks do): ``gpt`` 12 layers x 768 wide, 12 heads,
   context 1024, batch 16 (GPT-2 small's shape, on a small vocabulary) with
   ``train.precision=bf16`` and ``train.compile=true``; ``lstm`` 2 x 1024 (cuDNN), batch 64 x 256,
   in bf16. Tokens/s are measured after warm-up steps, so compilation is excluded (the first step,
   which compiles, is reported on its own). Model FLOPs utilisation = ``model.flops_per_token(T)``
   (6 x matmul weights + PaLM's attention term 12 x layers x T x width) x tokens/s / the device's
   dense bf16 peak from :data:`PEAKS`. A device not in that table is "unknown", its MFU null.
   Target: GPT MFU >= 40% in bf16 on an H100/H200-class device.
2. Cached generation: greedy decoding of 256 tokens from a 1-token prompt on the trained GPT, with
   and without its key/value cache (``lmbench.generation.decoding.decode``): tokens/s, the
   uncached/cached time ratio, and whether both outputs are identical.
3. ``lmbench compare --quick --devices all --workers 2`` through the CLI in a scratch folder with
   its own SQLite MLflow store: exit code, wall time, and the device and precision tags of its runs.

If bf16 + compile fails, GPT is trained again without compile (and LSTM in fp32 if bf16 fails), so
the other figures still come back; the failure is recorded and the check fails.

Data: Tiny Shakespeare (characters) when a local copy is found where the other benchmarks look
(``../shared/data/tinyshakespeare``, ``$LMBENCH_BENCH_SHAKESPEARE``), else the embedded synthetic
corpus (1M tokens). Output: a table on stdout, progress on stderr, the record in
``benchmarks/results/gpu_check.json`` and at ``--out PATH``. Exit code 0: every part ran and its
checks held (a missed MFU target is a result, not an error); 1: a part crashed or a check failed;
2: no CUDA device (one line on stderr, nothing run or written).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import common

RESULTS = common.REPO / "benchmarks" / "results" / "gpu_check.json"
MFU_TARGET = 0.40
SYNTHETIC_TOKENS = 1_000_000  # enough that a 16 x 1024 batch still has ~55 batches per epoch

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's datasheets, which print
# the sparse figure first (H100 SXM "1,979*" = 2 x 989). Matched against the CUDA device name,
# lowercased, without "nvidia " and "geforce "; the first match wins, so specific forms come first.
# Left out on purpose: the A10G (no NVIDIA datasheet; secondary sources say ~70, not the A10's
# 125) and every MIG slice (a fraction of the SMs), so their MFU is null rather than a guess.
PEAKS: tuple[tuple[str, str, float, bool], ...] = (  # (pattern, class, TFLOP/s, H100/H200 class)
    (r"^h100 pcie\b", "H100 PCIe", 756.0, True),
    (r"^h100 nvl\b", "H100 NVL", 835.0, True),
    (r"^h100 (sxm\w*|\d+gb hbm3)\b", "H100 SXM", 989.0, True),  # SXM reports "H100 80GB HBM3"
    (r"^h200 nvl\b", "H200 NVL", 835.0, True),
    (r"^h200\b", "H200", 989.0, True),
    (r"^gh200\b", "GH200", 989.0, True),
    (r"^a100\b", "A100", 312.0, False),  # "A100-SXM4-80GB", "A100 80GB PCIe", "A100-PCIE-40GB"
    (r"^l40s$", "L40S", 362.0, False),
    (r"^l4$", "L4", 121.0, False),
    (r"^a10$", "A10", 125.0, False),
    (r"^rtx 4090$", "RTX 4090", 165.2, False),  # bf16 with fp32 accumulate: half GeForce rate
)

GPT = {"n_layers": 12, "n_heads": 12, "d_model": 768, "d_ff": 3072, "dropout": 0.0,
       "max_len": 1024, "positions": "learned", "tie_weights": True, "bias": False}
LSTM = {"d_embed": 1024, "d_model": 1024, "n_layers": 2, "dropout": 0.0, "tie_weights": True}
SIZES = {  # per part: model config, batch shape, lr, warm-up steps, timed segments x steps
    "full": {
        "gpt": {"config": GPT, "batch": 16, "seq_len": 1024, "lr": 6e-4, "warmup": 10,
                "segments": 3, "steps": 40},
        "lstm": {"config": LSTM, "batch": 64, "seq_len": 256, "lr": 1e-3, "warmup": 5,
                 "segments": 3, "steps": 40},
        "generation": {"tokens": 256, "pairs": 3},
    },
    "smoke": {  # checks the script, not the numbers
        "gpt": {"config": {**GPT, "n_layers": 2, "n_heads": 4, "d_model": 128, "d_ff": 512,
                           "max_len": 128}, "batch": 4, "seq_len": 128, "lr": 1e-3, "warmup": 2,
                "segments": 2, "steps": 3},
        "lstm": {"config": {**LSTM, "d_embed": 128, "d_model": 128, "n_layers": 1}, "batch": 4,
                 "seq_len": 64, "lr": 1e-3, "warmup": 2, "segments": 2, "steps": 3},
        "generation": {"tokens": 32, "pairs": 1},
    },
}
# (precision, compile) in order of preference: a fallback keeps the other figures coming
GPT_ATTEMPTS = (("bf16", True), ("bf16", False))
LSTM_ATTEMPTS = (("bf16", False), ("fp32", False))


# ---------------------------------------------------------------------------------------------
# pure parts: peak lookup, MFU, verdict, output comparison


def normalise_device_name(name: str) -> str:
    n = " ".join(name.lower().split())
    for prefix in ("nvidia ", "geforce "):
        n = n.removeprefix(prefix)
    return n


def lookup_peak(name: str) -> dict[str, Any]:
    """The device class and dense bf16 peak (TFLOP/s) of a CUDA device name, or "unknown"/None."""
    n = normalise_device_name(name)
    if "mig" not in n.split():
        for pattern, label, tflops, hopper in PEAKS:
            if re.search(pattern, n):
                return {"device_class": label, "peak_bf16_tflops": tflops, "h100_class": hopper}
    return {"device_class": "unknown", "peak_bf16_tflops": None, "h100_class": False}


def mfu(flops_per_token: float, tokens_per_s: float | None,
        peak_tflops: float | None) -> float | None:
    """Achieved model FLOP/s over the peak; None when the peak (or the throughput) is unknown."""
    if peak_tflops is None or not tokens_per_s:
        return None
    return flops_per_token * tokens_per_s / (peak_tflops * 1e12)


def mfu_verdict(value: float | None, peak: dict[str, Any], precision: str | None) -> dict[str, Any]:
    """pass/miss of the MFU target, or verdict None with the reason it is not judged."""
    out: dict[str, Any] = {"target": f"gpt MFU >= {MFU_TARGET:.0%} in bf16 on an H100/H200-class "
                                     "device", "verdict": None, "reason": ""}
    if not peak["h100_class"]:
        out["reason"] = f"not judged: device class {peak['device_class']} is not H100/H200"
    elif precision != "bf16":
        out["reason"] = f"not judged: gpt trained in {precision}, not bf16"
    elif value is None:
        out["reason"] = "not judged: gpt did not train"
    else:
        out["verdict"] = "pass" if value >= MFU_TARGET else "miss"
    return out


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first position where two token lists differ (None when they are equal)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


# ---------------------------------------------------------------------------------------------
# the device and the machine


def cuda_missing() -> str | None:
    """Why this cannot run (one line), or None when a CUDA device is there."""
    import warnings

    import torch

    with warnings.catch_warnings():  # a broken driver warns on stderr: the message below says it
        warnings.simplefilter("ignore")
        available = torch.cuda.is_available()
    if available:
        return None
    if torch.version.cuda is None:  # the usual cause on a GPU machine: a CPU-only wheel
        return (f"no CUDA: torch {torch.__version__} is a CPU-only build (on a GPU machine, "
                "install a CUDA build, e.g. make setup "
                "TORCH_INDEX=https://download.pytorch.org/whl/cu128)")
    return (f"no CUDA device visible to torch {torch.__version__} (CUDA {torch.version.cuda}); "
            "run `make gpu-check` on a machine with a GPU")


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def device_info(dev) -> dict[str, Any]:
    import torch

    if dev.type != "cuda":
        return {"name": str(dev), **lookup_peak(str(dev))}
    p = torch.cuda.get_device_properties(dev)
    return {"name": p.name, **lookup_peak(p.name), "capability": f"{p.major}.{p.minor}",
            "memory_gib": round(p.total_memory / 2**30, 1), "sm_count": p.multi_processor_count,
            "count": torch.cuda.device_count()}


def environment() -> dict[str, Any]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    import lmbench

    def pkg(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    cc = os.environ.get("CC")
    compiler = (shutil.which(cc) if cc else None) or shutil.which("cc") or shutil.which("gcc")
    return {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": pkg("triton"), "lmbench": lmbench.__version__, "git_sha": _run_quiet(
            ["git", "-C", str(common.REPO), "rev-parse", "--short", "HEAD"]),
        # torch.compile's Triton builds a small C launcher: no compiler means no compile
        "c_compiler": compiler,
        "driver": _run_quiet(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
        "host": platform.node(), "cpu_count": os.cpu_count(),
    }


def _run_quiet(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text.splitlines()[0] if out.returncode == 0 and text else None


def release_memory() -> None:
    """Drop compiled graphs and cached blocks, so the next part starts from an empty device."""
    import torch

    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# training through the real loop


def spec_overrides(arch: str, source: str, dev, size: dict, precision: str,
                   compiled: bool) -> list[str]:
    """``--set`` overrides of the built-in spec: no evaluation or checkpoint inside the window."""
    if source == "tinyshakespeare":
        data = ["data.source=tinyshakespeare", "data.tokenizer=char"]
    else:
        data = ["data.source=synthetic", f"data.size={SYNTHETIC_TOKENS}"]
    model = [f"model.config.{k}={json.dumps(v)}" for k, v in size["config"].items()]
    never = common.NEVER
    return [*data, f"data.seq_len={size['seq_len']}", f"model.arch={arch}", *model,
            f"train.batch_size={size['batch']}", f"train.lr={size['lr']}",
            "train.schedule={kind: constant, warmup_steps: 10}", f"train.device={dev}",
            f"train.precision={precision}", f"train.compile={json.dumps(compiled)}",
            f"train.eval_interval={never}", f"train.checkpoint_interval={never}",
            "train.log_interval=10"]


def measure(trainer, dev, size: dict) -> dict[str, Any]:
    """Time the first step (compilation, cuDNN/cuBLAS set-up), the warm-up, then the segments.

    The loop only waits for the device at its log steps, so each timed window ends with a sync.
    """
    t0 = time.perf_counter()
    common.run_more(trainer, 1)
    sync(dev)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    common.run_more(trainer, max(size["warmup"] - 1, 1))
    sync(dev)
    warm, warm_steps = time.perf_counter() - t0, trainer.loop.step - 1
    rates = []
    for i in range(size["segments"]):
        tokens, t0 = trainer.loop.tokens, time.perf_counter()
        common.run_more(trainer, size["steps"])
        sync(dev)
        rates.append((trainer.loop.tokens - tokens) / (time.perf_counter() - t0))
        common.say(f"  segment {i + 1}/{size['segments']}: {rates[-1]:,.0f} tokens/s")
    return {"first_step_s": first, "warmup_steps": warm_steps, "warmup_s": warm,
            "timed_steps": size["segments"] * size["steps"], "segment_tokens_per_s": rates,
            "tokens_per_s": statistics.median(rates)}


def kernels(trainer) -> list[str]:
    """The attention / recurrent ops one eager forward pass dispatches to (the profiler's names):
    shows whether SDPA took flash/cuDNN/efficient/math, and whether the LSTM ran in cuDNN."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    batch = trainer.batcher.batch(0)
    x = trainer.rt.to_device(batch.x)
    with torch.no_grad(), trainer.rt.autocast(), profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.model(x, None)
    keys = {e.key for e in prof.key_averages()}
    return sorted(k for k in keys if any(w in k for w in ("scaled_dot_product", "rnn", "lstm")))


def train_measured(arch: str, source: str, dev, size: dict, precision: str, compiled: bool):
    """A trainer after its timed segments, and what was measured."""
    import torch

    from lmbench.config import load_spec
    from lmbench.data import prepare_data

    spec = load_spec(None, spec_overrides(arch, source, dev, size, precision, compiled))
    data = prepare_data(spec.data)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    trainer = common.make_trainer(spec, data)
    common.say(f"{arch}: {precision}, compile={compiled}, "
               f"batch {size['batch']} x {size['seq_len']}")
    timing = measure(trainer, dev, size)
    model, seq_len = trainer.model, trainer.batcher.seq_len
    fpt = model.flops_per_token(seq_len)
    losses = [row[2] for row in trainer.loop.curve]
    out = {"arch": arch, "config": size["config"], "vocab_size": data.vocab_size,
           "batch_size": trainer.batcher.batch_size, "seq_len": seq_len,
           "precision": trainer.rt.precision, "compile": compiled, "params": model.num_params(),
           "flops_per_token": fpt, **timing, "achieved_tflops": fpt * timing["tokens_per_s"] / 1e12,
           "train_loss_first": losses[0] if losses else None,
           "train_loss_last": losses[-1] if losses else None,
           "peak_memory_gib": (round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
                               if dev.type == "cuda" else None),
           "kernels": kernels(trainer)}
    return trainer, out


def train_first_that_works(arch: str, source: str, dev, size: dict, attempts) -> tuple[Any, dict]:
    """Train with the first (precision, compile) of ``attempts`` that works; failures recorded."""
    failed = []
    for precision, compiled in attempts:
        try:
            trainer, out = train_measured(arch, source, dev, size, precision, compiled)
            return trainer, {**out, "failed_attempts": failed}
        except Exception as e:  # recorded, then the next attempt: the other figures still count
            traceback.print_exc()
            failed.append({"precision": precision, "compile": compiled, "error": _short(e)})
        release_memory()  # out of the except block, whose traceback holds the failed trainer
    raise RuntimeError(f"{arch}: every attempt failed: {json.dumps(failed)}")


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:3000]


# ---------------------------------------------------------------------------------------------
# generation and compare


def generation(model, data_first_token: int, dev, size: dict) -> dict[str, Any]:
    """Greedy decoding with and without the KV cache, alternately, after one untimed run of each."""
    import torch

    from lmbench.generation.decoding import decode, settings

    s = settings(max_tokens=size["tokens"])
    prompt = torch.tensor([[data_first_token]], dtype=torch.long, device=dev)
    outs: dict[bool, list[int]] = {}

    def timed(cache: bool) -> float:
        sync(dev)
        t0 = time.perf_counter()
        outs[cache] = decode(model, prompt, s, use_cache=cache)[0].tolist()
        sync(dev)
        return time.perf_counter() - t0

    timed(True), timed(False)
    cached, uncached = [], []
    for _ in range(size["pairs"]):
        uncached.append(timed(False))
        cached.append(timed(True))
    n = len(outs[True])
    diff = first_difference(outs[True], outs[False])
    ratio = statistics.median(u / c for u, c in zip(uncached, cached, strict=True))
    return {"prompt_tokens": 1, "generated_tokens": n, "cached_tokens_per_s": n / min(cached),
            "uncached_tokens_per_s": len(outs[False]) / min(uncached),
            "uncached_over_cached": ratio,
            "cached_s": cached, "uncached_s": uncached, "identical": diff is None,
            "first_difference": diff}


def lmbench_command() -> list[str]:
    exe = Path(sys.executable).with_name("lmbench")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("lmbench")
    if found:
        return [found]
    raise RuntimeError(f"no lmbench executable beside {sys.executable} or on PATH")


def run_compare(folder: Path, timeout: float) -> dict[str, Any]:
    """The CLI's quick compare on every GPU, in ``folder`` with its own data, cache and MLflow."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cmd = [*lmbench_command(), "compare", "--quick", "--devices", "all", "--workers", "2",
           "--quiet", "--tracking-uri", uri]
    env = {**os.environ, **common.bench_env(folder), "COLUMNS": "160"}
    common.say(" ".join(cmd))
    t0 = time.perf_counter()
    # its own session, so that a timeout stops the spawned workers too, not only the driver
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        out, err = _stop_group(proc)
        timed_out = True
    except BaseException:  # Ctrl-C: a session of its own does not get the terminal's SIGINT
        _stop_group(proc)
        raise
    wall = time.perf_counter() - t0
    return {"command": " ".join(cmd), "exit_code": None if timed_out else proc.returncode,
            "timed_out": timed_out, "timeout_s": timeout, "wall_s": wall,
            "runs": runs_in_store(folder / "mlflow.db"), "results": compare_results(folder),
            "stdout_tail": (out or "")[-3000:], "stderr_tail": (err or "")[-3000:]}


def _stop_group(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM (lmbench's workers checkpoint and stop), then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.communicate()


def runs_in_store(db: Path) -> dict[str, Any]:
    """Run statuses and the device/precision tags of the compare's runs, read from its store."""
    from lmbench.tracking import schema

    if not db.is_file():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        status = dict(con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
        tags = con.execute("SELECT key, value, COUNT(*) FROM tags WHERE key IN (?, ?) "
                           "GROUP BY key, value", (schema.DEVICE, schema.PRECISION)).fetchall()
    except sqlite3.Error as e:
        return {"error": _short(e)}
    finally:
        con.close()
    out: dict[str, Any] = {"status": status, schema.DEVICE: {}, schema.PRECISION: {}}
    for key, value, count in tags:
        out[key][value] = count
    return out


def compare_results(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("reports/*/results.json")):
        for r in json.loads(path.read_text()).get("table", []):
            keys = ("model", "test_loss_mean", "train_tokens_per_sec_mean")
            rows.append({k: r.get(k) for k in keys})
    return rows


def compare_ok(c: dict[str, Any], dev) -> bool:
    """Exit code 0, and on a GPU every training run tagged with a CUDA device."""
    devices = c.get("runs", {}).get("device", {})
    on_gpu = bool(devices) and all(d.startswith("cuda") for d in devices)
    return c.get("exit_code") == 0 and (dev.type != "cuda" or on_gpu)


# ---------------------------------------------------------------------------------------------
# the run


def section(record: dict, key: str, fn) -> None:
    """``record[key] = fn()``, or the error: one part failing does not stop the others."""
    common.say(f"[{key}]")
    t0 = time.perf_counter()
    try:
        record[key] = fn()
    except Exception as e:
        traceback.print_exc()
        record[key] = {"error": _short(e)}
    record[key]["section_s"] = time.perf_counter() - t0


def stage(work: Path) -> str:
    """Point lmbench at private data, caches and MLflow store; Tiny Shakespeare if found."""
    os.environ.update(common.bench_env(work))
    os.chdir(work)
    try:
        common.stage_data(Path(os.environ["LMBENCH_DATA_DIR"]))
    except SystemExit as e:  # common raises SystemExit when there is no (valid) local copy
        common.say(f"using the synthetic corpus: {e}")
        return "synthetic"
    return "tinyshakespeare"


def gpt_part(record: dict, source: str, dev, sizes: dict) -> None:
    """GPT throughput and MFU, then generation on the same trained model."""
    held: dict[str, Any] = {}

    def gpt() -> dict[str, Any]:
        trainer, out = train_first_that_works("gpt", source, dev, sizes["gpt"], GPT_ATTEMPTS)
        held["trainer"] = trainer
        peak = record["device"]["peak_bf16_tflops"]
        out["mfu"] = mfu(out["flops_per_token"], out["tokens_per_s"], peak)
        return out

    section(record, "gpt", gpt)
    g = record["gpt"]
    record["mfu_target"] = mfu_verdict(g.get("mfu"), record["device"], g.get("precision"))
    if "trainer" in held:
        trainer = held.pop("trainer")
        first = int(trainer.data.splits["val"][0])
        size = sizes["generation"]
        section(record, "generation", lambda: generation(trainer.model, first, dev, size))
        del trainer
    else:
        record["generation"] = {"error": "skipped: gpt did not train", "section_s": 0.0}
    release_memory()


def lstm_part(record: dict, source: str, dev, sizes: dict) -> None:
    def lstm() -> dict[str, Any]:
        trainer, out = train_first_that_works("lstm", source, dev, sizes["lstm"], LSTM_ATTEMPTS)
        out["cudnn"] = any("cudnn_rnn" in k for k in out["kernels"])
        peak = record["device"]["peak_bf16_tflops"] if out["precision"] == "bf16" else None
        out["mfu"] = mfu(out["flops_per_token"], out["tokens_per_s"], peak)  # not judged
        del trainer
        return out

    section(record, "lstm", lstm)
    release_memory()


def failures(record: dict, dev) -> list[str]:
    """What went wrong: crashed parts, fallbacks taken, failed checks (not a missed MFU target)."""
    out = [f"{k}: {record[k]['error']}" for k in ("gpt", "lstm", "generation", "compare")
           if "error" in record.get(k, {})]
    for k in ("gpt", "lstm"):
        out += [f"{k}: {a['precision']} compile={a['compile']} failed"
                for a in record.get(k, {}).get("failed_attempts", [])]
    if dev.type == "cuda" and record.get("lstm", {}).get("cudnn") is False:
        out.append("lstm: did not run in cuDNN")
    if record.get("generation", {}).get("identical") is False:
        out.append("generation: cached and uncached outputs differ")
    c = record.get("compare", {})
    if "error" not in c and not c.get("skipped") and not compare_ok(c, dev):
        out.append("compare: did not exit 0 with every run on a CUDA device")
    return out


def run(args, device: str) -> dict[str, Any]:
    """Every part on ``device``; the record (also written to disk by :func:`main`)."""
    import torch

    t_start = time.perf_counter()
    dev = torch.device(device)
    work = Path(tempfile.mkdtemp(prefix="lmbench-gpucheck-")).resolve()
    record: dict[str, Any] = {"name": "gpu_check", "smoke": args.smoke,
                              "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                              "environment": environment(), "device": device_info(dev)}
    sizes = SIZES["smoke" if args.smoke else "full"]
    try:
        record["data"] = {"source": stage(work)}
        gpt_part(record, record["data"]["source"], dev, sizes)
        lstm_part(record, record["data"]["source"], dev, sizes)
        if args.no_compare:
            record["compare"] = {"skipped": True}
        else:
            section(record, "compare", lambda: run_compare(work / "compare", args.compare_timeout))
    finally:
        os.chdir(common.REPO)
        if args.keep:
            common.say(f"scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    record["failures"] = failures(record, dev)
    record["ok"] = not record["failures"]
    record["total_s"] = time.perf_counter() - t_start
    return record


# ---------------------------------------------------------------------------------------------
# output


def _fmt(value, spec: str = ",.0f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def _train_line(r: dict) -> str:
    if "error" in r:
        return f"ERROR {r['error'][:200]}"
    c = r["config"]
    shape = "x".join(str(c[k]) for k in ("n_layers", "d_model") if k in c)
    return (f"{r['arch']} {shape}, batch {r['batch_size']}x{r['seq_len']}, {r['precision']}, "
            f"compile={r['compile']}: {_fmt(r['tokens_per_s'])} tok/s, "
            f"{_fmt(r['achieved_tflops'], '.1f')} TFLOP/s, MFU {_fmt(r['mfu'], '.1%')}, "
            f"first step {r['first_step_s']:.1f} s, "
            f"peak mem {_fmt(r['peak_memory_gib'], '.1f')} GiB")


def summary_lines(rec: dict) -> list[str]:
    d, g, c, m = rec["device"], rec.get("generation", {}), rec.get("compare", {}), rec["mfu_target"]
    lines = [("device", f"{d['name']} ({d['device_class']}, dense bf16 peak "
                        f"{_fmt(d['peak_bf16_tflops'], '.0f', 'unknown')} TFLOP/s)"),
             ("software", "torch {torch}, CUDA {cuda}, cuDNN {cudnn}".format(**rec["environment"])),
             ("data", rec.get("data", {}).get("source", "n/a")),
             ("gpt", _train_line(rec.get("gpt", {"error": "not run"}))),
             ("mfu target", f"{m['target']}: {m['verdict'] or m['reason']}"),
             ("lstm", _train_line(rec.get("lstm", {"error": "not run"})))]
    if "error" in g:
        lines.append(("generation", f"ERROR {g['error'][:200]}"))
    elif g:
        lines.append(("generation", f"{g['generated_tokens']} tokens: cached "
                      f"{g['cached_tokens_per_s']:,.0f} tok/s, uncached "
                      f"{g['uncached_tokens_per_s']:,.0f} tok/s, "
                      f"{g['uncached_over_cached']:.2f}x, identical: {g['identical']}"))
    if c.get("skipped"):
        lines.append(("compare", "skipped (--no-compare)"))
    elif "error" in c:
        lines.append(("compare", f"ERROR {c['error'][:200]}"))
    elif c:
        lines.append(("compare", f"exit {c['exit_code']}{' (timed out)' if c['timed_out'] else ''} "
                      f"in {c['wall_s']:.0f} s; runs by device {c['runs'].get('device')}"))
    lines.append(("total", f"{rec['total_s']:.0f} s; {'OK' if rec['ok'] else 'FAILED'}"))
    lines += [("failure", f) for f in rec["failures"]]
    return [f"{k:<12} {v}" for k, v in lines]


def write(record: dict, out: Path | None) -> None:
    text = json.dumps(record, indent=2, default=str)
    for path in (RESULTS, out):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
            common.say(f"wrote {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help=f"also write the JSON record here "
                   f"(it always goes to {RESULTS.relative_to(common.REPO)})")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes: checks the script, not the numbers")
    p.add_argument("--no-compare", action="store_true", help="skip the `lmbench compare` part")
    p.add_argument("--compare-timeout", type=float, default=240.0, help="seconds (default 240)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = cuda_missing()
    if reason:  # before any work: no scratch folder, no results file
        print(f"gpu_check: {reason}", file=sys.stderr)
        return 2
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    record = run(args, "cuda")
    write(record, args.out)
    print("\n".join(summary_lines(record)), flush=True)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
