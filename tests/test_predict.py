"""`python -m export.predict ARTIFACT IMAGE...` on real digit images.

The artifacts come from the `digits_export` fixture in conftest.py, which
stores the class labels and preprocessing {"height": 8, "width": 8,
"channels": 1, "scale": 1/255} with them. The images are held-out digits
written as 8-bit PNG files.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from conftest import DIGITS_CLASS_LABELS  # noqa: E402

import export  # noqa: E402

ARTIFACTS = (
    "saved_model",
    "model.tflite",
    "model.onnx",
    "model_int8.tflite",
    "model_int8.onnx",
)
FLOAT_ARTIFACTS = ("saved_model", "model.tflite", "model.onnx")
JSON_ARTIFACTS = ("model.onnx", "model_int8.tflite")
TOP_K = 3
IMAGES = 6
# Commands that run at the same time: each loads TensorFlow for about 5 s
# of mostly one core, so a few in parallel shorten the file.
PARALLEL_RUNS = 3
# Images whose Keras top-1 probability is at least this, so that the
# int8 artifacts' quantization noise cannot reorder the first two classes.
CONFIDENT = 0.9


def run_predict(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "export.predict", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_all(commands):
    """Run `python -m export.predict` once per argument list, a few at once."""
    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        return dict(
            zip(
                commands,
                pool.map(lambda key: run_predict(*commands[key]), commands),
                strict=True,
            )
        )


def nonempty_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def parse_text(stdout):
    """Return {image path: [(label, score), ...]} from the text output."""
    results, current = {}, None
    for line in stdout.splitlines():
        if not line.strip():
            continue
        if line.startswith("  "):
            label, score = line.strip().split("\t")
            results[current].append((label, float(score)))
        else:
            current = line
            results[current] = []
    return results


def to_pixels(images):
    """Turn digits' 0..1 floats into the 8-bit pixels of a PNG file."""
    return np.round(images * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def digit_pngs(digits_model, digits_split, tmp_path_factory):
    """Return PNG paths of confident held-out digits and their Keras scores.

    The Keras scores are computed on the pixels the command reads back,
    scaled by 1/255, which is what the stored preprocessing does.
    """
    _, _, x_test, _ = digits_split
    # digits_split divided the 0..16 values by 16, so pixel = value * 255/16.
    pixels = to_pixels(x_test)
    inputs = pixels.astype(np.float32) * np.float32(1 / 255)
    scores = keras.ops.convert_to_numpy(digits_model(inputs, training=False))
    chosen = np.flatnonzero(scores.max(axis=-1) >= CONFIDENT)[:IMAGES]
    root = tmp_path_factory.mktemp("pngs")
    paths = []
    for index in chosen:
        path = root / f"digit_{index}.png"
        path.write_bytes(tf.io.encode_png(pixels[index]).numpy())
        paths.append(path)
    return paths, scores[chosen]


@pytest.fixture(scope="module")
def good_runs(digits_export, digit_pngs):
    """Return the text run of each artifact and the --json run of two."""
    out_dir, _ = digits_export
    paths, _ = digit_pngs
    commands = {
        ("text", name): [out_dir / name, *paths, "--top-k", TOP_K]
        for name in ARTIFACTS
    }
    for name in JSON_ARTIFACTS:
        commands[("json", name)] = [
            out_dir / name,
            *paths,
            "--top-k",
            TOP_K,
            "--json",
        ]
    return run_all(commands)


@pytest.fixture(params=ARTIFACTS)
def text_run(request, good_runs):
    return request.param, good_runs[("text", request.param)]


def test_chose_enough_images(digit_pngs):
    paths, _ = digit_pngs
    assert len(paths) == IMAGES


def test_predict_exits_zero(text_run):
    _, result = text_run
    assert result.returncode == 0, result.stderr


def test_predict_lists_each_image(text_run, digit_pngs):
    _, result = text_run
    paths, _ = digit_pngs
    assert list(parse_text(result.stdout)) == [str(p) for p in paths]


def test_predict_top_k_count(text_run):
    _, result = text_run
    counts = {len(top) for top in parse_text(result.stdout).values()}
    assert counts == {TOP_K}


def test_predict_top1_matches_keras(text_run, digit_pngs):
    _, result = text_run
    _, scores = digit_pngs
    expected = [DIGITS_CLASS_LABELS[i] for i in np.argmax(scores, axis=-1)]
    got = [top[0][0] for top in parse_text(result.stdout).values()]
    assert got == expected


def test_predict_scores_descend(text_run):
    _, result = text_run
    for top in parse_text(result.stdout).values():
        values = [score for _, score in top]
        assert values == sorted(values, reverse=True)


def test_predict_scores_match_keras(text_run, digit_pngs):
    # Scores print with four decimals. The float32 artifacts are within
    # 1e-4 of Keras, so each printed score is within rounding of Keras';
    # the int8 ones step by about 1/256 per tensor through 19 convolutions.
    name, result = text_run
    bound = 1.5e-4 if name in FLOAT_ARTIFACTS else 0.1
    _, scores = digit_pngs
    for row, top in zip(
        scores, parse_text(result.stdout).values(), strict=True
    ):
        for label, score in top:
            expected = row[DIGITS_CLASS_LABELS.index(label)]
            assert abs(score - expected) <= bound, label


# --json


@pytest.fixture(params=JSON_ARTIFACTS)
def json_run(request, good_runs):
    return good_runs[("json", request.param)]


def json_records(result):
    return [json.loads(line) for line in nonempty_lines(result.stdout)]


def test_json_exits_zero(json_run):
    assert json_run.returncode == 0, json_run.stderr


def test_json_one_record_per_image(json_run, digit_pngs):
    paths, _ = digit_pngs
    images = [record["image"] for record in json_records(json_run)]
    assert images == [str(p) for p in paths]


def test_json_top_k_length(json_run):
    lengths = {len(record["top_k"]) for record in json_records(json_run)}
    assert lengths == {TOP_K}


def test_json_top1_matches_keras(json_run, digit_pngs):
    _, scores = digit_pngs
    expected = [DIGITS_CLASS_LABELS[i] for i in np.argmax(scores, axis=-1)]
    got = [r["top_k"][0]["label"] for r in json_records(json_run)]
    assert got == expected


def test_json_scores_are_numbers(json_run):
    for record in json_records(json_run):
        for entry in record["top_k"]:
            assert isinstance(entry["score"], float), entry


# Bad input: exit code 2 and one line on stderr


@pytest.fixture(scope="module")
def bare_export(digits_model, tmp_path_factory):
    """The digits model exported without labels or preprocessing."""
    out_dir = tmp_path_factory.mktemp("bare") / "export"
    export.export_model(digits_model, out_dir, ["tflite", "onnx"])
    return out_dir


def arrange_missing_image(root, digits_dir, bare_dir):
    return [digits_dir / "model.onnx", root / "missing.png"], "not found"


def arrange_text_as_png(root, digits_dir, bare_dir):
    (root / "notes.png").write_text("not an image\n")
    return [digits_dir / "model.onnx", root / "notes.png"], "decode"


def arrange_truncated_png(root, digits_dir, bare_dir):
    image = np.zeros((8, 8, 1), dtype=np.uint8)
    data = tf.io.encode_png(image).numpy()
    (root / "cut.png").write_bytes(data[: len(data) // 2])
    return [digits_dir / "model_int8.tflite", root / "cut.png"], "decode"


def arrange_bare_onnx(root, digits_dir, bare_dir):
    (root / "zero.png").write_bytes(
        tf.io.encode_png(np.zeros((8, 8, 1), dtype=np.uint8)).numpy()
    )
    return [bare_dir / "model.onnx", root / "zero.png"], "preprocessing"


def arrange_bare_tflite(root, digits_dir, bare_dir):
    (root / "zero.png").write_bytes(
        tf.io.encode_png(np.zeros((8, 8, 1), dtype=np.uint8)).numpy()
    )
    return [bare_dir / "model.tflite", root / "zero.png"], "preprocessing"


def arrange_missing_artifact(root, digits_dir, bare_dir):
    return [root / "nothing.onnx", root / "zero.png"], "not found"


def arrange_top_k_zero(root, digits_dir, bare_dir):
    return [digits_dir / "model.onnx", root / "x.png", "--top-k", 0], "top-k"


BAD_CASES = {
    "missing_image": arrange_missing_image,
    "text_as_png": arrange_text_as_png,
    "truncated_png": arrange_truncated_png,
    "bare_onnx": arrange_bare_onnx,
    "bare_tflite": arrange_bare_tflite,
    "missing_artifact": arrange_missing_artifact,
    "top_k_zero": arrange_top_k_zero,
}


@pytest.fixture(scope="module")
def bad_runs(digits_export, bare_export, tmp_path_factory):
    digits_dir, _ = digits_export
    commands, words = {}, {}
    for case, arrange in BAD_CASES.items():
        root = tmp_path_factory.mktemp(case)
        commands[case], words[case] = arrange(root, digits_dir, bare_export)
    results = run_all(commands)
    return {case: (results[case], words[case]) for case in BAD_CASES}


@pytest.fixture(params=sorted(BAD_CASES))
def bad_run(request, bad_runs):
    return bad_runs[request.param]


def test_bad_predict_exits_two(bad_run):
    result, _ = bad_run
    assert result.returncode == 2, result.stderr


def test_bad_predict_one_line(bad_run):
    result, _ = bad_run
    assert len(nonempty_lines(result.stderr)) == 1, result.stderr


def test_bad_predict_names_problem(bad_run):
    result, word = bad_run
    assert word in result.stderr


def test_bad_predict_prefix(bad_run):
    result, _ = bad_run
    prefix = "python -m export.predict: error: "
    assert result.stderr.startswith(prefix), result.stderr


def test_bad_predict_empty_stdout(bad_run):
    result, _ = bad_run
    assert result.stdout == ""
