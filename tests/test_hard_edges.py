"""Bad input through `python -m export` and `export.export_model`.

Each bad command must exit with code 2 and one line on stderr that names the
problem, and write nothing: no output directory and no `.NAME.*` staging
directory beside it. A failed export through the API leaves no partial
files, and an existing output directory as it was.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hashlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import export  # noqa: E402
from export.cli import load_model  # noqa: E402
from export.console import UsageError  # noqa: E402

SHAPE = (8, 8, 3)
# The file that the Lambda layer of `lambda_file` creates whenever its
# Python code runs, relative to the working directory of the run.
LAMBDA_MARK = "lambda_ran.txt"


def run_cli(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "export", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def nonempty_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def tree(root):
    """Return every path under `root` with a digest of each file's bytes."""
    listing = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file():
            listing[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            listing[relative] = "dir"
    return listing


def tiny_model():
    inputs = keras.Input(SHAPE, name="pixels")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, name="scores")(x)
    return keras.Model(inputs, outputs, name="tiny")


def hashing_model():
    # Hashing runs tf.strings ops that neither TFLite's builtin op set nor
    # tf2onnx supports, so conversion fails for a real reason.
    inputs = keras.Input((4,), dtype="int64", name="ids")
    x = keras.layers.Hashing(num_bins=8, name="hash")(inputs)
    x = keras.layers.Embedding(8, 3, name="embed")(x)
    outputs = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, outputs, name="hashing")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Return a directory with tiny.keras and lambda.keras in it."""
    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(1)
    tiny_model().save(root / "tiny.keras")

    # The Lambda's code creates LAMBDA_MARK in the current directory each
    # time it runs, which Keras does when it rebuilds the model on loading.
    double = eval(  # noqa: S307  (a lambda the test writes itself)
        f"lambda t: (open({LAMBDA_MARK!r}, 'a').close(), t * 2.0)[1]"
    )
    cwd = os.getcwd()
    os.chdir(root)
    try:
        inputs = keras.Input(SHAPE, name="pixels")
        x = keras.layers.Lambda(double, name="double")(inputs)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = keras.layers.Dense(3, name="scores")(x)
        keras.Model(inputs, outputs, name="with_lambda").save("lambda.keras")
        os.remove(LAMBDA_MARK)
    finally:
        os.chdir(cwd)
    return root


def member_data_offset(path, name):
    """Return where the bytes of zip member `name` start, and their size."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with open(path, "rb") as file:
        file.seek(info.header_offset + 26)
        name_length = int.from_bytes(file.read(2), "little")
        extra_length = int.from_bytes(file.read(2), "little")
    start = info.header_offset + 30 + name_length + extra_length
    return start, info.compress_size


def flip_member_bytes(path, name, count=16):
    data = bytearray(path.read_bytes())
    start, size = member_data_offset(path, name)
    middle = start + size // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# Arrangements: each writes what the case needs into `cwd` and returns the
# command's arguments and a word that the error line must contain.


def arrange_missing_model(cwd, models):
    return ["missing.keras", "--out", "out"], "not found"


def arrange_text_file(cwd, models):
    (cwd / "x.keras").write_text("this is not a Keras model\n")
    return ["x.keras", "--out", "out"], "not a valid .keras archive"


def arrange_zip_without_config(cwd, models):
    with zipfile.ZipFile(cwd / "x.keras", "w") as archive:
        archive.writestr("notes.txt", "no model here")
    return ["x.keras", "--out", "out"], "config.json"


def arrange_truncated(cwd, models):
    data = (models / "tiny.keras").read_bytes()
    (cwd / "cut.keras").write_bytes(data[: len(data) // 2])
    return ["cut.keras", "--out", "out"], "truncated"


def arrange_corrupted(cwd, models):
    path = cwd / "bad.keras"
    path.write_bytes((models / "tiny.keras").read_bytes())
    flip_member_bytes(path, "model.weights.h5")
    return ["bad.keras", "--out", "out"], "corrupted"


def arrange_corrupted_deflated(cwd, models):
    # The same model re-zipped with compression, as a zip tool may do.
    path = cwd / "bad.keras"
    with (
        zipfile.ZipFile(models / "tiny.keras") as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for name in source.namelist():
            target.writestr(name, source.read(name))
    flip_member_bytes(path, "model.weights.h5")
    return ["bad.keras", "--out", "out"], "corrupted"


def arrange_lambda_safe(cwd, models):
    return [models / "lambda.keras", "--out", "out"], "--unsafe-load"


def arrange_unknown_format(cwd, models):
    args = [models / "tiny.keras", "--out", "out", "--formats", "coreml"]
    return args, "coreml"


def arrange_out_under_file(cwd, models):
    (cwd / "afile").write_text("a regular file\n")
    return [models / "tiny.keras", "--out", "afile/out"], "not a directory"


def save_inputs(cwd, array):
    np.save(cwd / "inputs.npy", array)
    return "inputs.npy"


def arrange_inputs_wrong_shape(cwd, models):
    name = save_inputs(cwd, np.zeros((2, 9, 9, 3), dtype=np.float32))
    return [models / "tiny.keras", "--out", "out", "--inputs", name], "shape"


def arrange_inputs_complex(cwd, models):
    name = save_inputs(cwd, np.zeros((2, *SHAPE), dtype=np.complex64))
    return [models / "tiny.keras", "--out", "out", "--inputs", name], "dtype"


def arrange_inputs_unicode(cwd, models):
    name = save_inputs(cwd, np.full((2, *SHAPE), "a", dtype="<U1"))
    return [models / "tiny.keras", "--out", "out", "--inputs", name], "dtype"


def arrange_inputs_object(cwd, models):
    # np.load refuses pickled object arrays unless allow_pickle is set.
    array = np.empty((2,), dtype=object)
    array[:] = [{"a": 1}, {"b": 2}]
    np.save(cwd / "inputs.npy", array, allow_pickle=True)
    args = [models / "tiny.keras", "--out", "out", "--inputs", "inputs.npy"]
    return args, "cannot read"


def arrange_inputs_nan(cwd, models):
    array = np.zeros((2, *SHAPE), dtype=np.float32)
    array[1, 3, 3, 0] = np.nan
    name = save_inputs(cwd, array)
    return [models / "tiny.keras", "--out", "out", "--inputs", name], "NaN"


def arrange_calibration_nan(cwd, models):
    array = np.zeros((4, *SHAPE), dtype=np.float32)
    array[0, 0, 0, 0] = np.nan
    np.save(cwd / "calibration.npy", array)
    args = [
        models / "tiny.keras",
        "--out",
        "out",
        "--formats",
        "onnx_int8",
        "--calibration",
        "calibration.npy",
    ]
    return args, "NaN"


def arrange_class_names_count(cwd, models):
    (cwd / "names.txt").write_text("cat\ndog\n")
    args = [models / "tiny.keras", "--out", "out", "--class-names", "names.txt"]
    return args, "class_labels"


def arrange_preprocessing_std_zero(cwd, models):
    (cwd / "pre.json").write_text(
        '{"height": 8, "width": 8, "channels": 3, "std": 0}'
    )
    args = [
        models / "tiny.keras",
        "--out",
        "out",
        "--preprocessing",
        "pre.json",
    ]
    return args, "std"


def arrange_preprocessing_not_json(cwd, models):
    (cwd / "pre.json").write_text("{height: 8")
    args = [
        models / "tiny.keras",
        "--out",
        "out",
        "--preprocessing",
        "pre.json",
    ]
    return args, "--preprocessing"


def arrange_out_not_empty(cwd, models):
    (cwd / "out").mkdir()
    (cwd / "out" / "keep.txt").write_text("earlier results\n")
    return [models / "tiny.keras", "--out", "out"], "--overwrite"


BAD_CASES = {
    "missing_model": arrange_missing_model,
    "text_file": arrange_text_file,
    "zip_without_config": arrange_zip_without_config,
    "truncated": arrange_truncated,
    "corrupted": arrange_corrupted,
    "corrupted_deflated": arrange_corrupted_deflated,
    "lambda_safe": arrange_lambda_safe,
    "unknown_format": arrange_unknown_format,
    "out_under_file": arrange_out_under_file,
    "inputs_wrong_shape": arrange_inputs_wrong_shape,
    "inputs_complex": arrange_inputs_complex,
    "inputs_unicode": arrange_inputs_unicode,
    "inputs_object": arrange_inputs_object,
    "inputs_nan": arrange_inputs_nan,
    "calibration_nan": arrange_calibration_nan,
    "class_names_count": arrange_class_names_count,
    "preprocessing_std_zero": arrange_preprocessing_std_zero,
    "preprocessing_not_json": arrange_preprocessing_not_json,
    "out_not_empty": arrange_out_not_empty,
}


@pytest.fixture(scope="module", params=sorted(BAD_CASES))
def bad_run(request, model_files, tmp_path_factory):
    cwd = tmp_path_factory.mktemp(request.param)
    args, word = BAD_CASES[request.param](cwd, model_files)
    before = tree(cwd)
    result = run_cli(cwd, *args)
    return result, word, before, tree(cwd)


def test_bad_run_exits_two(bad_run):
    result, _, _, _ = bad_run
    assert result.returncode == 2, result.stderr


def test_bad_run_one_line(bad_run):
    result, _, _, _ = bad_run
    assert len(nonempty_lines(result.stderr)) == 1, result.stderr


def test_bad_run_error_prefix(bad_run):
    result, _, _, _ = bad_run
    assert result.stderr.startswith("python -m export: error: "), result.stderr


def test_bad_run_names_problem(bad_run):
    result, word, _, _ = bad_run
    assert word in result.stderr


def test_bad_run_writes_nothing(bad_run):
    _, _, before, after = bad_run
    assert after == before


def test_bad_run_empty_stdout(bad_run):
    result, _, _, _ = bad_run
    assert result.stdout == ""


# Safe mode


def test_lambda_code_not_run(model_files, tmp_path):
    # Without --unsafe-load the Lambda's stored code must not run at all.
    result = run_cli(tmp_path, model_files / "lambda.keras", "--out", "out")
    assert result.returncode == 2, result.stderr
    assert not (tmp_path / LAMBDA_MARK).exists()


@pytest.fixture(scope="module")
def unsafe_run(model_files, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("unsafe")
    result = run_cli(
        cwd,
        model_files / "lambda.keras",
        "--out",
        "out",
        "--formats",
        "onnx",
        "--unsafe-load",
    )
    return result, cwd


def test_unsafe_load_exits_zero(unsafe_run):
    result, _ = unsafe_run
    assert result.returncode == 0, result.stderr


def test_unsafe_load_writes_onnx(unsafe_run):
    _, cwd = unsafe_run
    assert (cwd / "out" / "model.onnx").is_file()


def test_unsafe_load_runs_code(unsafe_run):
    # The marker proves that the flag, and only the flag, let the code run.
    _, cwd = unsafe_run
    assert (cwd / LAMBDA_MARK).exists()


def test_unsafe_help_mentions_risk():
    result = subprocess.run(
        [sys.executable, "-m", "export", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The option's own entry: from its line up to the next option.
    options = " ".join(result.stdout.split()).split(" --")
    (entry,) = [text for text in options if text.startswith("unsafe-load ")]
    assert "trust" in entry
    assert "code" in entry


def test_load_model_safe_by_default(model_files):
    with pytest.raises(UsageError, match="Lambda"):
        load_model(model_files / "lambda.keras")


def test_unsafe_load_not_sticky(model_files, tmp_path, monkeypatch):
    # Loading one file with safe mode off must not switch it off for the
    # next load in the same process.
    monkeypatch.chdir(tmp_path)
    load_model(model_files / "lambda.keras", unsafe=True)
    with pytest.raises(UsageError, match="Lambda"):
        load_model(model_files / "lambda.keras")


def test_unsafe_load_returns_model(model_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = load_model(model_files / "lambda.keras", unsafe=True)
    assert model.get_layer("double") is not None


# Existing output directory through the command


def test_overwrite_replaces_out(model_files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results\n")
    result = run_cli(
        tmp_path,
        model_files / "tiny.keras",
        "--out",
        "out",
        "--formats",
        "onnx",
        "--overwrite",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "model.onnx",
        "report.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# The API: failed exports leave nothing behind


def stale_out_dir(root):
    out = root / "out"
    (out / "saved_model").mkdir(parents=True)
    (out / "saved_model" / "stale.txt").write_text("old")
    (out / "model.onnx").write_bytes(b"earlier model")
    (out / "report.json").write_text("{}\n")
    return out


def test_converter_failure_keeps_out(tmp_path):
    out = stale_out_dir(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(export.ExportError):
        export.export_model(hashing_model(), out, ["onnx"], overwrite=True)
    assert tree(tmp_path) == before


def test_converter_failure_no_new_out(tmp_path):
    with pytest.raises(export.ExportError):
        export.export_model(hashing_model(), tmp_path / "out", ["tflite"])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_converter_failure_no_parents(tmp_path):
    # The parents of a new output directory are part of what it writes.
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(export.ExportError):
        export.export_model(hashing_model(), out, ["onnx"])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_nan_calibration_keeps_out(tmp_path):
    out = stale_out_dir(tmp_path)
    before = tree(tmp_path)
    calibration = np.zeros((4, *SHAPE), dtype=np.float32)
    calibration[2, 1, 1, 1] = np.nan
    with pytest.raises(export.CalibrationError):
        export.export_model(
            tiny_model(),
            out,
            ["onnx_int8"],
            calibration=calibration,
            overwrite=True,
        )
    assert tree(tmp_path) == before


def test_out_under_file_raises(tmp_path):
    (tmp_path / "afile").write_text("a regular file\n")
    with pytest.raises(OSError):
        export.export_model(tiny_model(), tmp_path / "afile" / "out", ["onnx"])


def test_out_under_file_leaves_nothing(tmp_path):
    (tmp_path / "afile").write_text("a regular file\n")
    before = tree(tmp_path)
    with pytest.raises(OSError):
        export.export_model(tiny_model(), tmp_path / "afile" / "out", ["onnx"])
    assert tree(tmp_path) == before


def test_out_is_file_raises(tmp_path):
    (tmp_path / "out").write_text("a regular file\n")
    with pytest.raises(FileExistsError):
        export.export_model(tiny_model(), tmp_path / "out", ["onnx"])
    assert (tmp_path / "out").read_text() == "a regular file\n"


BAD_API_INPUTS = {
    "complex": np.zeros((2, *SHAPE), dtype=np.complex64),
    "unicode": np.full((2, *SHAPE), "a", dtype="<U1"),
    "wrong_shape": np.zeros((2, 9, 9, 3), dtype=np.float32),
    "empty_batch": np.zeros((0, *SHAPE), dtype=np.float32),
    "infinite": np.full((2, *SHAPE), np.inf, dtype=np.float32),
    "float64_overflow": np.full((2, *SHAPE), 1e300, dtype=np.float64),
}


@pytest.mark.parametrize("case", sorted(BAD_API_INPUTS))
def test_api_bad_inputs_raise(tmp_path, case):
    with pytest.raises(export.InputError):
        export.export_model(
            tiny_model(),
            tmp_path / "out",
            ["onnx"],
            inputs=BAD_API_INPUTS[case],
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_api_unknown_format_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="coreml"):
        export.export_model(tiny_model(), tmp_path / "out", ["onnx", "coreml"])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
