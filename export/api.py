"""`export_model` and `check_parity`: write the artifacts and prove them."""

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from export.formats import (
    CALIBRATED,
    DEFAULT_FORMATS,
    FORMATS,
    MANIFEST_NAME,
    METADATA_ASSET,
    REPORT_NAME,
    check_formats,
)
from export.manifest import build_manifest, tool_versions
from export.metadata import check_labels as check_class_labels
from export.metadata import check_preprocessing, to_onnx_props
from export.onnx import (
    CATCH_ERRORS_VARIABLE,
    DEFAULT_OPSET,
    plain_grouped_convolutions,
    write_onnx,
)
from export.parity import (
    FLOAT32,
    QUANTIZED,
    accuracy,
    check_labels,
    compare,
    prepare_inputs,
)
from export.precision import float32_model
from export.quantize import (
    INT8_IO_TYPES,
    check_calibration,
    write_onnx_int8,
    write_tflite_variant,
)
from export.runtimes import KerasRuntime, load_runtime
from export.savedmodel import write_savedmodel
from export.signature import model_signature, random_ops, serving_function
from export.tflite import write_tflite

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """A converter failed on a model; the message names the format."""


def _size_bytes(path):
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def check_parity(
    model,
    out_dir,
    formats=DEFAULT_FORMATS,
    inputs=None,
    tolerance=FLOAT32,
    *,
    labels=None,
    quantized_tolerance=QUANTIZED,
):
    """Run the artifacts in `out_dir` and compare them with `model`.

    The same inputs go through the Keras model in inference mode and
    through each artifact in its own runtime: the reloaded SavedModel's
    `serving_default` signature, `.tflite` files in the LiteRT interpreter
    and `.onnx` files in onnxruntime. Each runs at batch 1 and at the full
    batch of `inputs`. A float32 artifact passes when every output element
    is within `tolerance`; a quantized one when it keeps the accuracy that
    `quantized_tolerance` requires.

    Args:
        model: the Keras model the artifacts were exported from.
        out_dir: directory holding the artifacts under the names that
            `export_model` writes.
        formats: which artifacts to check.
        inputs: None for 7 random standard-normal samples, an array for a
            single-input model, or a dict from input name to array.
        tolerance: the `Tolerance` of float32 artifacts.
        labels: optional class index of each input sample, for accuracy.
        quantized_tolerance: the `QuantizedTolerance` of quantized ones.

    Returns:
        The report as a dict (see `export_model`).

    Raises:
        InputError: when `inputs` or `labels` do not fit the model.
        FileNotFoundError: when an artifact is missing.
    """
    formats = check_formats(formats)
    source, model = model, float32_model(model)
    input_infos, output_infos = model_signature(model)
    feeds = prepare_inputs(input_infos, inputs)
    batch = next(iter(feeds.values())).shape[0]
    labels = check_labels(labels, batch, output_infos)
    reference = KerasRuntime(model, input_infos, output_infos)
    out_dir = Path(out_dir)

    # The artifacts come from the float32 copy of a mixed-precision model;
    # the report records how far that copy is from the model itself.
    mixed_precision = None
    if model is not source:
        original, _ = compare(
            reference,
            KerasRuntime(source, input_infos, output_infos),
            feeds,
            tolerance,
        )
        mixed_precision = {
            "reference": "float32 copy of the model",
            "max_abs_error_of_original": original.max_abs_error,
        }

    keras_accuracy = None
    if labels is not None:
        keras_outputs = reference(feeds)[output_infos[0].name]
        keras_accuracy = accuracy(keras_outputs, labels)

    results = {}
    for name in formats:
        fmt = FORMATS[name]
        path = out_dir / fmt.path
        runtime = load_runtime(name, path)
        parity, outputs = compare(reference, runtime, feeds, tolerance)
        result = {
            "path": fmt.path,
            "precision": fmt.precision,
            "file_size_bytes": _size_bytes(path),
            **parity.to_dict(),
            "accuracy": None,
        }
        if labels is not None:
            result["accuracy"] = accuracy(outputs[output_infos[0].name], labels)
        if fmt.quantized:
            result["passed"] = _quantized_passed(
                result, keras_accuracy, quantized_tolerance
            )
        results[name] = result
        logger.info(
            "%s: max abs error %.3g, %s",
            name,
            parity.max_abs_error,
            "pass" if result["passed"] else "FAIL",
        )

    return {
        "model": model.name,
        "inputs": [info.to_dict() for info in input_infos],
        "outputs": [info.to_dict() for info in output_infos],
        "samples": batch,
        "mixed_precision": mixed_precision,
        "keras_accuracy": keras_accuracy,
        "tolerance": tolerance.to_dict(),
        "quantized_tolerance": quantized_tolerance.to_dict(),
        "formats": results,
        "passed": all(r["passed"] for r in results.values()),
        "versions": tool_versions(),
    }


def _quantized_passed(result, keras_accuracy, tolerance):
    if keras_accuracy is not None:
        drop = keras_accuracy - result["accuracy"]
        # A small epsilon, so that a drop of exactly one sample in a
        # hundred at max_accuracy_drop=0.01 passes despite rounding.
        return bool(drop <= tolerance.max_accuracy_drop + 1e-9)
    agreement = result["top1_agreement"]
    if agreement is None:
        return False
    return bool(agreement >= tolerance.min_top1_agreement)


def _write_metadata_asset(savedmodel_path, metadata):
    asset = savedmodel_path / METADATA_ASSET
    asset.parent.mkdir(parents=True, exist_ok=True)
    asset.write_text(json.dumps(metadata, indent=2) + "\n")


def _convert(model, staging, scratch, formats, options):
    input_infos, output_infos = model_signature(model)
    function = serving_function(model, input_infos, output_infos)
    found = random_ops(function)
    if found:
        raise ExportError(
            f"Model {model.name!r} draws random numbers in inference mode "
            f"(ops {found}); export needs a deterministic graph. A layer "
            "that ignores training=False is the usual cause."
        )

    def target(name):
        return (staging if name in formats else scratch) / FORMATS[name].path

    needs_savedmodel = any(FORMATS[n].runtime != "onnx" for n in formats)
    needs_float_onnx = "onnx" in formats or "onnx_int8" in formats

    if needs_savedmodel:
        logger.info("writing SavedModel")
        with _converter_errors("SavedModel export"):
            write_savedmodel(model, target("savedmodel"), function, input_infos)
            _write_metadata_asset(target("savedmodel"), options["metadata"])

    if "tflite" in formats:
        logger.info("converting to TFLite")
        with _converter_errors("TFLite conversion"):
            write_tflite(target("savedmodel"), target("tflite"))

    for name in ("tflite_float16", "tflite_dynamic", "tflite_int8"):
        if name in formats:
            logger.info("converting to TFLite (%s)", FORMATS[name].precision)
            with _converter_errors(f"TFLite {FORMATS[name].precision}"):
                write_tflite_variant(
                    target("savedmodel"),
                    target(name),
                    FORMATS[name].precision,
                    calibration=options["calibration"],
                    int8_io=options["int8_io"],
                )

    if needs_float_onnx:
        logger.info("converting to ONNX (opset %d)", options["opset"])
        # A fresh function, because the one above was traced with Keras'
        # XLA-compiled grouped convolutions.
        onnx_function = serving_function(model, input_infos, output_infos)
        with _converter_errors("ONNX conversion", ONNX_HINT):
            with plain_grouped_convolutions(model):
                write_onnx(
                    onnx_function,
                    input_infos,
                    output_infos,
                    target("onnx"),
                    opset=options["opset"],
                    nchw=options["nchw"],
                    props=to_onnx_props(options["metadata"]),
                )

    if "onnx_int8" in formats:
        logger.info("quantizing ONNX to int8")
        calibration = options["calibration"]
        if options["nchw"]:
            # The float file takes channels-first 4-D inputs.
            calibration = {
                name: np.transpose(array, (0, 3, 1, 2))
                if array.ndim == 4
                else array
                for name, array in calibration.items()
            }
        with _converter_errors("ONNX int8 quantization"):
            write_onnx_int8(
                target("onnx"), target("onnx_int8"), calibration, scratch
            )


# tf2onnx stops on a failed optimizer pass because `write_onnx` turns its
# undo copies off; this names the switch that brings them back.
ONNX_HINT = (
    f"if a tf2onnx optimizer pass failed, set {CATCH_ERRORS_VARIABLE}=TRUE "
    "to skip failing passes"
)


class _converter_errors:
    """Wrap a converter's exception in ExportError naming the step."""

    def __init__(self, step, hint=""):
        self.step = step
        self.hint = hint

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or isinstance(error, (ExportError, KeyboardInterrupt)):
            return False
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise ExportError(
            f"{self.step} failed: {type(error).__name__}: {first_line}"
            + (f"; {self.hint}" if self.hint else "")
        ) from error


def _prepare_out_dir(out_dir, overwrite):
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(
            f"Output path {out_dir} exists and is not a directory; choose "
            "another path."
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"Output directory {out_dir} already exists and is not empty; "
            "pass overwrite=True (--overwrite) to replace it."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent)
    )
    # mkdtemp creates the directory with mode 0700; the output directory
    # gets the mode of any directory the user creates.
    os.chmod(staging, 0o777 & ~_umask())
    return staging


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _move_into_place(staging, out_dir):
    """Replace `out_dir` by `staging`, keeping the old one until the end."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent)
    )
    os.replace(out_dir, old / out_dir.name)
    try:
        os.replace(staging, out_dir)
    except OSError:
        os.replace(old / out_dir.name, out_dir)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def export_model(
    model,
    out_dir,
    formats=DEFAULT_FORMATS,
    inputs=None,
    tolerance=FLOAT32,
    opset=DEFAULT_OPSET,
    *,
    labels=None,
    calibration=None,
    int8_io="float32",
    class_labels=None,
    preprocessing=None,
    nchw=False,
    quantized_tolerance=QUANTIZED,
    overwrite=False,
):
    """Export `model` to each format and check every artifact against it.

    Writes into `out_dir` the artifacts of `formats` (`saved_model/`,
    `model.tflite`, `model.onnx`, and on request `model_float16.tflite`,
    `model_dynamic.tflite`, `model_int8.tflite`, `model_int8.onnx`), then
    `report.json` and `manifest.json`. Every artifact has a dynamic batch
    dimension and takes and returns the model's input and output layer
    names. A model under a mixed-precision policy is exported as a float32
    copy, with float32 inputs and outputs.

    All files are first written to a temporary directory beside `out_dir`
    and moved into place when conversion and the parity check have run, so
    a failed export leaves no partial files. An artifact that fails the
    parity check is still written, with the failure in the report.

    Args:
        model: a built `keras.Model`: functional, `keras.Sequential` or
            loaded from a `.keras` file.
        out_dir: output directory. It must not exist or be empty, unless
            `overwrite` is True.
        formats: names from `export.formats.FORMATS`: "savedmodel",
            "tflite", "onnx", "tflite_float16", "tflite_dynamic",
            "tflite_int8", "onnx_int8".
        inputs: inputs for the parity check: None for 7 random
            standard-normal samples, an array for a single-input model, or
            a dict from input name to array.
        tolerance: the `Tolerance` each float32 artifact must meet.
        opset: ONNX opset version.
        labels: class index of each sample of `inputs`; the report then
            gives each artifact's accuracy beside the Keras model's.
        calibration: representative inputs for the int8 formats, in the
            form of `inputs`. Defaults to `inputs`.
        int8_io: "float32" (default) or "int8": the input and output type
            of `model_int8.tflite`.
        class_labels: one name per output class, stored with the model.
        preprocessing: how images become inputs, stored with the model;
            see `export.metadata`.
        nchw: export ONNX with channels-first 4-D inputs and outputs.
        quantized_tolerance: the `QuantizedTolerance` of quantized formats.
        overwrite: replace an existing, non-empty `out_dir`.

    Returns:
        The report, as written to `report.json`: per format its path,
        precision, `file_size_bytes`, `max_abs_error`, `top1_agreement`,
        `accuracy`, `passed` and the batch sizes run, plus the model's
        inputs and outputs, the Keras accuracy, the tolerances, an overall
        `passed` and the converter versions.

    Raises:
        ValueError: on unknown formats, a model without defined inputs, or
            invalid metadata.
        InputError: when `inputs`, `labels` or `calibration` do not fit the
            model or are not finite.
        FileExistsError: when `out_dir` exists and `overwrite` is False.
        ExportError: when a converter fails.
    """
    formats = check_formats(formats)
    if int8_io not in INT8_IO_TYPES:
        raise ValueError(
            f"int8_io must be one of {INT8_IO_TYPES}. Received: {int8_io!r}"
        )
    source, model = model, float32_model(model)
    input_infos, output_infos = model_signature(model)
    feeds = prepare_inputs(input_infos, inputs)
    check_labels(labels, next(iter(feeds.values())).shape[0], output_infos)

    calibration_feeds = None
    if any(name in CALIBRATED for name in formats):
        calibration_feeds = (
            feeds
            if calibration is None
            else prepare_inputs(input_infos, calibration, finite=False)
        )
        check_calibration(calibration_feeds)

    classes = output_infos[0].shape[-1] if len(output_infos) == 1 else None
    metadata = {
        "class_labels": check_class_labels(class_labels, classes),
        "preprocessing": check_preprocessing(preprocessing),
    }
    options = {
        "opset": opset,
        "nchw": nchw,
        "int8_io": int8_io,
        "calibration": calibration_feeds,
        "metadata": metadata,
    }

    out_dir = Path(out_dir)
    created = _first_missing_ancestor(out_dir.parent)
    staging = _prepare_out_dir(out_dir, overwrite)
    scratch = Path(tempfile.mkdtemp(prefix=".scratch.", dir=staging.parent))
    try:
        _convert(model, staging, scratch, formats, options)
        report = check_parity(
            source,
            staging,
            formats,
            feeds,
            tolerance,
            labels=labels,
            quantized_tolerance=quantized_tolerance,
        )
        report["onnx_opset"] = opset if needs_onnx(formats) else None
        report["onnx_layout"] = None
        if needs_onnx(formats):
            report["onnx_layout"] = "NCHW" if nchw else "NHWC"
        manifest = build_manifest(
            report, [FORMATS[n] for n in formats], staging, metadata
        )
        (staging / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        (staging / MANIFEST_NAME).write_text(
            json.dumps(manifest, indent=2) + "\n"
        )
        _move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if staging.exists():
            shutil.rmtree(staging)
            _remove_empty_parents(out_dir.parent, created)
    return report


def _first_missing_ancestor(path):
    """Return the outermost missing directory of `path`, or None."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove_empty_parents(path, created):
    """Remove the empty directories from `path` up to `created`, if any.

    A failed export removes the parent directories it made for `out_dir`.
    """
    if created is None:
        return
    for candidate in (path, *path.parents):
        try:
            candidate.rmdir()
        except OSError:
            return
        if candidate == created:
            return


def needs_onnx(formats):
    return any(FORMATS[name].runtime == "onnx" for name in formats)
