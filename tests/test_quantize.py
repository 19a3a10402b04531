"""Quantized artifacts: float16, dynamic-range and int8 TFLite, int8 QDQ ONNX.

The accuracy checks use ResNet-20 trained briefly on scikit-learn's digits
(the `digits_export` fixture in conftest.py), because quantization error is
only meaningful on a model whose predictions mean something.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
import pytest  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from conftest import DIGITS_CALIBRATION_SAMPLES  # noqa: E402

import export  # noqa: E402
from export.runtimes import TFLiteRuntime  # noqa: E402

QUANTIZED = ("tflite_float16", "tflite_dynamic", "tflite_int8", "onnx_int8")
INT8 = ("tflite_int8", "onnx_int8")
PATHS = {
    "tflite_float16": "model_float16.tflite",
    "tflite_dynamic": "model_dynamic.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx_int8": "model_int8.onnx",
}
# One point of accuracy on the held-out split.
MAX_ACCURACY_DROP = 0.01
# Ops that turn float32 into int8 and back at the edges of an int8 graph.
EDGE_OPS = {"QUANTIZE", "DEQUANTIZE"}


def keras_scores(model, x):
    return np.asarray(model(x, training=False))


def tflite_ops(path):
    interpreter = Interpreter(model_path=str(path))
    tensors = interpreter.get_tensor_details()
    return interpreter._get_ops_details(), tensors


def signature_details(path):
    runner = Interpreter(model_path=str(path)).get_signature_runner(
        "serving_default"
    )
    return runner.get_input_details(), runner.get_output_details()


def staging_dirs(parent, name):
    return sorted(p.name for p in parent.glob(f".{name}.*"))


# Accuracy in the report


def test_report_keras_accuracy_high(digits_export):
    # The trained model must be good enough for a one-point bound to mean
    # anything: a model at chance would pass any accuracy comparison.
    _, report = digits_export
    assert report["keras_accuracy"] >= 0.9


@pytest.mark.parametrize("fmt", QUANTIZED)
def test_report_has_accuracy(digits_export, fmt):
    _, report = digits_export
    assert isinstance(report["formats"][fmt]["accuracy"], float)


@pytest.mark.parametrize("fmt", QUANTIZED)
def test_report_has_top1_agreement(digits_export, fmt):
    _, report = digits_export
    assert report["formats"][fmt]["top1_agreement"] >= 0.95


@pytest.mark.parametrize("fmt", QUANTIZED)
def test_quantized_drop_within_point(digits_export, fmt):
    _, report = digits_export
    drop = report["keras_accuracy"] - report["formats"][fmt]["accuracy"]
    assert drop <= MAX_ACCURACY_DROP + 1e-9


@pytest.mark.parametrize("fmt", QUANTIZED)
def test_quantized_format_passes(digits_export, fmt):
    _, report = digits_export
    assert report["formats"][fmt]["passed"] is True


def test_report_keras_accuracy_true(digits_export, digits_model, digits_split):
    _, report = digits_export
    _, _, x_test, y_test = digits_split
    predicted = np.argmax(keras_scores(digits_model, x_test), axis=-1)
    assert report["keras_accuracy"] == pytest.approx(
        np.mean(predicted == y_test)
    )


def test_int8_tflite_accuracy_true(digits_export, digits_split):
    # The report's figure, recomputed with the LiteRT interpreter directly.
    out_dir, report = digits_export
    _, _, x_test, y_test = digits_split
    runner = Interpreter(
        model_path=str(out_dir / "model_int8.tflite")
    ).get_signature_runner("serving_default")
    scores = runner(image=x_test)["predictions"]
    measured = float(np.mean(np.argmax(scores, axis=-1) == y_test))
    assert report["formats"]["tflite_int8"]["accuracy"] == pytest.approx(
        measured
    )


def test_int8_onnx_accuracy_true(digits_export, digits_split):
    out_dir, report = digits_export
    _, _, x_test, y_test = digits_split
    session = onnxruntime.InferenceSession(
        str(out_dir / "model_int8.onnx"), providers=["CPUExecutionProvider"]
    )
    scores = session.run(["predictions"], {"image": x_test})[0]
    measured = float(np.mean(np.argmax(scores, axis=-1) == y_test))
    assert report["formats"]["onnx_int8"]["accuracy"] == pytest.approx(measured)


@pytest.mark.parametrize("fmt", QUANTIZED)
def test_quantized_smaller_than_float(digits_export, fmt):
    out_dir, _ = digits_export
    float_name = "model.onnx" if fmt.startswith("onnx") else "model.tflite"
    size = (out_dir / PATHS[fmt]).stat().st_size
    assert size < (out_dir / float_name).stat().st_size


# TFLite full-integer int8


def test_int8_tflite_builtin_ops_only(digits_export):
    out_dir, _ = digits_export
    ops, _ = tflite_ops(out_dir / "model_int8.tflite")
    custom = [op["op_name"] for op in ops if op["op_name"].startswith("Flex")]
    assert custom == []


def test_int8_tflite_float_only_at_edges(digits_export):
    out_dir, _ = digits_export
    ops, tensors = tflite_ops(out_dir / "model_int8.tflite")
    float_ops = set()
    for op in ops:
        operands = [*op["inputs"], *op["outputs"]]
        dtypes = {np.dtype(tensors[i]["dtype"]) for i in operands if i >= 0}
        if np.dtype(np.float32) in dtypes:
            float_ops.add(op["op_name"])
    assert float_ops <= EDGE_OPS


@pytest.mark.parametrize("op_name", ["CONV_2D", "FULLY_CONNECTED"])
def test_int8_tflite_weights_int8(digits_export, op_name):
    out_dir, _ = digits_export
    ops, tensors = tflite_ops(out_dir / "model_int8.tflite")
    selected = [op for op in ops if op["op_name"] == op_name]
    assert selected
    weight_dtypes = {
        np.dtype(tensors[op["inputs"][1]]["dtype"]) for op in selected
    }
    assert weight_dtypes == {np.dtype(np.int8)}


@pytest.mark.parametrize("op_name", ["CONV_2D", "FULLY_CONNECTED"])
def test_int8_tflite_activations_int8(digits_export, op_name):
    out_dir, _ = digits_export
    ops, tensors = tflite_ops(out_dir / "model_int8.tflite")
    selected = [op for op in ops if op["op_name"] == op_name]
    dtypes = {np.dtype(tensors[op["inputs"][0]]["dtype"]) for op in selected}
    dtypes |= {np.dtype(tensors[op["outputs"][0]]["dtype"]) for op in selected}
    assert dtypes == {np.dtype(np.int8)}


def test_int8_tflite_conv_per_channel(digits_export):
    out_dir, _ = digits_export
    ops, tensors = tflite_ops(out_dir / "model_int8.tflite")
    for op in ops:
        if op["op_name"] != "CONV_2D":
            continue
        weights = tensors[op["inputs"][1]]
        scales = weights["quantization_parameters"]["scales"]
        assert scales.shape == (weights["shape"][0],), weights["name"]


@pytest.mark.parametrize("side", [0, 1])
def test_int8_float_io_is_float32(digits_export, side):
    out_dir, _ = digits_export
    details = signature_details(out_dir / "model_int8.tflite")[side]
    assert [np.dtype(d["dtype"]) for d in details.values()] == [
        np.dtype(np.float32)
    ]


def test_dynamic_tflite_weights_int8(digits_export):
    # The converter leaves weight tensors under 1024 elements in float32
    # (TensorFlow 2.21's dynamic-range default), here the first convolution.
    out_dir, _ = digits_export
    ops, tensors = tflite_ops(out_dir / "model_dynamic.tflite")
    weights = [
        tensors[op["inputs"][1]] for op in ops if op["op_name"] == "CONV_2D"
    ]
    large = [w for w in weights if np.prod(w["shape"]) >= 1024]
    assert len(large) == 18
    assert {np.dtype(w["dtype"]) for w in large} == {np.dtype(np.int8)}


def test_dynamic_tflite_activations_float(digits_export):
    out_dir, _ = digits_export
    ops, tensors = tflite_ops(out_dir / "model_dynamic.tflite")
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    dtypes = {np.dtype(tensors[op["outputs"][0]]["dtype"]) for op in convs}
    assert dtypes == {np.dtype(np.float32)}


def test_float16_tflite_stores_float16(digits_export):
    out_dir, _ = digits_export
    _, tensors = tflite_ops(out_dir / "model_float16.tflite")
    dtypes = {np.dtype(t["dtype"]) for t in tensors}
    assert np.dtype(np.float16) in dtypes


def test_float16_tflite_no_int8(digits_export):
    out_dir, _ = digits_export
    _, tensors = tflite_ops(out_dir / "model_float16.tflite")
    dtypes = {np.dtype(t["dtype"]) for t in tensors}
    assert np.dtype(np.int8) not in dtypes


# int8 input and output


@pytest.fixture(scope="module")
def int8_io_export(digits_model, digits_split, tmp_path_factory):
    x_train, _, x_test, y_test = digits_split
    out_dir = tmp_path_factory.mktemp("int8_io") / "export"
    report = export.export_model(
        digits_model,
        out_dir,
        ["tflite_int8"],
        inputs=x_test,
        labels=y_test,
        calibration=x_train[:DIGITS_CALIBRATION_SAMPLES],
        int8_io="int8",
    )
    return out_dir, report


@pytest.mark.parametrize("side", [0, 1])
def test_int8_io_dtype_int8(int8_io_export, side):
    out_dir, _ = int8_io_export
    details = signature_details(out_dir / "model_int8.tflite")[side]
    assert [np.dtype(d["dtype"]) for d in details.values()] == [
        np.dtype(np.int8)
    ]


@pytest.mark.parametrize("side", [0, 1])
def test_int8_io_has_scale(int8_io_export, side):
    out_dir, _ = int8_io_export
    details = signature_details(out_dir / "model_int8.tflite")[side]
    (detail,) = details.values()
    scale, _ = detail["quantization"]
    assert scale > 0


@pytest.mark.parametrize("side", [0, 1])
def test_int8_io_zero_point_in_range(int8_io_export, side):
    out_dir, _ = int8_io_export
    details = signature_details(out_dir / "model_int8.tflite")[side]
    (detail,) = details.values()
    _, zero_point = detail["quantization"]
    assert -128 <= zero_point <= 127


@pytest.mark.parametrize(("side", "key"), [(0, "inputs"), (1, "outputs")])
def test_int8_io_manifest_quantization(int8_io_export, side, key):
    out_dir, _ = int8_io_export
    manifest = json.loads((out_dir / "manifest.json").read_text())
    (entry,) = manifest["artifacts"][0][key]
    (detail,) = signature_details(out_dir / "model_int8.tflite")[side].values()
    scale, zero_point = detail["quantization"]
    assert entry["dtype"] == "int8"
    assert entry["quantization"] == {
        "scale": pytest.approx(scale),
        "zero_point": zero_point,
    }


def test_int8_io_report_passes(int8_io_export):
    _, report = int8_io_export
    drop = (
        report["keras_accuracy"] - report["formats"]["tflite_int8"]["accuracy"]
    )
    assert drop <= MAX_ACCURACY_DROP + 1e-9


def test_int8_io_wrapper_returns_float(int8_io_export, digits_split):
    out_dir, _ = int8_io_export
    _, _, x_test, _ = digits_split
    outputs = TFLiteRuntime(out_dir / "model_int8.tflite")(
        {"image": x_test[:5]}
    )
    assert outputs["predictions"].dtype == np.float32


def test_int8_io_wrapper_near_keras(int8_io_export, digits_model, digits_split):
    # Softmax probabilities in [0, 1]: int8 output steps are 1/256, and a
    # few steps of error accumulate through 19 quantized convolutions.
    out_dir, _ = int8_io_export
    _, _, x_test, _ = digits_split
    outputs = TFLiteRuntime(out_dir / "model_int8.tflite")({"image": x_test})
    error = np.abs(outputs["predictions"] - keras_scores(digits_model, x_test))
    assert float(np.mean(error)) < 0.02


def test_int8_io_wrapper_top1_agrees(
    int8_io_export, digits_model, digits_split
):
    out_dir, _ = int8_io_export
    _, _, x_test, _ = digits_split
    outputs = TFLiteRuntime(out_dir / "model_int8.tflite")({"image": x_test})
    agree = np.argmax(outputs["predictions"], axis=-1) == np.argmax(
        keras_scores(digits_model, x_test), axis=-1
    )
    assert float(np.mean(agree)) >= 0.98


def test_int8_io_wrapper_uses_scales(int8_io_export, digits_split):
    # The wrapper's result, recomputed by hand from the signature's scale and
    # zero point around the raw int8 runner.
    out_dir, _ = int8_io_export
    _, _, x_test, _ = digits_split
    path = out_dir / "model_int8.tflite"
    inputs, outputs = signature_details(path)
    in_scale, in_zero = inputs["image"]["quantization"]
    out_scale, out_zero = outputs["predictions"]["quantization"]
    quantized = np.clip(np.round(x_test[:9] / in_scale + in_zero), -128, 127)
    runner = Interpreter(model_path=str(path)).get_signature_runner(
        "serving_default"
    )
    raw = runner(image=quantized.astype(np.int8))["predictions"]
    expected = (raw.astype(np.float32) - out_zero) * np.float32(out_scale)
    got = TFLiteRuntime(path)({"image": x_test[:9]})["predictions"]
    np.testing.assert_array_equal(got, expected)


# ONNX static int8, QDQ, per channel


@pytest.fixture(scope="module")
def onnx_int8_graph(digits_export):
    out_dir, _ = digits_export
    return onnx.load(str(out_dir / "model_int8.onnx")).graph


@pytest.mark.parametrize("op_type", ["QuantizeLinear", "DequantizeLinear"])
def test_onnx_int8_has_qdq(onnx_int8_graph, op_type):
    assert any(node.op_type == op_type for node in onnx_int8_graph.node)


def test_onnx_int8_conv_weights_per_channel(onnx_int8_graph):
    initializers = {i.name: i for i in onnx_int8_graph.initializer}
    producers = {
        out: node for node in onnx_int8_graph.node for out in node.output
    }
    convs = [n for n in onnx_int8_graph.node if n.op_type == "Conv"]
    assert len(convs) == 19
    for conv in convs:
        dequantize = producers[conv.input[1]]
        assert dequantize.op_type == "DequantizeLinear", conv.name
        weights = initializers[dequantize.input[0]]
        scale = initializers[dequantize.input[1]]
        assert list(scale.dims) == [weights.dims[0]], conv.name


def test_onnx_int8_conv_weights_int8(onnx_int8_graph):
    initializers = {i.name: i for i in onnx_int8_graph.initializer}
    producers = {
        out: node for node in onnx_int8_graph.node for out in node.output
    }
    weight_types = set()
    for conv in (n for n in onnx_int8_graph.node if n.op_type == "Conv"):
        weights = initializers[producers[conv.input[1]].input[0]]
        weight_types.add(weights.data_type)
    assert weight_types == {onnx.TensorProto.INT8}


def test_onnx_int8_activations_uint8(onnx_int8_graph):
    # onnxruntime's x86 integer kernels are fastest with unsigned
    # activations and signed weights.
    initializers = {i.name: i for i in onnx_int8_graph.initializer}
    zero_point_types = {
        initializers[node.input[2]].data_type
        for node in onnx_int8_graph.node
        if node.op_type == "QuantizeLinear"
    }
    assert zero_point_types == {onnx.TensorProto.UINT8}


@pytest.mark.parametrize("side", ["input", "output"])
def test_onnx_int8_float_io(onnx_int8_graph, side):
    values = (
        onnx_int8_graph.input if side == "input" else onnx_int8_graph.output
    )
    types = [v.type.tensor_type.elem_type for v in values]
    assert types == [onnx.TensorProto.FLOAT]


# Calibration data that cannot calibrate


def nan_calibration(x):
    x = x.copy()
    x[3, 4, 4, 0] = np.nan
    return x


def inf_calibration(x):
    x = x.copy()
    x[0, 0, 0, 0] = np.inf
    return x


def overflow_calibration(x):
    # Finite in float64, infinite once cast to the model's float32.
    x = x.astype(np.float64)
    x[1, 2, 2, 0] = 1e300
    return x


BAD_CALIBRATION = {
    "nan": nan_calibration,
    "inf": inf_calibration,
    "overflow": overflow_calibration,
}


@pytest.mark.parametrize("fmt", INT8)
@pytest.mark.parametrize("case", sorted(BAD_CALIBRATION))
def test_bad_calibration_rejected(
    digits_model, digits_split, tmp_path, fmt, case
):
    x_train, _, _, _ = digits_split
    calibration = BAD_CALIBRATION[case](x_train[:16])
    with pytest.raises(export.CalibrationError):
        export.export_model(
            digits_model, tmp_path / "out", [fmt], calibration=calibration
        )


def test_calibration_error_is_valueerror():
    assert issubclass(export.CalibrationError, ValueError)


@pytest.mark.parametrize("case", sorted(BAD_CALIBRATION))
def test_bad_calibration_writes_nothing(
    digits_model, digits_split, tmp_path, case
):
    x_train, _, _, _ = digits_split
    calibration = BAD_CALIBRATION[case](x_train[:16])
    with pytest.raises(export.CalibrationError):
        export.export_model(
            digits_model, tmp_path / "out", INT8, calibration=calibration
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_nan_parity_inputs_as_calibration(digits_model, digits_split, tmp_path):
    # Without calibration= the parity inputs calibrate, and NaN there is an
    # InputError before anything is written.
    _, _, x_test, _ = digits_split
    with pytest.raises(export.InputError):
        export.export_model(
            digits_model, tmp_path / "out", INT8, inputs=nan_calibration(x_test)
        )
    assert staging_dirs(tmp_path, "out") == []


def test_calibration_wrong_shape_rejected(digits_model, tmp_path):
    wrong = np.zeros((4, 16, 16, 1), dtype=np.float32)
    with pytest.raises(export.InputError, match="shape"):
        export.export_model(
            digits_model, tmp_path / "out", ["onnx_int8"], calibration=wrong
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_unknown_int8_io_rejected(digits_model, tmp_path):
    with pytest.raises(ValueError, match="int8_io"):
        export.export_model(
            digits_model, tmp_path / "out", ["tflite_int8"], int8_io="uint8"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
