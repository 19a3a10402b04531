"""What a deployment needs beside the numbers: the manifest, stored metadata,
signature names, ONNX layout and opset, inference-mode graphs and float32
copies of mixed-precision models.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hashlib  # noqa: E402
import json  # noqa: E402
from importlib import metadata as package_metadata  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from conftest import (  # noqa: E402
    DIGITS_CLASS_LABELS,
    DIGITS_FORMATS,
    DIGITS_PREPROCESSING,
)

import export  # noqa: E402
import keras_resnet  # noqa: E402
from export.signature import random_ops  # noqa: E402

TOOLS = (
    "tensorflow",
    "keras",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
)
PATHS = {
    "savedmodel": "saved_model",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
    "tflite_float16": "model_float16.tflite",
    "tflite_dynamic": "model_dynamic.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx_int8": "model_int8.onnx",
}
FILE_FORMATS = tuple(name for name in DIGITS_FORMATS if name != "savedmodel")
FLOAT_FORMATS = ("savedmodel", "tflite", "onnx")
ATOL = 1e-4
# The preprocessing that export_model stores: DIGITS_PREPROCESSING with
# its defaults filled in.
STORED_PREPROCESSING = {
    **DIGITS_PREPROCESSING,
    "mean": [0.0],
    "std": [1.0],
}


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def staging_dirs(parent, name):
    return sorted(p.name for p in parent.glob(f".{name}.*"))


def onnx_props(path):
    model = onnx.load(str(path))
    return {entry.key: entry.value for entry in model.metadata_props}


def onnx_op_types(path):
    return [node.op_type for node in onnx.load(str(path)).graph.node]


# Each runner takes and returns a dict of named arrays, through the
# runtime's own API.


def run_savedmodel(out_dir, feeds):
    loaded = tf.saved_model.load(str(out_dir / "saved_model"))
    signature = loaded.signatures["serving_default"]
    results = signature(**{k: tf.constant(v) for k, v in feeds.items()})
    return {name: value.numpy() for name, value in results.items()}


def run_tflite(out_dir, feeds):
    interpreter = Interpreter(model_path=str(out_dir / "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    return {k: np.array(v) for k, v in runner(**feeds).items()}


def run_onnx(out_dir, feeds):
    session = onnxruntime.InferenceSession(
        str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


RUNNERS = {
    "savedmodel": run_savedmodel,
    "tflite": run_tflite,
    "onnx": run_onnx,
}


# Manifest


@pytest.fixture(scope="module")
def manifest(digits_export):
    out_dir, _ = digits_export
    return json.loads((out_dir / "manifest.json").read_text())


def artifact(manifest, fmt):
    (entry,) = [a for a in manifest["artifacts"] if a["format"] == fmt]
    return entry


def test_manifest_lists_formats(manifest):
    formats = [entry["format"] for entry in manifest["artifacts"]]
    assert formats == list(DIGITS_FORMATS)


@pytest.mark.parametrize("fmt", DIGITS_FORMATS)
def test_manifest_path(manifest, fmt):
    assert artifact(manifest, fmt)["path"] == PATHS[fmt]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_manifest_sha256_matches(digits_export, manifest, fmt):
    out_dir, _ = digits_export
    expected = sha256(out_dir / PATHS[fmt])
    assert artifact(manifest, fmt)["sha256"] == expected


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_manifest_size_matches(digits_export, manifest, fmt):
    out_dir, _ = digits_export
    size = (out_dir / PATHS[fmt]).stat().st_size
    assert artifact(manifest, fmt)["size_bytes"] == size


def test_manifest_savedmodel_lists_files(digits_export, manifest):
    out_dir, _ = digits_export
    on_disk = sorted(
        p.relative_to(out_dir).as_posix()
        for p in (out_dir / "saved_model").rglob("*")
        if p.is_file()
    )
    listed = [f["path"] for f in artifact(manifest, "savedmodel")["files"]]
    assert listed == on_disk


def test_manifest_savedmodel_hashes(digits_export, manifest):
    out_dir, _ = digits_export
    for entry in artifact(manifest, "savedmodel")["files"]:
        assert entry["sha256"] == sha256(out_dir / entry["path"]), entry


def test_manifest_savedmodel_size_sum(manifest):
    entry = artifact(manifest, "savedmodel")
    total = sum(f["size_bytes"] for f in entry["files"])
    assert entry["size_bytes"] == total


@pytest.mark.parametrize("fmt", DIGITS_FORMATS)
def test_manifest_input_spec(manifest, fmt):
    expected = [{"name": "image", "dtype": "float32", "shape": [None, 8, 8, 1]}]
    assert artifact(manifest, fmt)["inputs"] == expected


@pytest.mark.parametrize("fmt", DIGITS_FORMATS)
def test_manifest_output_spec(manifest, fmt):
    expected = [
        {"name": "predictions", "dtype": "float32", "shape": [None, 10]}
    ]
    assert artifact(manifest, fmt)["outputs"] == expected


@pytest.mark.parametrize("fmt", ["onnx", "onnx_int8"])
def test_manifest_onnx_opset(digits_export, manifest, fmt):
    out_dir, _ = digits_export
    model = onnx.load(str(out_dir / PATHS[fmt]))
    (opset,) = [o.version for o in model.opset_import if o.domain == ""]
    assert artifact(manifest, fmt)["opset"] == opset


def test_manifest_default_opset(manifest):
    assert artifact(manifest, "onnx")["opset"] == 17


@pytest.mark.parametrize(
    "fmt", ["savedmodel", "tflite", "tflite_float16", "tflite_int8"]
)
def test_manifest_tf_converter_version(manifest, fmt):
    expected = package_metadata.version("tensorflow")
    assert artifact(manifest, fmt)["converter"]["tensorflow"] == expected


@pytest.mark.parametrize("fmt", ["onnx", "onnx_int8"])
def test_manifest_tf2onnx_version(manifest, fmt):
    expected = package_metadata.version("tf2onnx")
    assert artifact(manifest, fmt)["converter"]["tf2onnx"] == expected


@pytest.mark.parametrize("fmt", DIGITS_FORMATS)
def test_manifest_parity_from_report(digits_export, manifest, fmt):
    _, report = digits_export
    assert artifact(manifest, fmt)["parity"] == report["formats"][fmt]


@pytest.mark.parametrize("tool", TOOLS)
def test_manifest_tool_version(manifest, tool):
    assert manifest["versions"][tool] == package_metadata.version(tool)


@pytest.mark.parametrize("tool", TOOLS)
def test_report_tool_version(digits_export, tool):
    _, report = digits_export
    assert report["versions"][tool] == package_metadata.version(tool)


def test_manifest_class_labels(manifest):
    assert manifest["metadata"]["class_labels"] == DIGITS_CLASS_LABELS


def test_manifest_preprocessing(manifest):
    assert manifest["metadata"]["preprocessing"] == STORED_PREPROCESSING


# Metadata stored inside each artifact


@pytest.mark.parametrize("fmt", ["onnx", "onnx_int8"])
@pytest.mark.parametrize("key", ["class_labels", "preprocessing", "layout"])
def test_onnx_metadata_key(digits_export, fmt, key):
    out_dir, _ = digits_export
    assert key in onnx_props(out_dir / PATHS[fmt])


@pytest.mark.parametrize("fmt", ["onnx", "onnx_int8"])
def test_onnx_class_labels(digits_export, fmt):
    out_dir, _ = digits_export
    props = onnx_props(out_dir / PATHS[fmt])
    assert json.loads(props["class_labels"]) == DIGITS_CLASS_LABELS


@pytest.mark.parametrize("fmt", ["onnx", "onnx_int8"])
def test_onnx_preprocessing(digits_export, fmt):
    out_dir, _ = digits_export
    props = onnx_props(out_dir / PATHS[fmt])
    assert json.loads(props["preprocessing"]) == STORED_PREPROCESSING


@pytest.mark.parametrize("fmt", ["onnx", "onnx_int8"])
def test_onnx_layout_nhwc(digits_export, fmt):
    out_dir, _ = digits_export
    assert onnx_props(out_dir / PATHS[fmt])["layout"] == "NHWC"


def test_savedmodel_metadata_asset(digits_export):
    out_dir, _ = digits_export
    asset = out_dir / "saved_model" / "assets" / "metadata.json"
    expected = {
        "class_labels": DIGITS_CLASS_LABELS,
        "preprocessing": STORED_PREPROCESSING,
    }
    assert json.loads(asset.read_text()) == expected


def small_convnet(classes=4):
    inputs = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="scores")(x)
    return keras.Model(inputs, outputs, name="convnet")


PREPROCESSING_8x8 = {"height": 8, "width": 8, "channels": 1}

BAD_METADATA = {
    "too_few_labels": {"class_labels": ["a", "b", "c"]},
    "too_many_labels": {"class_labels": ["a", "b", "c", "d", "e"]},
    # A string is not a list of names, even when it has one character per
    # class.
    "labels_as_string": {"class_labels": "abcd"},
    "unknown_key": {"preprocessing": {**PREPROCESSING_8x8, "layout": "NCHW"}},
    "std_zero": {"preprocessing": {**PREPROCESSING_8x8, "std": 0}},
    "std_list_zero": {
        "preprocessing": {
            "height": 8,
            "width": 8,
            "channels": 3,
            "std": [0.2, 0.0, 0.2],
        }
    },
    "std_nan": {"preprocessing": {**PREPROCESSING_8x8, "std": float("nan")}},
    "mean_wrong_count": {
        "preprocessing": {**PREPROCESSING_8x8, "mean": [0.1, 0.2]}
    },
    "channels_two": {"preprocessing": {**PREPROCESSING_8x8, "channels": 2}},
    "height_zero": {"preprocessing": {**PREPROCESSING_8x8, "height": 0}},
    "width_float": {"preprocessing": {**PREPROCESSING_8x8, "width": 8.5}},
    "missing_height": {"preprocessing": {"width": 8, "channels": 1}},
    "scale_infinite": {
        "preprocessing": {**PREPROCESSING_8x8, "scale": float("inf")}
    },
    "not_a_dict": {"preprocessing": [8, 8, 1]},
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_bad_metadata_raises(tmp_path, case):
    with pytest.raises(ValueError):
        export.export_model(
            small_convnet(), tmp_path / "out", ["onnx"], **BAD_METADATA[case]
        )


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_bad_metadata_writes_nothing(tmp_path, case):
    with pytest.raises(ValueError):
        export.export_model(
            small_convnet(), tmp_path / "out", ["onnx"], **BAD_METADATA[case]
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_label_count_message(tmp_path):
    with pytest.raises(ValueError, match="3 names but the model outputs 4"):
        export.export_model(
            small_convnet(),
            tmp_path / "out",
            ["onnx"],
            class_labels=["a", "b", "c"],
        )


# SavedModel signature names and dtypes


def two_output_model():
    """Two inputs of different dtypes, and outputs listed out of name order."""
    pixels = keras.Input((6, 6, 2), name="pixels")
    ids = keras.Input((3,), dtype="int32", name="ids")
    x = keras.layers.Conv2D(4, 3, name="conv")(pixels)
    x = keras.layers.Flatten(name="flat")(x)
    e = keras.layers.Embedding(256, 2, name="embed")(ids)
    e = keras.layers.Flatten(name="flat_ids")(e)
    x = keras.layers.Concatenate(name="join")([x, e])
    logits = keras.layers.Dense(5, name="logits")(x)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model([pixels, ids], [probabilities, logits], name="two_out")


@pytest.fixture(scope="module")
def two_output_export(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = two_output_model()
    out_dir = tmp_path_factory.mktemp("two_output") / "export"
    return model, out_dir, export.export_model(model, out_dir)


def two_output_feeds():
    rng = np.random.default_rng(8)
    return {
        "pixels": rng.standard_normal((4, 6, 6, 2)).astype(np.float32),
        "ids": rng.integers(0, 256, (4, 3)).astype(np.int32),
    }


def keras_two_outputs(model, feeds):
    probabilities, logits = model([feeds["pixels"], feeds["ids"]])
    return {
        "probabilities": np.asarray(probabilities),
        "logits": np.asarray(logits),
    }


def two_output_signature(out_dir):
    loaded = tf.saved_model.load(str(out_dir / "saved_model"))
    return loaded.signatures["serving_default"]


def test_two_output_export_passes(two_output_export):
    _, _, report = two_output_export
    assert report["passed"] is True


def test_savedmodel_input_names(two_output_export):
    _, out_dir, _ = two_output_export
    _, specs = two_output_signature(out_dir).structured_input_signature
    assert sorted(specs) == ["ids", "pixels"]


@pytest.mark.parametrize(
    ("name", "dtype"), [("pixels", tf.float32), ("ids", tf.int32)]
)
def test_savedmodel_input_dtype(two_output_export, name, dtype):
    _, out_dir, _ = two_output_export
    _, specs = two_output_signature(out_dir).structured_input_signature
    assert specs[name].dtype == dtype


def test_savedmodel_output_names(two_output_export):
    _, out_dir, _ = two_output_export
    outputs = two_output_signature(out_dir).structured_outputs
    assert sorted(outputs) == ["logits", "probabilities"]


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
@pytest.mark.parametrize("name", ["probabilities", "logits"])
def test_output_matched_by_name(two_output_export, fmt, name):
    model, out_dir, _ = two_output_export
    feeds = two_output_feeds()
    got = RUNNERS[fmt](out_dir, feeds)[name]
    want = keras_two_outputs(model, feeds)[name]
    assert np.max(np.abs(got - want)) <= ATOL


def test_two_outputs_differ(two_output_export):
    # Otherwise a swapped pair of outputs would pass the test above.
    model, _, _ = two_output_export
    outputs = keras_two_outputs(model, two_output_feeds())
    gap = np.abs(outputs["probabilities"] - outputs["logits"])
    assert np.max(gap) > 0.1


def test_savedmodel_digits_signature(digits_export):
    out_dir, _ = digits_export
    loaded = tf.saved_model.load(str(out_dir / "saved_model"))
    signature = loaded.signatures["serving_default"]
    _, specs = signature.structured_input_signature
    assert {k: v.dtype for k, v in specs.items()} == {"image": tf.float32}
    assert list(signature.structured_outputs) == ["predictions"]


# ONNX opset, layout and BatchNormalization folding


@pytest.fixture(scope="module", params=[13, 17])
def opset_export(request, digits_model, digits_split, tmp_path_factory):
    _, _, x_test, _ = digits_split
    out_dir = tmp_path_factory.mktemp(f"opset{request.param}") / "export"
    report = export.export_model(
        digits_model, out_dir, ["onnx"], inputs=x_test[:16], opset=request.param
    )
    return request.param, out_dir, report


def test_opset_in_model(opset_export):
    opset, out_dir, _ = opset_export
    model = onnx.load(str(out_dir / "model.onnx"))
    versions = [o.version for o in model.opset_import if o.domain == ""]
    assert versions == [opset]


def test_opset_parity_passes(opset_export):
    _, _, report = opset_export
    assert report["passed"] is True


def test_opset_in_report(opset_export):
    opset, _, report = opset_export
    assert report["onnx_opset"] == opset


@pytest.fixture(scope="module")
def nchw_export(digits_model, digits_split, tmp_path_factory):
    _, _, x_test, _ = digits_split
    out_dir = tmp_path_factory.mktemp("nchw") / "export"
    report = export.export_model(
        digits_model, out_dir, ["onnx"], inputs=x_test[:16], nchw=True
    )
    return out_dir, report


def test_nchw_input_shape(nchw_export):
    out_dir, _ = nchw_export
    session = onnxruntime.InferenceSession(
        str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.get_inputs()[0].shape == ["batch", 1, 8, 8]


def test_nchw_no_transpose(nchw_export):
    out_dir, _ = nchw_export
    assert "Transpose" not in onnx_op_types(out_dir / "model.onnx")


def test_nchw_parity_passes(nchw_export):
    _, report = nchw_export
    assert report["passed"] is True


def test_nchw_layout_recorded(nchw_export):
    out_dir, report = nchw_export
    assert onnx_props(out_dir / "model.onnx")["layout"] == "NCHW"
    assert report["onnx_layout"] == "NCHW"


def test_nchw_direct_matches_keras(nchw_export, digits_model, digits_split):
    out_dir, _ = nchw_export
    _, _, x_test, _ = digits_split
    nhwc = x_test[:12]
    session = onnxruntime.InferenceSession(
        str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    nchw = np.ascontiguousarray(np.transpose(nhwc, (0, 3, 1, 2)))
    got = session.run(["predictions"], {"image": nchw})[0]
    want = np.asarray(digits_model(nhwc, training=False))
    assert np.max(np.abs(got - want)) <= ATOL


def test_nchw_int8_exports(digits_model, digits_split, tmp_path):
    # The int8 ONNX file is calibrated on the float ONNX file, which takes
    # channels-first inputs when nchw=True.
    x_train, y_train, x_test, y_test = digits_split
    report = export.export_model(
        digits_model,
        tmp_path / "out",
        ["onnx", "onnx_int8"],
        inputs=x_test[:64],
        labels=y_test[:64],
        calibration=x_train[:64],
        nchw=True,
    )
    assert report["formats"]["onnx_int8"]["passed"] is True


def test_resnet_onnx_folds_batchnorm(digits_export):
    out_dir, _ = digits_export
    assert "BatchNormalization" not in onnx_op_types(out_dir / "model.onnx")


def test_resnet_onnx_no_bn_arithmetic(digits_export):
    # Folding leaves each BatchNormalization's scale in the Conv weights; an
    # unfolded inference BatchNormalization would appear as Mul nodes.
    out_dir, _ = digits_export
    assert "Mul" not in onnx_op_types(out_dir / "model.onnx")


def test_resnet_onnx_conv_count(digits_export):
    out_dir, _ = digits_export
    assert onnx_op_types(out_dir / "model.onnx").count("Conv") == 19


def test_resnet_keras_has_batchnorm(digits_model):
    # The folding tests mean something only if the model has the layers.
    layers = [
        layer
        for layer in digits_model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(layers) == 19


# Layers that act only in training


def augmented_model():
    inputs = keras.Input((12, 12, 3), name="pixels")
    x = keras.layers.RandomFlip(name="flip")(inputs)
    x = keras.layers.RandomRotation(0.2, name="rotate")(x)
    x = keras.layers.RandomTranslation(0.2, 0.2, name="translate")(x)
    x = keras.layers.Conv2D(8, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(4, name="scores")(x)
    model = keras.Model(inputs, outputs, name="augmented")

    # Moving statistics far from the batch statistics, so that running
    # BatchNormalization in training mode would change the output.
    rng = np.random.default_rng(4)
    bn = model.get_layer("bn")
    gamma, beta, mean, variance = bn.get_weights()
    bn.set_weights(
        [
            rng.uniform(0.5, 2.0, gamma.shape).astype(np.float32),
            rng.normal(0.0, 1.0, beta.shape).astype(np.float32),
            rng.normal(0.0, 2.0, mean.shape).astype(np.float32),
            rng.uniform(0.1, 3.0, variance.shape).astype(np.float32),
        ]
    )
    return model


def augmented_batch():
    return (
        np.random.default_rng(9)
        .standard_normal((8, 12, 12, 3))
        .astype(np.float32)
    )


@pytest.fixture(scope="module")
def augmented_export(tmp_path_factory):
    keras.utils.set_random_seed(5)
    model = augmented_model()
    out_dir = tmp_path_factory.mktemp("augmented") / "export"
    report = export.export_model(model, out_dir, inputs=augmented_batch())
    return model, out_dir, report


def test_augmented_export_passes(augmented_export):
    _, _, report = augmented_export
    assert report["passed"] is True


def test_augmented_training_differs(augmented_export):
    # Checks that the layers above act in training mode, so that an artifact
    # exported in training behaviour would differ from inference. A copy
    # runs in training mode, because that updates the BatchNormalization
    # moving statistics of the model it runs.
    exported, _, _ = augmented_export
    model = augmented_model()
    model.set_weights(exported.get_weights())
    x = augmented_batch()
    inference = np.asarray(model(x, training=False))
    training = np.asarray(model(x, training=True))
    assert np.max(np.abs(inference - training)) > 10 * ATOL


def test_augmented_onnx_no_random(augmented_export):
    _, out_dir, _ = augmented_export
    random = [
        op for op in onnx_op_types(out_dir / "model.onnx") if "Random" in op
    ]
    assert random == []


def test_augmented_tflite_no_random(augmented_export):
    _, out_dir, _ = augmented_export
    interpreter = Interpreter(model_path=str(out_dir / "model.tflite"))
    names = [op["op_name"] for op in interpreter._get_ops_details()]
    assert [name for name in names if "RANDOM" in name] == []


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_augmented_alone_equals_batch(augmented_export, fmt):
    _, out_dir, _ = augmented_export
    x = augmented_batch()
    batch = RUNNERS[fmt](out_dir, {"pixels": x})["scores"]
    for i in range(len(x)):
        alone = RUNNERS[fmt](out_dir, {"pixels": x[i : i + 1]})["scores"]
        assert np.max(np.abs(alone[0] - batch[i])) <= 1e-5, i


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_augmented_runs_repeat(augmented_export, fmt):
    _, out_dir, _ = augmented_export
    x = augmented_batch()
    first = RUNNERS[fmt](out_dir, {"pixels": x})["scores"]
    second = RUNNERS[fmt](out_dir, {"pixels": x})["scores"]
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_augmented_matches_inference(augmented_export, fmt):
    model, out_dir, _ = augmented_export
    x = augmented_batch()
    got = RUNNERS[fmt](out_dir, {"pixels": x})["scores"]
    assert np.max(np.abs(got - np.asarray(model(x, training=False)))) <= ATOL


def test_random_ops_finds_uniform():
    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    def noisy(x):
        return x + tf.random.uniform(tf.shape(x))

    assert "RandomUniform" in random_ops(noisy)


def test_random_ops_finds_keras_normal():
    seed = keras.random.SeedGenerator(1)

    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    def noisy(x):
        return x + keras.random.normal(tf.shape(x), seed=seed)

    assert "StatelessRandomNormalV2" in random_ops(noisy)


def test_random_ops_empty_when_deterministic():
    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    def plain(x):
        return x * 2.0

    assert random_ops(plain) == []


def draw_normal(x, seed):
    return x + keras.random.normal(keras.ops.shape(x), seed=seed)


def draw_uniform(x, seed):
    return x + keras.random.uniform(keras.ops.shape(x), seed=seed)


def draw_truncated_normal(x, seed):
    return x + keras.random.truncated_normal(keras.ops.shape(x), seed=seed)


def draw_categorical(x, seed):
    # One class index per row, drawn from the row's logits.
    drawn = keras.random.categorical(x, 1, seed=seed)
    return x + keras.ops.cast(drawn, x.dtype)


def draw_dropout(x, seed):
    return keras.random.dropout(x, 0.5, seed=seed)


RANDOM_DRAWS = {
    "normal": draw_normal,
    "uniform": draw_uniform,
    "truncated_normal": draw_truncated_normal,
    "categorical": draw_categorical,
    "dropout": draw_dropout,
}


@keras.saving.register_keras_serializable(package="test_deploy")
class NoisyLayer(keras.layers.Layer):
    """Draws random numbers in every call, whatever `training` says."""

    def __init__(self, draw="normal", **kwargs):
        super().__init__(**kwargs)
        self.draw = draw
        self.seed_generator = keras.random.SeedGenerator(7)

    def call(self, inputs, training=None):
        return RANDOM_DRAWS[self.draw](inputs, self.seed_generator)

    def get_config(self):
        return {**super().get_config(), "draw": self.draw}


def noisy_model(draw):
    inputs = keras.Input((6,), name="features")
    x = NoisyLayer(draw, name="noise")(inputs)
    outputs = keras.layers.Dense(3, name="scores")(x)
    return keras.Model(inputs, outputs, name=f"noisy_{draw}")


@pytest.mark.parametrize("draw", sorted(RANDOM_DRAWS))
def test_noisy_layer_is_random(draw):
    # Checks that the layer really draws in inference mode.
    model = noisy_model(draw)
    x = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    first = np.asarray(model(x, training=False))
    second = np.asarray(model(x, training=False))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("draw", sorted(RANDOM_DRAWS))
def test_noisy_layer_raises_export_error(tmp_path, draw):
    # A SavedModel holds any TensorFlow op, so only the random-op check
    # stands between such a layer and a nondeterministic artifact.
    with pytest.raises(export.ExportError, match="random"):
        export.export_model(noisy_model(draw), tmp_path / "out", ["savedmodel"])


def test_noisy_layer_writes_nothing(tmp_path):
    with pytest.raises(export.ExportError):
        export.export_model(noisy_model("normal"), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# Mixed precision


@pytest.fixture(scope="module", params=["mixed_float16", "mixed_bfloat16"])
def mixed_model(request):
    """ResNet-20 built under a mixed policy; the float32 policy is restored."""
    keras.utils.set_random_seed(6)
    keras.config.set_dtype_policy(request.param)
    try:
        model = keras_resnet.resnet(20, input_shape=(8, 8, 1), classes=10)
    finally:
        keras.config.set_dtype_policy("float32")
    return request.param, model


@pytest.fixture(scope="module")
def mixed_export(mixed_model, tmp_path_factory):
    policy, model = mixed_model
    out_dir = tmp_path_factory.mktemp(policy) / "export"
    return model, out_dir, export.export_model(model, out_dir)


def test_mixed_model_computes_low(mixed_model):
    # Checks that the fixture really builds a mixed-precision model.
    _, model = mixed_model
    assert model.outputs[0].dtype in ("float16", "bfloat16")


def test_mixed_export_passes(mixed_export):
    _, _, report = mixed_export
    assert report["passed"] is True


def test_mixed_report_entry(mixed_export):
    _, _, report = mixed_export
    assert report["mixed_precision"] is not None


def test_mixed_check_parity_entry(mixed_export):
    model, out_dir, _ = mixed_export
    report = export.check_parity(model, out_dir)
    assert report["mixed_precision"] is not None


@pytest.mark.parametrize("side", ["input", "output"])
def test_mixed_onnx_float32(mixed_export, side):
    _, out_dir, _ = mixed_export
    graph = onnx.load(str(out_dir / "model.onnx")).graph
    values = graph.input if side == "input" else graph.output
    types = [v.type.tensor_type.elem_type for v in values]
    assert types == [onnx.TensorProto.FLOAT]


def test_mixed_onnx_weights_float32(mixed_export):
    _, out_dir, _ = mixed_export
    graph = onnx.load(str(out_dir / "model.onnx")).graph
    low = {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    assert [i.name for i in graph.initializer if i.data_type in low] == []


@pytest.mark.parametrize("side", [0, 1])
def test_mixed_tflite_float32(mixed_export, side):
    _, out_dir, _ = mixed_export
    runner = Interpreter(
        model_path=str(out_dir / "model.tflite")
    ).get_signature_runner("serving_default")
    details = (runner.get_input_details(), runner.get_output_details())[side]
    dtypes = [np.dtype(d["dtype"]) for d in details.values()]
    assert dtypes == [np.dtype(np.float32)]


def test_mixed_savedmodel_input_float32(mixed_export):
    _, out_dir, _ = mixed_export
    signature = tf.saved_model.load(str(out_dir / "saved_model")).signatures[
        "serving_default"
    ]
    _, specs = signature.structured_input_signature
    assert [spec.dtype for spec in specs.values()] == [tf.float32]


def test_mixed_savedmodel_output_float32(mixed_export):
    _, out_dir, _ = mixed_export
    signature = tf.saved_model.load(str(out_dir / "saved_model")).signatures[
        "serving_default"
    ]
    dtypes = [spec.dtype for spec in signature.structured_outputs.values()]
    assert dtypes == [tf.float32]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_export_under_active_policy(tmp_path, policy):
    # A script that sets the policy once at the top and exports at the end.
    keras.config.set_dtype_policy(policy)
    try:
        model = keras_resnet.resnet(20, input_shape=(8, 8, 1), classes=10)
        report = export.export_model(model, tmp_path / "out", ["onnx"])
    finally:
        keras.config.set_dtype_policy("float32")
    assert report["passed"] is True
