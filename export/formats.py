"""The artifacts `export_model` can write, and where each one goes."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    """One kind of artifact.

    Attributes:
        name: the name used in `formats=` and on the command line.
        path: the artifact's path inside the output directory.
        runtime: "savedmodel", "tflite" or "onnx": what runs it.
        precision: "float32", "float16" (float16 weights), "dynamic"
            (int8 weights, float activations) or "int8" (int8 weights and
            activations).
    """

    name: str
    path: str
    runtime: str
    precision: str

    @property
    def quantized(self):
        return self.precision != "float32"


_ALL = (
    Format("savedmodel", "saved_model", "savedmodel", "float32"),
    Format("tflite", "model.tflite", "tflite", "float32"),
    Format("onnx", "model.onnx", "onnx", "float32"),
    Format("tflite_float16", "model_float16.tflite", "tflite", "float16"),
    Format("tflite_dynamic", "model_dynamic.tflite", "tflite", "dynamic"),
    Format("tflite_int8", "model_int8.tflite", "tflite", "int8"),
    Format("onnx_int8", "model_int8.onnx", "onnx", "int8"),
)

FORMATS = {fmt.name: fmt for fmt in _ALL}

# Each format's artifact path inside the output directory.
ARTIFACT_PATHS = {fmt.name: fmt.path for fmt in _ALL}

# The formats `export_model` writes by default.
DEFAULT_FORMATS = ("savedmodel", "tflite", "onnx")

# Formats calibrated on representative inputs.
CALIBRATED = ("tflite_int8", "onnx_int8")

# Files beside the artifacts, and the metadata file inside the SavedModel.
REPORT_NAME = "report.json"
MANIFEST_NAME = "manifest.json"
METADATA_ASSET = "assets/metadata.json"


def check_formats(formats):
    """Return the names in `formats` in canonical order, or raise ValueError."""
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"formats must be a non-empty selection of {', '.join(FORMATS)}. "
            f"Received: formats={list(formats)}"
        )
    return tuple(name for name in FORMATS if name in formats)
