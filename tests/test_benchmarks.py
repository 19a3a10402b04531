import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"

ROW_FIELDS = {
    "model",
    "input",
    "runtime",
    "batch",
    "ms",
    "images_per_second",
    "gflops",
    "peak_fraction",
}
RUNTIMES = {
    "keras",
    "savedmodel",
    "tflite",
    "tflite_int8",
    "onnx",
    "onnx_int8",
    "keras_onnx",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return result, out


def test_tiny_run_exits_zero(tiny_run):
    result, _ = tiny_run
    assert result.returncode == 0, result.stderr[-2000:]


def test_tiny_run_writes_chart(tiny_run):
    _, out = tiny_run
    assert (out / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_have_every_runtime(tiny_run):
    _, out = tiny_run
    results = json.loads((out / "results.json").read_text())
    rows = results["models"]["resnet20"]["rows"]
    assert {row["runtime"] for row in rows} == RUNTIMES
    assert {row["batch"] for row in rows} == {1, 8}


def test_result_rows_have_fields(tiny_run):
    _, out = tiny_run
    results = json.loads((out / "results.json").read_text())
    for row in results["models"]["resnet20"]["rows"]:
        assert set(row) == ROW_FIELDS
        assert row["ms"] > 0
        assert row["images_per_second"] == pytest.approx(
            row["batch"] / (row["ms"] / 1e3)
        )


def test_results_have_references(tiny_run):
    _, out = tiny_run
    results = json.loads((out / "results.json").read_text())
    assert results["matmul_peak_gflops"] > 0
    assert results["cores"] == len(os.sched_getaffinity(0))
    seconds = results["models"]["resnet20"]["export_seconds"]
    assert set(seconds) == {
        "savedmodel",
        "tflite",
        "onnx",
        "export_model",
        "export_model_int8",
    }


def test_results_have_training_rows(tiny_run):
    _, out = tiny_run
    training = json.loads((out / "results.json").read_text())["training"]
    assert training["keras_shipped"]["images_per_second"] > 0
    assert training["keras_jit"]["images_per_second"] > 0
    assert "images_per_second" in training["torch"] or (
        "skipped" in training["torch"]
    )


def test_targets_are_ratios(tiny_run):
    _, out = tiny_run
    targets = json.loads((out / "results.json").read_text())["targets"]
    assert len(targets) >= 8
    for target in targets:
        assert set(target) - {"spread"} == {"target", "value", "limit", "met"}
        assert isinstance(target["met"], bool)


def test_target_ratios_from_pairs(tiny_run):
    _, out = tiny_run
    result = json.loads((out / "results.json").read_text())["models"]
    pairs = result["resnet20"]["pairs"]
    assert {(p["a"], p["b"], p["batch"]) for p in pairs} == {
        (a, b, batch)
        for a, b in (
            ("onnx", "onnx_control"),
            ("onnx", "keras_onnx"),
            ("tflite", "tflite_int8"),
            ("onnx", "onnx_int8"),
        )
        for batch in (1, 8)
    }
    for timing in pairs:
        assert 0 < timing["low"] <= timing["high"]
        assert timing["ratio"] > 0


def test_results_compare_onnx_graphs(tiny_run):
    _, out = tiny_run
    result = json.loads((out / "results.json").read_text())["models"]
    ops = result["resnet20"]["onnx_ops"]
    assert set(ops) == {"export", "keras_onnx"}
    # ResNet-20 has 6n + 2 = 20 weighted layers for n = 3 (He et al.
    # 2015, section 4.2): 19 convolutions and the classifier. Its option A
    # shortcuts have no convolution.
    assert ops["export"]["Conv"] == ops["keras_onnx"]["Conv"] == 19
