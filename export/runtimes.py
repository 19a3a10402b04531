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

    def __call__(self, feeds):
        results = self._signature(**feeds)
        return {name: value.numpy() for name, value in results.items()}


class TFLiteRuntime:
    """The `.tflite` file's signature in the LiteRT interpreter.

    The signature runner resizes its inputs to each call's batch size.
    """

    def __init__(self, path, num_threads=None):
        self._interpreter = Interpreter(
            model_path=str(path), num_threads=num_threads
        )
        self._runner = self._interpreter.get_signature_runner(SIGNATURE_KEY)

    def __call__(self, feeds):
        results = self._runner(**feeds)
        return {name: np.array(value) for name, value in results.items()}


class OnnxRuntime:
    """The `.onnx` file in an onnxruntime CPU session."""

    def __init__(self, path):
        self._session = onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]
        )
        self._output_names = [o.name for o in self._session.get_outputs()]

    def __call__(self, feeds):
        results = self._session.run(self._output_names, feeds)
        return dict(zip(self._output_names, results, strict=True))


# Where `export_model` writes each format inside its output directory.
ARTIFACT_PATHS = {
    "savedmodel": "saved_model",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
}

RUNTIMES = {
    "savedmodel": SavedModelRuntime,
    "tflite": TFLiteRuntime,
    "onnx": OnnxRuntime,
}


def load_runtime(fmt, path):
    """Load the artifact of format `fmt` at `path` in its runtime."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No {fmt} artifact at {path}")
    return RUNTIMES[fmt](path)
