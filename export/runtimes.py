"""Run an exported artifact in its own runtime.

Every runtime is a callable from a dict of named numpy inputs to a dict of
named numpy outputs, so the parity check and the demo treat all formats
alike.
"""

from pathlib import Path

import keras
import numpy as np
import onnxruntime
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from export.formats import ARTIFACT_PATHS, FORMATS
from export.onnx import LAYOUT_KEY
from export.savedmodel import SIGNATURE_KEY


class KerasRuntime:
    """The Keras model itself, in inference mode (`training=False`)."""

    def __init__(self, model, inputs, outputs):
        self.model = model
        self.input_names = [info.name for info in inputs]
        self.output_names = [info.name for info in outputs]

    def __call__(self, feeds):
        args = [feeds[name] for name in self.input_names]
        results = self.model(
            args[0] if len(args) == 1 else args, training=False
        )
        results = tf.nest.flatten(results)
        return {
            name: keras.ops.convert_to_numpy(result)
            for name, result in zip(self.output_names, results, strict=True)
        }


class SavedModelRuntime:
    """The SavedModel's `serving_default` signature, after a fresh load."""

    def __init__(self, path):
        self._loaded = tf.saved_model.load(str(path))
        self._signature = self._loaded.signatures[SIGNATURE_KEY]
        _, specs = self._signature.structured_input_signature
        self.input_names = sorted(specs)

    def __call__(self, feeds):
        results = self._signature(**feeds)
        return {name: value.numpy() for name, value in results.items()}


class TFLiteRuntime:
    """The `.tflite` file's signature in the LiteRT interpreter.

    The signature runner resizes its inputs to each call's batch size.
    Float inputs for an integer input tensor are quantized with that
    tensor's scale and zero point, and integer outputs are dequantized
    with theirs, so a full-integer model takes and returns the same float
    values as the float model.
    """

    def __init__(self, path, num_threads=None):
        self._interpreter = Interpreter(
            model_path=str(path), num_threads=num_threads
        )
        self._runner = self._interpreter.get_signature_runner(SIGNATURE_KEY)
        self._input_details = self._runner.get_input_details()
        self._output_details = self._runner.get_output_details()
        self.input_names = sorted(self._input_details)

    def _quantize(self, name, value):
        detail = self._input_details[name]
        dtype = np.dtype(detail["dtype"])
        value = np.asarray(value)
        scale, zero_point = detail["quantization"]
        if (
            np.issubdtype(dtype, np.integer)
            and scale
            and not (np.issubdtype(value.dtype, np.integer))
        ):
            info = np.iinfo(dtype)
            value = np.round(value / scale + zero_point)
            return np.clip(value, info.min, info.max).astype(dtype)
        return value.astype(dtype)

    def _dequantize(self, name, value):
        value = np.array(value)
        scale, zero_point = self._output_details[name]["quantization"]
        if np.issubdtype(value.dtype, np.integer) and scale:
            return (value.astype(np.float32) - zero_point) * np.float32(scale)
        return value

    def __call__(self, feeds):
        quantized = {
            name: self._quantize(name, value) for name, value in feeds.items()
        }
        results = self._runner(**quantized)
        return {
            name: self._dequantize(name, value)
            for name, value in results.items()
        }


class OnnxRuntime:
    """The `.onnx` file in an onnxruntime CPU session.

    A file exported with NCHW layout (metadata property `layout`) takes and
    returns 4-D tensors channels first. This wrapper transposes them, so
    that it takes and returns the Keras layout, NHWC, like the others.
    """

    def __init__(self, path):
        self._session = onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]
        )
        self._output_names = [o.name for o in self._session.get_outputs()]
        self.input_names = [i.name for i in self._session.get_inputs()]
        props = self._session.get_modelmeta().custom_metadata_map
        self.nchw = props.get(LAYOUT_KEY) == "NCHW"

    def __call__(self, feeds):
        if self.nchw:
            feeds = {
                name: np.transpose(value, (0, 3, 1, 2))
                if np.ndim(value) == 4
                else value
                for name, value in feeds.items()
            }
        results = self._session.run(self._output_names, feeds)
        if self.nchw:
            results = [
                np.transpose(value, (0, 2, 3, 1)) if value.ndim == 4 else value
                for value in results
            ]
        return dict(zip(self._output_names, results, strict=True))


__all__ = ["ARTIFACT_PATHS", "load_runtime"]

RUNTIMES = {
    "savedmodel": SavedModelRuntime,
    "tflite": TFLiteRuntime,
    "onnx": OnnxRuntime,
}


def load_runtime(fmt, path):
    """Load the artifact of format `fmt` (a name such as "onnx_int8") at `path`.

    Raises:
        FileNotFoundError: when there is no artifact at `path`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No {fmt} artifact at {path}")
    return RUNTIMES[FORMATS[fmt].runtime](path)
