"""TFLite export from the SavedModel, keeping its named signature."""

import tensorflow as tf

from export.savedmodel import SIGNATURE_KEY


def write_tflite(savedmodel_path, path):
    """Convert the SavedModel at `savedmodel_path` to a float32 `.tflite`.

    Converting from the SavedModel rather than from the Keras model keeps
    the `serving_default` signature with its input and output names, which
    `Interpreter.get_signature_runner` uses. Only builtin TFLite ops are
    allowed, so the file runs in any LiteRT interpreter without the Flex
    delegate.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(savedmodel_path), signature_keys=[SIGNATURE_KEY]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path.write_bytes(converter.convert())
