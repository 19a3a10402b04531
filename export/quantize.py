"""Quantized TFLite and ONNX artifacts, calibrated on representative data.

TFLite variants come from the SavedModel through the TFLite converter:
float16 weights, dynamic-range int8 weights, and full-integer int8 with
builtin int8 ops only, calibrated on representative inputs, with int8 or
float32 input and output. The ONNX variant is static QDQ with int8
weights per channel and uint8 activations, calibrated through
`onnxruntime.quantization` after its pre-processing step.
"""

import numpy as np
import tensorflow as tf
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.parity import InputError
from export.savedmodel import SIGNATURE_KEY

TFLITE_VARIANTS = ("float16", "dynamic", "int8")
INT8_IO_TYPES = ("int8", "float32")


class CalibrationError(InputError):
    """Calibration data that cannot calibrate the model."""


def check_calibration(feeds):
    """Raise CalibrationError unless every calibration array is finite.

    NaN or infinity would make the calibrated ranges, and so every scale
    derived from them, meaningless, so they are rejected before any
    conversion starts.
    """
    if not feeds:
        raise CalibrationError("Calibration data is empty.")
    for name, array in feeds.items():
        if array.shape[0] < 1:
            raise CalibrationError(f"Calibration input {name!r} is empty.")
        if np.issubdtype(array.dtype, np.floating) and not np.all(
            np.isfinite(array)
        ):
            bad = int(np.sum(~np.isfinite(array)))
            raise CalibrationError(
                f"Calibration input {name!r} contains {bad} NaN or infinite "
                "values; pass finite representative samples."
            )


def _samples(feeds):
    batch = next(iter(feeds.values())).shape[0]
    for index in range(batch):
        yield {name: array[index : index + 1] for name, array in feeds.items()}


def write_tflite_variant(
    savedmodel_path, path, variant, calibration=None, int8_io="float32"
):
    """Convert the SavedModel to a quantized `.tflite` file.

    Args:
        savedmodel_path: the float32 SavedModel with `serving_default`.
        path: output file.
        variant: "float16" (float16 weights, float32 arithmetic on CPUs),
            "dynamic" (int8 weights, activations quantized at run time) or
            "int8" (full-integer builtin int8 ops).
        calibration: dict of named float inputs, for "int8".
        int8_io: "int8" for int8 input and output tensors, "float32" to
            keep float32 input and output around the int8 graph.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(savedmodel_path), signature_keys=[SIGNATURE_KEY]
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        check_calibration(calibration)
        converter.representative_dataset = lambda: _samples(calibration)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        if int8_io == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())


class _Reader(CalibrationDataReader):
    def __init__(self, feeds):
        self._samples = _samples(feeds)

    def get_next(self):
        return next(self._samples, None)


def write_onnx_int8(float_path, path, calibration, scratch_dir):
    """Quantize the float32 ONNX file to static int8 QDQ at `path`.

    `quant_pre_process` first runs ONNX shape inference and onnxruntime's
    basic graph optimizations, as onnxruntime recommends before static
    quantization. Its symbolic shape inference is skipped, because it
    stops on the symbolic batch dimension of tf2onnx graphs. Weights are
    quantized to int8 per output channel and activations to uint8 per
    tensor. On x86, onnxruntime's integer kernels take unsigned
    activations and signed weights (the operand order of the VNNI
    instruction), so int8 activations take a slower path that gained
    little over float32. `docs/BENCHMARKS.md` gives the speed-up.
    """
    check_calibration(calibration)
    prepared = scratch_dir / "model_prepared.onnx"
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(path),
        _Reader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    prepared.unlink()
