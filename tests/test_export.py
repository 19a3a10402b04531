import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import export
from keras_resnet import resnet

SMALL_SHAPE = (16, 16, 3)
FORMATS = ("savedmodel", "tflite", "onnx")
ARTIFACTS = {
    "savedmodel": "saved_model",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
}
# The atol of export.FLOAT32. These tests compare the artifacts with the
# Keras model again, without the package's own runtimes.
ATOL = 1e-4


def disk_size(path):
    if path.is_file():
        return path.stat().st_size
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, files in os.walk(path)
        for name in files
    )


def staging_dirs(parent, out_name):
    return sorted(p.name for p in parent.glob(f".{out_name}.*"))


# Each runner loads an artifact with the runtime's own API and returns the
# output named "predictions".


def run_savedmodel(out_dir, x):
    loaded = tf.saved_model.load(str(out_dir / "saved_model"))
    outputs = loaded.signatures["serving_default"](image=tf.constant(x))
    return outputs["predictions"].numpy()


def run_tflite(out_dir, x):
    interpreter = Interpreter(model_path=str(out_dir / "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    return np.array(runner(image=x)["predictions"])


def run_onnx(out_dir, x):
    session = onnxruntime.InferenceSession(
        str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return session.run(["predictions"], {"image": x})[0]


RUNNERS = {
    "savedmodel": run_savedmodel,
    "tflite": run_tflite,
    "onnx": run_onnx,
}


def onnx_io(path):
    graph = onnx.load(str(path)).graph
    return graph.input, graph.output


def tflite_signatures(path):
    return Interpreter(model_path=str(path)).get_signature_list()


@dataclass
class Exported:
    model: keras.Model
    out_dir: Path
    report: dict
    weights_before: list = field(repr=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """ResNet-20 at 16 x 16, exported once to all three formats."""
    keras.utils.set_random_seed(0)
    model = resnet(20, input_shape=SMALL_SHAPE)
    weights_before = [w.copy() for w in model.get_weights()]
    out_dir = tmp_path_factory.mktemp("resnet20") / "export"
    report = export.export_model(model, out_dir)
    return Exported(model, out_dir, report, weights_before)


# Files and report


@pytest.mark.parametrize(
    "name", ["saved_model", "model.tflite", "model.onnx", "report.json"]
)
def test_export_writes_artifact(exported, name):
    assert (exported.out_dir / name).exists()


def test_export_saved_model_has_pb(exported):
    assert (exported.out_dir / "saved_model" / "saved_model.pb").is_file()


def test_export_leaves_no_staging(exported):
    parent = exported.out_dir.parent
    assert staging_dirs(parent, exported.out_dir.name) == []


def test_report_equals_json_file(exported):
    written = json.loads((exported.out_dir / "report.json").read_text())
    assert exported.report == written


def test_report_lists_formats(exported):
    assert list(exported.report["formats"]) == list(FORMATS)


def test_report_overall_passed(exported):
    assert exported.report["passed"] is True


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_format_passed(exported, fmt):
    assert exported.report["formats"][fmt]["passed"] is True


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_error_within_tolerance(exported, fmt):
    error = exported.report["formats"][fmt]["max_abs_error"]
    assert 0.0 <= error <= ATOL


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_top1_agreement(exported, fmt):
    assert exported.report["formats"][fmt]["top1_agreement"] == 1.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_batch_sizes(exported, fmt):
    assert exported.report["formats"][fmt]["batch_sizes"] == [1, 7]


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_size_matches_disk(exported, fmt):
    actual = disk_size(exported.out_dir / ARTIFACTS[fmt])
    assert exported.report["formats"][fmt]["file_size_bytes"] == actual


def test_report_names_signature(exported):
    assert [i["name"] for i in exported.report["inputs"]] == ["image"]
    assert [o["name"] for o in exported.report["outputs"]] == ["predictions"]


def test_export_keeps_source_weights(exported):
    after = exported.model.get_weights()
    for before, now in zip(exported.weights_before, after, strict=True):
        assert np.array_equal(before, now)


def test_export_dir_mode_follows_umask(exported, tmp_path):
    # A directory that os.mkdir creates in the same process, under the same
    # umask, is what a user expects `out_dir` to look like.
    reference = tmp_path / "reference"
    reference.mkdir()
    expected = oct(stat.S_IMODE(reference.stat().st_mode))
    assert oct(stat.S_IMODE(exported.out_dir.stat().st_mode)) == expected


# Artifacts in their own runtimes


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("fmt", FORMATS)
def test_artifact_output_shape(exported, images, fmt, batch):
    got = RUNNERS[fmt](exported.out_dir, images(batch, seed=2))
    assert got.shape == (batch, 10)


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("fmt", FORMATS)
def test_artifact_matches_keras(exported, images, predict, fmt, batch):
    x = images(batch, seed=2)
    got = RUNNERS[fmt](exported.out_dir, x)
    want = predict(exported.model, x)
    assert np.max(np.abs(got - want)) <= ATOL


def test_onnx_input_name(exported):
    inputs, _ = onnx_io(exported.out_dir / "model.onnx")
    assert [value.name for value in inputs] == ["image"]


def test_onnx_output_name(exported):
    _, outputs = onnx_io(exported.out_dir / "model.onnx")
    assert [value.name for value in outputs] == ["predictions"]


@pytest.mark.parametrize("side", ["input", "output"])
def test_onnx_batch_dim_symbolic(exported, side):
    inputs, outputs = onnx_io(exported.out_dir / "model.onnx")
    value = (inputs if side == "input" else outputs)[0]
    batch = value.type.tensor_type.shape.dim[0]
    assert not batch.HasField("dim_value")
    assert batch.dim_param != ""


def test_onnx_session_batch_symbolic(exported):
    session = onnxruntime.InferenceSession(
        str(exported.out_dir / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    assert isinstance(session.get_inputs()[0].shape[0], str)


def test_tflite_signature_names(exported):
    signatures = tflite_signatures(exported.out_dir / "model.tflite")
    expected = {"inputs": ["image"], "outputs": ["predictions"]}
    assert signatures == {"serving_default": expected}


def test_savedmodel_signature_names(exported):
    loaded = tf.saved_model.load(str(exported.out_dir / "saved_model"))
    signature = loaded.signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["image"]
    assert list(signature.structured_outputs) == ["predictions"]


# Planted defect: a BatchNormalization epsilon that differs from the export


@pytest.fixture(scope="module")
def faithful_twin(exported):
    """A second ResNet-20 holding the exported model's weights."""
    twin = resnet(20, input_shape=SMALL_SHAPE)
    twin.set_weights(exported.model.get_weights())
    return twin


@pytest.fixture(scope="module")
def defective_twin(exported):
    twin = resnet(20, input_shape=SMALL_SHAPE)
    twin.set_weights(exported.model.get_weights())
    # Every epsilon, not one: the softmax of a freshly initialized ResNet-20
    # is often saturated, and changing conv4_block3_2_bn alone then moved
    # the probabilities by less than 1e-6 in some initializations.
    for layer in twin.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.epsilon = 3.0
    return twin


@pytest.fixture(scope="module")
def defect_report(exported, defective_twin):
    return export.check_parity(defective_twin, exported.out_dir)


def test_twin_passes_parity(exported, faithful_twin):
    report = export.check_parity(faithful_twin, exported.out_dir)
    assert report["passed"] is True


def test_defect_changes_keras_output(exported, defective_twin, images, predict):
    x = images(7)
    change = np.max(
        np.abs(predict(defective_twin, x) - predict(exported.model, x))
    )
    assert change > 10 * ATOL


@pytest.mark.parametrize("fmt", FORMATS)
def test_defect_fails_format(defect_report, fmt):
    assert defect_report["formats"][fmt]["passed"] is False


@pytest.mark.parametrize("fmt", FORMATS)
def test_defect_error_exceeds_tolerance(defect_report, fmt):
    assert defect_report["formats"][fmt]["max_abs_error"] > ATOL


def test_defect_fails_overall(defect_report):
    assert defect_report["passed"] is False


# Round trip through a .keras file


@pytest.fixture(scope="module")
def reloaded_export(exported, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reloaded")
    path = workdir / "resnet20.keras"
    exported.model.save(path)
    model = keras.saving.load_model(path)
    report = export.export_model(model, workdir / "export")
    return model, workdir / "export", report


def test_reloaded_export_passes(reloaded_export):
    _, _, report = reloaded_export
    assert report["passed"] is True


@pytest.mark.parametrize("fmt", FORMATS)
def test_reloaded_matches_original(
    exported, reloaded_export, images, predict, fmt
):
    _, out_dir, _ = reloaded_export
    x = images(7, seed=3)
    got = RUNNERS[fmt](out_dir, x)
    assert np.max(np.abs(got - predict(exported.model, x))) <= ATOL


def test_reloaded_onnx_names(reloaded_export):
    _, out_dir, _ = reloaded_export
    inputs, outputs = onnx_io(out_dir / "model.onnx")
    assert [value.name for value in inputs] == ["image"]
    assert [value.name for value in outputs] == ["predictions"]


def test_reloaded_tflite_names(reloaded_export):
    _, out_dir, _ = reloaded_export
    signatures = tflite_signatures(out_dir / "model.tflite")
    expected = {"inputs": ["image"], "outputs": ["predictions"]}
    assert signatures == {"serving_default": expected}


# Models not built by keras_resnet


def small_convnet():
    """A functional conv net with BatchNormalization and Dropout."""
    inputs = keras.Input((12, 12, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="scores")(x)
    model = keras.Model(inputs, outputs, name="convnet")

    # Moving statistics far from the batch statistics, so that an artifact
    # that ran BatchNormalization (or Dropout) in training mode would fail.
    rng = np.random.default_rng(4)
    gamma, beta, mean, variance = model.get_layer("bn").get_weights()
    model.get_layer("bn").set_weights(
        [
            rng.uniform(0.5, 2.0, gamma.shape).astype(np.float32),
            rng.normal(0.0, 1.0, beta.shape).astype(np.float32),
            rng.normal(0.0, 2.0, mean.shape).astype(np.float32),
            rng.uniform(0.1, 3.0, variance.shape).astype(np.float32),
        ]
    )
    return model


@pytest.fixture(scope="module")
def convnet_export(tmp_path_factory):
    model = small_convnet()
    out_dir = tmp_path_factory.mktemp("convnet") / "export"
    return model, out_dir, export.export_model(model, out_dir)


def test_functional_export_passes(convnet_export):
    _, _, report = convnet_export
    assert report["passed"] is True


def test_functional_onnx_matches_keras(convnet_export, images, predict):
    model, out_dir, _ = convnet_export
    x = images(5, (12, 12, 3), seed=5)
    session = onnxruntime.InferenceSession(
        str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    got = session.run(["scores"], {"pixels": x})[0]
    assert np.max(np.abs(got - predict(model, x))) <= ATOL


def test_functional_training_mode_differs(convnet_export, images):
    # Checks that the moving statistics above make training mode differ.
    model, _, _ = convnet_export
    x = images(5, (12, 12, 3), seed=5)
    inference = keras.ops.convert_to_numpy(model(x, training=False))
    training = keras.ops.convert_to_numpy(model(x, training=True))
    assert np.max(np.abs(inference - training)) > 10 * ATOL


def test_sequential_export_passes(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3), name="pixels"),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(5, name="scores"),
        ],
        name="sequential_net",
    )
    report = export.export_model(model, tmp_path / "export")
    assert report["passed"] is True


def test_sequential_onnx_names(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3), name="pixels"),
            keras.layers.Dense(3, name="scores"),
        ]
    )
    export.export_model(model, tmp_path / "export", formats=["onnx"])
    inputs, outputs = onnx_io(tmp_path / "export" / "model.onnx")
    assert [value.name for value in inputs] == ["pixels"]
    assert [value.name for value in outputs] == ["scores"]


# Parity inputs


@pytest.mark.parametrize("as_dict", [False, True])
def test_given_inputs_set_batch(images, tmp_path, as_dict):
    model = small_convnet()
    x = images(5, (12, 12, 3))
    inputs = {"pixels": x} if as_dict else x
    report = export.export_model(
        model, tmp_path / "export", formats=["onnx"], inputs=inputs
    )
    assert report["formats"]["onnx"]["batch_sizes"] == [1, 5]


def nan_images(images):
    x = images(3, (12, 12, 3))
    x[1, 2, 3, 0] = np.nan
    return x


BAD_INPUTS = {
    "wrong_shape": lambda images: images(3, (8, 8, 3)),
    "wrong_rank": lambda images: images(3, (12, 12, 3))[0],
    "nan": nan_images,
    "wrong_name": lambda images: {"image": images(3, (12, 12, 3))},
    "extra_name": lambda images: {
        "pixels": images(3, (12, 12, 3)),
        "mask": images(3, (12, 12, 3)),
    },
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_write_nothing(images, tmp_path, case):
    with pytest.raises(export.InputError):
        export.export_model(
            small_convnet(), tmp_path / "out", inputs=BAD_INPUTS[case](images)
        )
    assert not (tmp_path / "out").exists()
    assert staging_dirs(tmp_path, "out") == []


def test_unknown_format_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="coreml"):
        export.export_model(small_convnet(), tmp_path / "out", ["coreml"])
    assert list(tmp_path.iterdir()) == []


# Converter failure: Hashing runs tf.strings ops that neither TFLite's
# builtin op set nor tf2onnx supports, so conversion fails for a real reason.


def hashing_model():
    inputs = keras.Input((4,), dtype="int64", name="ids")
    x = keras.layers.Hashing(num_bins=8, name="hash")(inputs)
    x = keras.layers.Embedding(8, 3, name="embed")(x)
    outputs = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("tflite", "TFLite conversion failed"),
        ("onnx", "ONNX conversion failed"),
    ],
)
def test_converter_failure_names_format(tmp_path, fmt, message):
    with pytest.raises(export.ExportError, match=message):
        export.export_model(hashing_model(), tmp_path / "out", [fmt])


def test_converter_failure_writes_nothing(tmp_path):
    with pytest.raises(export.ExportError):
        export.export_model(hashing_model(), tmp_path / "out", ["tflite"])
    assert not (tmp_path / "out").exists()
    assert staging_dirs(tmp_path, "out") == []


def set_catch_errors(monkeypatch, value):
    """Set tf2onnx's TF2ONNX_CATCH_ERRORS for one test, or unset it (None)."""
    if value is None:
        monkeypatch.delenv("TF2ONNX_CATCH_ERRORS", raising=False)
    else:
        monkeypatch.setenv("TF2ONNX_CATCH_ERRORS", value)


def test_onnx_failure_names_optimizer_switch(tmp_path):
    with pytest.raises(export.ExportError, match="TF2ONNX_CATCH_ERRORS=TRUE"):
        export.export_model(hashing_model(), tmp_path / "out", ["onnx"])


@pytest.mark.parametrize("before", [None, "TRUE"])
def test_onnx_conversion_leaves_environment(tmp_path, monkeypatch, before):
    # The exporter sets tf2onnx's switch only for the conversion, and keeps
    # a value the caller chose.
    set_catch_errors(monkeypatch, before)
    report = export.export_model(small_convnet(), tmp_path / "out", ["onnx"])
    assert report["passed"]
    assert os.environ.get("TF2ONNX_CATCH_ERRORS") == before


@pytest.mark.parametrize(
    ("before", "catches"),
    [(None, False), ("FALSE", False), ("TRUE", True), ("true", True)],
)
def test_onnx_catch_errors_reaches_optimizer(
    tmp_path, monkeypatch, before, catches
):
    # tf2onnx 1.17.0 turns the per-pass copies off for any value of the
    # variable, TRUE included, so the exporter has to unset it for TRUE.
    # The wrapper records the flag and runs tf2onnx's own optimizer.
    import tf2onnx.convert

    optimize_graph = tf2onnx.convert.optimizer.optimize_graph
    flags = []

    def recording_optimize_graph(graph, catch_errors=True, optimizers=None):
        flags.append(catch_errors)
        return optimize_graph(graph, catch_errors, optimizers=optimizers)

    monkeypatch.setattr(
        tf2onnx.convert.optimizer, "optimize_graph", recording_optimize_graph
    )
    set_catch_errors(monkeypatch, before)
    export.export_model(small_convnet(), tmp_path / "out", ["onnx"])
    assert flags == [catches]
    assert os.environ.get("TF2ONNX_CATCH_ERRORS") == before


@pytest.mark.parametrize("before", [None, "TRUE"])
def test_onnx_failure_leaves_environment(tmp_path, monkeypatch, before):
    set_catch_errors(monkeypatch, before)
    with pytest.raises(export.ExportError):
        export.export_model(hashing_model(), tmp_path / "out", ["onnx"])
    assert os.environ.get("TF2ONNX_CATCH_ERRORS") == before


# Existing output directories


def stale_out_dir(tmp_path):
    out_dir = tmp_path / "export"
    (out_dir / "saved_model").mkdir(parents=True)
    (out_dir / "saved_model" / "stale.txt").write_text("old")
    (out_dir / "model.onnx").write_bytes(b"not an onnx file")
    (out_dir / "notes.txt").write_text("kept")
    return out_dir


def test_existing_dir_kept_without_overwrite(tmp_path):
    out_dir = stale_out_dir(tmp_path)

    with pytest.raises(FileExistsError, match="overwrite"):
        export.export_model(small_convnet(), out_dir, ["savedmodel", "onnx"])

    assert (out_dir / "notes.txt").read_text() == "kept"
    assert (out_dir / "model.onnx").read_bytes() == b"not an onnx file"
    assert staging_dirs(tmp_path, "export") == []


def test_overwrite_replaces_directory(tmp_path):
    out_dir = stale_out_dir(tmp_path)

    export.export_model(
        small_convnet(), out_dir, ["savedmodel", "onnx"], overwrite=True
    )

    assert not (out_dir / "saved_model" / "stale.txt").exists()
    assert not (out_dir / "notes.txt").exists()
    assert (out_dir / "saved_model" / "saved_model.pb").is_file()
    assert [value.name for value in onnx_io(out_dir / "model.onnx")[0]] == [
        "pixels"
    ]
    report = json.loads((out_dir / "report.json").read_text())
    assert list(report["formats"]) == ["savedmodel", "onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_empty_existing_dir_is_used(tmp_path):
    out_dir = tmp_path / "export"
    out_dir.mkdir()

    export.export_model(small_convnet(), out_dir, ["onnx"])

    assert (out_dir / "model.onnx").is_file()


# Dynamic spatial dimensions


def any_size_resnet():
    return resnet(
        20, input_shape=(None, None, 3), include_top=False, pooling="avg"
    )


def test_dynamic_model_needs_inputs(tmp_path):
    with pytest.raises(export.InputError, match="dynamic"):
        export.export_model(any_size_resnet(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def dynamic_export(tmp_path_factory):
    model = any_size_resnet()
    x = np.random.default_rng(6).standard_normal((3, 12, 12, 3))
    out_dir = tmp_path_factory.mktemp("dynamic") / "export"
    report = export.export_model(model, out_dir, inputs=x.astype(np.float32))
    return model, out_dir, report


def test_dynamic_model_exports(dynamic_export):
    _, _, report = dynamic_export
    assert report["passed"] is True


def test_dynamic_model_batch_sizes(dynamic_export):
    _, _, report = dynamic_export
    assert report["formats"]["onnx"]["batch_sizes"] == [1, 3]


def test_dynamic_onnx_other_size(dynamic_export, images, predict):
    # The parity check ran at 12 x 12, and the artifact takes other sizes.
    model, out_dir, _ = dynamic_export
    x = images(2, (20, 20, 3), seed=7)
    session = onnxruntime.InferenceSession(
        str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    got = session.run(["avg_pool"], {"image": x})[0]
    assert np.max(np.abs(got - predict(model, x))) <= ATOL


# Slow cases


@pytest.mark.heavy
def test_resnet56_export_passes(tmp_path):
    report = export.export_model(resnet(56), tmp_path / "export")
    assert report["passed"] is True
