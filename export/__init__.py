"""Export a Keras model to SavedModel, TFLite and ONNX, with parity checks.

`export_model` writes the artifacts and a report of how closely each one,
run in its own runtime, reproduces the Keras model. `python -m export` does
the same from the command line.

The names below are imported on first use, so that `python -m export` can
reject a bad command line before TensorFlow loads.
"""

import importlib

_EXPORTS = {
    "FLOAT32": "export.parity",
    "CalibrationError": "export.quantize",
    "DEFAULT_FORMATS": "export.formats",
    "FORMATS": "export.formats",
    "QUANTIZED": "export.parity",
    "QuantizedTolerance": "export.parity",
    "ExportError": "export.api",
    "InputError": "export.parity",
    "Tolerance": "export.parity",
    "check_parity": "export.api",
    "export_model": "export.api",
    "load_runtime": "export.runtimes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
