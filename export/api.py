"""`export_model` and `check_parity`: write the artifacts and prove them."""

import json
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import keras
import onnx
import onnxruntime
import tensorflow as tf
import tf2onnx

from export.onnx import (
    DEFAULT_OPSET,
    plain_grouped_convolutions,
    write_onnx,
)
from export.parity import FLOAT32, compare, prepare_inputs
from export.runtimes import ARTIFACT_PATHS, KerasRuntime, load_runtime
from export.savedmodel import write_savedmodel
from export.signature import model_signature, serving_function
from export.tflite import write_tflite

logger = logging.getLogger(__name__)

FORMATS = ("savedmodel", "tflite", "onnx")
REPORT_NAME = "report.json"


class ExportError(RuntimeError):
    """A converter failed on a model; the message names the format."""


def check_formats(formats):
    """Return `formats` as a tuple in canonical order, or raise ValueError."""
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"formats must be a non-empty selection of {', '.join(FORMATS)}. "
            f"Received: formats={list(formats)}"
        )
    return tuple(fmt for fmt in FORMATS if fmt in formats)


def _size_bytes(path):
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _versions():
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "ai_edge_litert": metadata.version("ai-edge-litert"),
    }


def check_parity(
    model, out_dir, formats=FORMATS, inputs=None, tolerance=FLOAT32
):
    """Run the artifacts in `out_dir` and compare them with `model`.

    The same inputs go through the Keras model in inference mode and
    through each artifact in its own runtime: the reloaded SavedModel's
    `serving_default` signature, the `.tflite` file in the LiteRT
    interpreter and the `.onnx` file in onnxruntime. Each runs at batch 1
    and at the full batch of `inputs`.

    Args:
        model: the Keras model the artifacts were exported from.
        out_dir: directory holding the artifacts under the names that
            `export_model` writes.
        formats: which artifacts to check.
        inputs: None for 7 random standard-normal samples, an array for a
            single-input model, or a dict from input name to array.
        tolerance: a `Tolerance`; defaults to `FLOAT32`.

    Returns:
        The report as a dict (see `export_model`).

    Raises:
        InputError: when `inputs` does not fit the model.
        FileNotFoundError: when an artifact is missing.
    """
    formats = check_formats(formats)
    input_infos, output_infos = model_signature(model)
    feeds = prepare_inputs(input_infos, inputs)
    reference = KerasRuntime(model, input_infos, output_infos)
    out_dir = Path(out_dir)

    results = {}
    for fmt in formats:
        path = out_dir / ARTIFACT_PATHS[fmt]
        runtime = load_runtime(fmt, path)
        parity = compare(reference, runtime, feeds, tolerance)
        results[fmt] = {
            "path": ARTIFACT_PATHS[fmt],
            "file_size_bytes": _size_bytes(path),
            **parity.to_dict(),
        }
        logger.info(
            "%s: max abs error %.3g, %s",
            fmt,
            parity.max_abs_error,
            "pass" if parity.passed else "FAIL",
        )

    return {
        "model": model.name,
        "inputs": [info.to_dict() for info in input_infos],
        "outputs": [info.to_dict() for info in output_infos],
        "tolerance": tolerance.to_dict(),
        "formats": results,
        "passed": all(r["passed"] for r in results.values()),
        "versions": _versions(),
    }


def _convert(model, staging, formats, input_infos, output_infos, opset):
    function = serving_function(model, input_infos, output_infos)
    savedmodel_path = staging / ARTIFACT_PATHS["savedmodel"]

    # The TFLite converter reads the SavedModel, so it is written for TFLite
    # alone too and removed afterwards.
    if "savedmodel" in formats or "tflite" in formats:
        logger.info("writing SavedModel")
        try:
            write_savedmodel(model, savedmodel_path, function, input_infos)
        except Exception as err:
            raise ExportError(f"SavedModel export failed: {err}") from err

    if "tflite" in formats:
        logger.info("converting to TFLite")
        try:
            write_tflite(savedmodel_path, staging / ARTIFACT_PATHS["tflite"])
        except Exception as err:
            raise ExportError(f"TFLite conversion failed: {err}") from err
        if "savedmodel" not in formats:
            shutil.rmtree(savedmodel_path)

    if "onnx" in formats:
        logger.info("converting to ONNX (opset %d)", opset)
        # A fresh function, because the one above was traced with Keras'
        # XLA-compiled grouped convolutions.
        onnx_function = serving_function(model, input_infos, output_infos)
        try:
            with plain_grouped_convolutions(model):
                write_onnx(
                    onnx_function,
                    input_infos,
                    staging / ARTIFACT_PATHS["onnx"],
                    opset,
                )
        except Exception as err:
            raise ExportError(f"ONNX conversion failed: {err}") from err


def _move_into_place(staging, out_dir):
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    for entry in staging.iterdir():
        target = out_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()


def export_model(
    model,
    out_dir,
    formats=FORMATS,
    inputs=None,
    tolerance=FLOAT32,
    opset=DEFAULT_OPSET,
):
    """Export `model` to each format and check every artifact against it.

    Writes, for the formats requested, `out_dir/saved_model/`,
    `out_dir/model.tflite` and `out_dir/model.onnx`, then
    `out_dir/report.json`. Every artifact has a dynamic batch dimension
    and takes and returns the model's input and output layer names.

    All files are first written to a temporary directory beside `out_dir`
    and moved into place when conversion and the parity check have run, so
    a failed export leaves `out_dir` as it was. An artifact that fails the
    parity check is still written, with the failure in the report.

    Args:
        model: a built `keras.Model`: functional, `keras.Sequential` or
            loaded from a `.keras` file.
        out_dir: output directory; created if missing. Artifacts already
            there are replaced.
        formats: any of "savedmodel", "tflite", "onnx".
        inputs: inputs for the parity check: None for 7 random
            standard-normal samples, an array for a single-input model, or
            a dict from input name to array.
        tolerance: the `Tolerance` each artifact must meet.
        opset: ONNX opset version.

    Returns:
        The report, as written to `report.json`: per format its path,
        `file_size_bytes`, `max_abs_error`, `top1_agreement`, `passed` and
        the batch sizes run, plus the model's inputs and outputs, the
        tolerance, an overall `passed` and the converter versions.

    Raises:
        ValueError: on unknown formats or a model without defined inputs.
        InputError: when `inputs` does not fit the model.
        ExportError: when a converter fails.
    """
    formats = check_formats(formats)
    input_infos, output_infos = model_signature(model)
    feeds = prepare_inputs(input_infos, inputs)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent)
    )
    try:
        _convert(model, staging, formats, input_infos, output_infos, opset)
        report = check_parity(model, staging, formats, feeds, tolerance)
        report["onnx_opset"] = opset if "onnx" in formats else None
        (staging / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        _move_into_place(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return report
