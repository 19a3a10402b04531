"""`python -m export MODEL.keras --out DIR`: export and print the parity table.

Exit codes: 0 when every format passes the parity check; 1 when one fails
or a converter fails on the model; 2 for bad input (a missing or unreadable
model, an unknown format, inputs that do not fit), with a one-line error on
stderr.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from export.table import format_size, render_table

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Kept here rather than imported from export.api, so that the command line
# is checked before TensorFlow loads.
FORMATS = ("savedmodel", "tflite", "onnx")
MODEL_SUFFIXES = (".keras", ".h5")


class UsageError(Exception):
    """A command-line problem reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def build_parser():
    parser = _Parser(
        prog="python -m export",
        description=(
            "Export a Keras model to SavedModel, TFLite and ONNX, run each "
            "artifact in its own runtime (tf.saved_model.load, the LiteRT "
            "interpreter, onnxruntime) and compare its outputs with the "
            "Keras model's."
        ),
    )
    parser.add_argument("model", help="path to a .keras (or legacy .h5) file")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output directory; created if missing, artifacts replaced",
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        default=list(FORMATS),
        metavar="FORMAT",
        help=f"formats to export, any of: {' '.join(FORMATS)} (default: all)",
    )
    parser.add_argument(
        "--inputs",
        type=Path,
        help=(
            "parity inputs: a .npy array for a single-input model, or an .npz "
            "file with one array per input name (default: 7 random "
            "standard-normal samples)"
        ),
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=17,
        help="ONNX opset version (default: 17)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log progress to stderr"
    )
    return parser


def _check_args(args):
    unknown = [fmt for fmt in args.formats if fmt not in FORMATS]
    if unknown:
        raise UsageError(
            f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}"
        )
    model = Path(args.model)
    if not model.is_file():
        raise UsageError(f"model file not found: {model}")
    if model.suffix not in MODEL_SUFFIXES:
        raise UsageError(
            f"{model} is not a Keras model file; expected a .keras file "
            "saved with model.save()"
        )
    if args.inputs is not None and not args.inputs.is_file():
        raise UsageError(f"inputs file not found: {args.inputs}")
    if args.inputs is not None and args.inputs.suffix not in (".npy", ".npz"):
        raise UsageError(
            f"{args.inputs} is not a NumPy file; pass a .npy or .npz file"
        )
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")


def _load_inputs(path):
    import numpy as np

    if path is None:
        return None
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read inputs {path}: {err}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            return {name: data[name] for name in data.files}
    return data


def _load_model(path):
    import keras

    import keras_resnet  # noqa: F401  (registers the package's layers)

    try:
        return keras.saving.load_model(path)
    except Exception as err:
        # Keras raises ValueError, OSError, zipfile.BadZipFile or TypeError
        # for files it cannot read, depending on where the archive breaks.
        first_line = str(err).strip().splitlines()[0] if str(err) else ""
        raise UsageError(
            f"cannot load {path} as a Keras model: {type(err).__name__}: "
            f"{first_line}"
        ) from None


def format_table(report):
    """Return the report's per-format parity as a text table."""
    rows = []
    for fmt, result in report["formats"].items():
        top1 = result["top1_agreement"]
        rows.append(
            (
                fmt,
                result["path"],
                format_size(result["file_size_bytes"]),
                f"{result['max_abs_error']:.2e}",
                "-" if top1 is None else f"{top1:.1%}",
                "pass" if result["passed"] else "FAIL",
            )
        )
    header = ("format", "path", "size", "max abs error", "top-1", "result")
    tolerance = report["tolerance"]
    return (
        render_table(header, rows)
        + f"\ntolerance {tolerance['name']}: |artifact - keras| <= "
        f"{tolerance['atol']:g} + {tolerance['rtol']:g} * |keras|"
    )


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        _check_args(args)
    except UsageError as err:
        print(f"python -m export: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from export.api import ExportError, export_model
    from export.parity import InputError

    try:
        inputs = _load_inputs(args.inputs)
        model = _load_model(args.model)
        report = export_model(
            model, args.out, args.formats, inputs=inputs, opset=args.opset
        )
    except (UsageError, InputError, ValueError, OSError) as err:
        print(f"python -m export: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ExportError as err:
        print(f"python -m export: error: {err}", file=sys.stderr)
        return EXIT_FAILED

    print(format_table(report))
    print(f"report: {args.out / 'report.json'}")
    return EXIT_OK if report["passed"] else EXIT_FAILED
