"""Class labels and preprocessing that travel with the exported model.

The metadata is a JSON object with two keys:

- `class_labels`: a list with one name per output class, or None.
- `preprocessing`: how to turn an image file into the model input, or
  None: `height` and `width` in pixels, `channels` (1 for grayscale, 3 for
  RGB), and `scale`, `mean` and `std`, so that
  input = (pixel * scale - mean) / std for 8-bit pixel values, with `mean`
  and `std` one value or one per channel. The result is NHWC, the Keras
  layout; an ONNX file exported channels first records that in its own
  `layout` property.

It is stored in ONNX `metadata_props`, as `assets/metadata.json` in the
SavedModel and in `manifest.json`, so each artifact can be used on its own.
"""

import json
import math

import numpy as np

ONNX_KEY_LABELS = "class_labels"
ONNX_KEY_PREPROCESSING = "preprocessing"


class MetadataError(ValueError):
    """Class labels or preprocessing that cannot describe the model."""


def _positive_int(preprocessing, key):
    value = preprocessing.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MetadataError(
            f"preprocessing[{key!r}] must be a positive integer. "
            f"Received: {value!r}"
        )
    return value


def _channel_values(preprocessing, key, default, channels):
    value = preprocessing.get(key, default)
    values = [value] if isinstance(value, (int, float)) else list(value)
    if len(values) not in (1, channels) or not all(
        isinstance(v, (int, float)) and math.isfinite(v) for v in values
    ):
        raise MetadataError(
            f"preprocessing[{key!r}] must be a finite number or {channels} "
            f"of them. Received: {value!r}"
        )
    return [float(v) for v in values]


def check_preprocessing(preprocessing):
    """Return `preprocessing` with its defaults, or raise MetadataError."""
    if preprocessing is None:
        return None
    if not isinstance(preprocessing, dict):
        raise MetadataError(
            "preprocessing must be a dict such as {'height': 32, 'width': 32, "
            f"'channels': 3, 'scale': 1 / 255}}. Received: {preprocessing!r}"
        )
    known = {"height", "width", "channels", "scale", "mean", "std"}
    unknown = sorted(set(preprocessing) - known)
    if unknown:
        raise MetadataError(
            f"Unknown preprocessing keys {unknown}; use {sorted(known)}."
        )
    channels = _positive_int(preprocessing, "channels")
    if channels not in (1, 3):
        raise MetadataError(
            "preprocessing['channels'] must be 1 (grayscale) or 3 (RGB). "
            f"Received: {channels}"
        )
    scale = preprocessing.get("scale", 1 / 255)
    if not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise MetadataError(
            "preprocessing['scale'] must be a finite number. "
            f"Received: {scale!r}"
        )
    std = _channel_values(preprocessing, "std", 1.0, channels)
    if any(value == 0 for value in std):
        raise MetadataError("preprocessing['std'] must not contain 0.")
    return {
        "height": _positive_int(preprocessing, "height"),
        "width": _positive_int(preprocessing, "width"),
        "channels": channels,
        "scale": float(scale),
        "mean": _channel_values(preprocessing, "mean", 0.0, channels),
        "std": std,
    }


def check_labels(class_labels, classes=None):
    """Return `class_labels` as a list of strings, or raise MetadataError."""
    if class_labels is None:
        return None
    if isinstance(class_labels, (str, bytes)):
        raise MetadataError(
            "class_labels must be a list with one name per class, not a "
            f"string. Received: {class_labels!r}"
        )
    labels = [str(label) for label in class_labels]
    if classes is not None and len(labels) != classes:
        raise MetadataError(
            f"class_labels has {len(labels)} names but the model outputs "
            f"{classes} classes; give one name per class."
        )
    return labels


def to_onnx_props(metadata):
    """Return ONNX `metadata_props` entries as a dict of strings."""
    return {
        ONNX_KEY_LABELS: json.dumps(metadata["class_labels"]),
        ONNX_KEY_PREPROCESSING: json.dumps(metadata["preprocessing"]),
    }


def from_onnx_props(props):
    """Return the metadata stored in ONNX `metadata_props` (a dict)."""
    return {
        "class_labels": json.loads(props.get(ONNX_KEY_LABELS, "null")),
        "preprocessing": json.loads(props.get(ONNX_KEY_PREPROCESSING, "null")),
    }


def apply_preprocessing(pixels, preprocessing):
    """Turn 8-bit images into model inputs.

    Args:
        pixels: uint8 array of shape (batch, height, width, channels),
            already resized to the model's input size.
        preprocessing: the checked preprocessing dict.

    Returns:
        float32 NHWC array.
    """
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)
    std = np.asarray(preprocessing["std"], dtype=np.float32)
    x = pixels.astype(np.float32) * preprocessing["scale"]
    return ((x - mean) / std).astype(np.float32)
