"""benchmarks/gpu_check.py (`make gpu-check`): without CUDA it stops at once with exit code 2 and
one line; its pure parts (the peak table, MFU, the verdict, the summary) are checked here because
the rest only runs on a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu():
    """The script as a module (its neighbour ``common`` needs benchmarks/ on sys.path)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPT.parent))
        sys.modules.pop("common", None)


def _stat(path: Path):
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None


def test_without_cuda_exits_2_with_one_line_and_writes_nothing(tmp_path, gpu):
    out, scratch = tmp_path / "out" / "gpu.json", tmp_path / "tmp"
    scratch.mkdir()
    before = _stat(gpu.RESULTS)
    # no visible GPU even where the tests run on a GPU machine; TMPDIR shows no scratch folder
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(scratch)}
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "CUDA" in lines[0] and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert not out.exists() and not out.parent.exists()
    assert _stat(gpu.RESULTS) == before
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("name, label, peak, h100_class", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.0, True),
    ("NVIDIA H100 SXM5 80GB", "H100 SXM", 989.0, True),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.0, True),
    ("NVIDIA H100 NVL", "H100 NVL", 835.0, True),
    ("NVIDIA H200", "H200", 989.0, True),
    ("NVIDIA H200 NVL", "H200 NVL", 835.0, True),
    ("NVIDIA GH200 480GB", "GH200", 989.0, True),
    ("NVIDIA A100-SXM4-80GB", "A100", 312.0, False),
    ("NVIDIA A100 80GB PCIe", "A100", 312.0, False),
    ("NVIDIA A100-PCIE-40GB", "A100", 312.0, False),
    ("NVIDIA L4", "L4", 121.0, False),
    ("NVIDIA L40S", "L40S", 362.0, False),
    ("NVIDIA A10", "A10", 125.0, False),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", 165.2, False),
    ("  nvidia   h100 80gb hbm3 ", "H100 SXM", 989.0, True),
])
def test_peak_of_known_devices(gpu, name, label, peak, h100_class):
    assert gpu.lookup_peak(name) == {"device_class": label, "peak_bf16_tflops": peak,
                                    "h100_class": h100_class}


@pytest.mark.parametrize("name", [
    "NVIDIA A10G", "NVIDIA H100 80GB HBM3 MIG 1g.10gb", "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
    "Tesla T4", "NVIDIA GeForce RTX 4090 D", "NVIDIA L40", "NVIDIA B200", "NVIDIA H100", "cpu", "",
])
def test_unknown_devices_are_not_guessed(gpu, name):
    assert gpu.lookup_peak(name) == {"device_class": "unknown", "peak_bf16_tflops": None,
                                    "h100_class": False}


def test_mfu_arithmetic(gpu):
    # the check's GPT (12 x 768, context 1024, tied head over 65 characters): 6 x 84,984,576
    # matmul weights + 12 x 12 layers x 1024 x 768 for attention = 623,153,664 FLOPs per token
    fpt = 6 * 84_984_576 + 12 * 12 * 1024 * 768
    assert fpt == 623_153_664
    assert gpu.mfu(fpt, 635_000, 989.0) == pytest.approx(fpt * 635_000 / 989e12)
    assert gpu.mfu(fpt, 635_000, 989.0) == pytest.approx(0.4001, abs=1e-4)
    assert gpu.mfu(1e9, 1e5, 100.0) == pytest.approx(1.0)
    assert gpu.mfu(fpt, 635_000, None) is None
    assert gpu.mfu(fpt, None, 989.0) is None


def test_flops_per_token_of_the_checked_gpt(gpu):
    """The script's MFU takes the model's own flops_per_token: the same count as above."""
    import torch

    from lmbench.models import build_model

    with torch.device("meta"):  # no memory, no initialisation cost
        model = build_model("gpt", 65, "default", dict(gpu.GPT))
    assert model.flops_per_token(1024) == 623_153_664


def test_mfu_verdict(gpu):
    h100, a100 = gpu.lookup_peak("NVIDIA H100 80GB HBM3"), gpu.lookup_peak("NVIDIA A100-SXM4-80GB")
    assert gpu.mfu_verdict(0.40, h100, "bf16")["verdict"] == "pass"
    assert gpu.mfu_verdict(0.399, h100, "bf16")["verdict"] == "miss"
    for value, peak, precision in ((0.5, a100, "bf16"), (0.5, h100, "fp32"), (None, h100, "bf16"),
                                   (None, gpu.lookup_peak("NVIDIA A10G"), None)):
        v = gpu.mfu_verdict(value, peak, precision)
        assert v["verdict"] is None and v["reason"].startswith("not judged")


def test_first_difference(gpu):
    assert gpu.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert gpu.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert gpu.first_difference([1, 2], [1, 2, 3]) == 2


def _record(gpu, **parts):
    train = {"arch": "gpt", "config": dict(gpu.GPT), "batch_size": 16, "seq_len": 1024,
             "precision": "bf16", "compile": True, "tokens_per_s": 7e5, "achieved_tflops": 436.2,
             "mfu": 0.441, "first_step_s": 41.0, "peak_memory_gib": 9.5, "failed_attempts": []}
    device = {"name": "NVIDIA H100 80GB HBM3", **gpu.lookup_peak("NVIDIA H100 80GB HBM3")}
    rec = {"device": device, "environment": {"torch": "2.13.0", "cuda": "12.8", "cudnn": 91000},
           "data": {"source": "synthetic"}, "gpt": train,
           "mfu_target": gpu.mfu_verdict(0.441, device, "bf16"),
           "lstm": {**train, "arch": "lstm", "config": dict(gpu.LSTM), "cudnn": True, "mfu": None},
           "generation": {"generated_tokens": 256, "cached_tokens_per_s": 400.0,
                          "uncached_tokens_per_s": 250.0, "uncached_over_cached": 1.6,
                          "identical": True},
           "compare": {"exit_code": 0, "timed_out": False, "wall_s": 95.0,
                       "runs": {"device": {"cuda:0": 24, "cuda": 12}}},
           "total_s": 260.0, **parts}
    import torch

    rec["failures"] = gpu.failures(rec, torch.device("cuda"))
    rec["ok"] = not rec["failures"]
    return rec


def test_summary_and_failures(gpu):
    rec = _record(gpu)
    assert rec["ok"], rec["failures"]
    text = "\n".join(gpu.summary_lines(rec))
    assert "H100 SXM" in text and "44.1%" in text and ": pass" in text and "OK" in text

    bad = _record(gpu, gpt={"error": "RuntimeError: boom"}, compare={
        "exit_code": 1, "timed_out": False, "wall_s": 3.0, "runs": {}},
        generation={**_record(gpu)["generation"], "identical": False})
    assert not bad["ok"]
    assert any(f.startswith("gpt: RuntimeError") for f in bad["failures"])
    assert any(f.startswith("generation:") for f in bad["failures"])
    assert any(f.startswith("compare:") for f in bad["failures"])
    text = "\n".join(gpu.summary_lines(bad))
    assert "ERROR RuntimeError: boom" in text and "FAILED" in text

    cpu_runs = _record(gpu, compare={"exit_code": 0, "timed_out": False, "wall_s": 9.0,
                                    "runs": {"device": {"cpu": 36}}})
    assert cpu_runs["failures"] == ["compare: did not exit 0 with every run on a CUDA device"]


def test_compare_results_read_from_the_report(gpu, tmp_path):
    report = tmp_path / "reports" / "default" / "results.json"
    report.parent.mkdir(parents=True)
    report.write_text('{"table": [{"model": "lstm", "test_loss_mean": 2.5, "p_vs_best": null}]}')
    assert gpu.compare_results(tmp_path) == [
        {"model": "lstm", "test_loss_mean": 2.5, "train_tokens_per_sec_mean": None}]
    assert gpu.runs_in_store(tmp_path / "missing.db") == {}
