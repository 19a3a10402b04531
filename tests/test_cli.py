import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_resnet import resnet

FORMATS = ("savedmodel", "tflite", "onnx")


def run_cli(cwd, *args):
    """Run `python -m export` in a fresh interpreter from the directory cwd."""
    return subprocess.run(
        [sys.executable, "-m", "export", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def nonempty_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def table_row(stdout, fmt):
    rows = [line for line in stdout.splitlines() if line.startswith(fmt)]
    assert len(rows) == 1, stdout
    return rows[0]


@pytest.fixture(scope="module")
def full_run(small_resnet_file, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli_full")
    result = run_cli(cwd, small_resnet_file, "--out", "export")
    return result, cwd / "export"


def test_cli_exits_zero(full_run):
    result, _ = full_run
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_table_passes_format(full_run, fmt):
    result, _ = full_run
    assert "pass" in table_row(result.stdout, fmt).split()


def test_cli_prints_report_path(full_run):
    result, out_dir = full_run
    assert "report: export/report.json" in result.stdout


def test_cli_writes_report(full_run):
    _, out_dir = full_run
    report = json.loads((out_dir / "report.json").read_text())
    assert report["passed"] is True


@pytest.mark.parametrize(
    "name", ["saved_model", "model.tflite", "model.onnx", "report.json"]
)
def test_cli_writes_artifact(full_run, name):
    _, out_dir = full_run
    assert (out_dir / name).exists()


def test_cli_onnx_only(small_resnet_file, tmp_path):
    result = run_cli(
        tmp_path, small_resnet_file, "--out", "export", "--formats", "onnx"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "manifest.json",
        "model.onnx",
        "report.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_cli_inputs_npy(small_resnet_file, images, tmp_path):
    np.save(tmp_path / "inputs.npy", images(3))
    result = run_cli(
        tmp_path,
        small_resnet_file,
        "--out",
        "export",
        "--formats",
        "tflite",
        "--inputs",
        "inputs.npy",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "export" / "report.json").read_text())
    assert report["formats"]["tflite"]["batch_sizes"] == [1, 3]


def test_cli_inputs_npz(small_resnet_file, images, tmp_path):
    np.savez(tmp_path / "inputs.npz", image=images(2))
    result = run_cli(
        tmp_path,
        small_resnet_file,
        "--out",
        "export",
        "--formats",
        "onnx",
        "--inputs",
        "inputs.npz",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "export" / "report.json").read_text())
    assert report["formats"]["onnx"]["batch_sizes"] == [1, 2]


# Bad input: exit code 2 and one line on stderr


def arrange_missing_model(cwd, model_file):
    return ["missing.keras", "--out", "export"]


def arrange_unknown_format(cwd, model_file):
    return [model_file, "--out", "export", "--formats", "coreml"]


def arrange_not_a_model(cwd, model_file):
    (cwd / "x.keras").write_text("this is not a Keras model\n")
    return ["x.keras", "--out", "export"]


def arrange_missing_out(cwd, model_file):
    return [model_file]


def arrange_wrong_shape(cwd, model_file):
    np.save(cwd / "inputs.npy", np.zeros((2, 8, 8, 3), dtype=np.float32))
    return [model_file, "--out", "export", "--inputs", "inputs.npy"]


BAD_INPUT_CASES = {
    "missing_model": arrange_missing_model,
    "unknown_format": arrange_unknown_format,
    "not_a_model": arrange_not_a_model,
    "missing_out": arrange_missing_out,
    "wrong_shape": arrange_wrong_shape,
}


@pytest.fixture(scope="module", params=sorted(BAD_INPUT_CASES))
def bad_run(request, small_resnet_file, tmp_path_factory):
    cwd = tmp_path_factory.mktemp(request.param)
    args = BAD_INPUT_CASES[request.param](cwd, small_resnet_file)
    before = sorted(p.name for p in cwd.iterdir())
    result = run_cli(cwd, *args)
    after = sorted(p.name for p in cwd.iterdir())
    return result, before, after


def test_bad_input_exits_two(bad_run):
    result, _, _ = bad_run
    assert result.returncode == 2, result.stderr


def test_bad_input_writes_nothing(bad_run):
    _, before, after = bad_run
    assert after == before


def test_bad_input_error_prefix(bad_run):
    result, _, _ = bad_run
    assert "python -m export: error: " in result.stderr


def test_bad_input_one_stderr_line(bad_run):
    result, _, _ = bad_run
    assert len(nonempty_lines(result.stderr)) == 1, result.stderr


def test_bad_input_nothing_on_stdout(bad_run):
    result, _, _ = bad_run
    assert result.stdout == ""


# Failure: exit code 1


def test_cli_converter_failure_exits_one(tmp_path):
    # Hashing runs tf.strings ops that TFLite's builtin op set lacks, so the
    # TFLite converter fails on this model for a real reason.
    inputs = keras.Input((4,), dtype="int64", name="ids")
    x = keras.layers.Hashing(num_bins=8, name="hash")(inputs)
    outputs = keras.layers.Embedding(8, 3, name="embed")(x)
    keras.Model(inputs, outputs).save(tmp_path / "hashing.keras")

    result = run_cli(tmp_path, "hashing.keras", "--out", "export")

    assert result.returncode == 1, result.stderr
    assert "TFLite conversion failed" in result.stderr
    assert not (tmp_path / "export").exists()


@pytest.fixture(scope="module")
def strict_run(tmp_path_factory):
    # The command line compares each artifact with the model it just loaded,
    # so a planted defect cannot reach it. A zero tolerance is a real parity
    # failure instead: XNNPACK sums in another order than TensorFlow, so the
    # TFLite logits differ from Keras' in the last bits.
    cwd = tmp_path_factory.mktemp("cli_strict")
    keras.utils.set_random_seed(0)
    resnet(20, input_shape=(16, 16, 3), classifier_activation=None).save(
        cwd / "logits.keras"
    )
    result = run_cli(
        cwd,
        "logits.keras",
        "--out",
        "export",
        "--formats",
        "tflite",
        "--atol",
        "0",
        "--rtol",
        "0",
    )
    return result, cwd / "export"


def test_cli_parity_failure_exits_one(strict_run):
    result, _ = strict_run
    assert result.returncode == 1, result.stderr


def test_cli_parity_failure_table(strict_run):
    result, _ = strict_run
    assert "FAIL" in table_row(result.stdout, "tflite").split()


def test_cli_parity_failure_report(strict_run):
    _, out_dir = strict_run
    report = json.loads((out_dir / "report.json").read_text())
    assert report["formats"]["tflite"]["passed"] is False
