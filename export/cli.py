"""`python -m export MODEL.keras --out DIR`: export and print the parity table.

Exit codes: 0 when every format passes its check; 1 when one fails or a
converter fails on the model; 2 for bad input (a missing, unreadable or
unsafe model, an unknown format, an existing or unwritable output
directory, inputs that do not fit), with a one-line error on stderr and
nothing written.
"""

import argparse
import json
import logging
import os
import zipfile
from pathlib import Path

from export.console import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    print_error,
    quiet_native_stderr,
)
from export.formats import DEFAULT_FORMATS, FORMATS
from export.table import format_size, render_table

PROG = "python -m export"
MODEL_SUFFIXES = (".keras", ".h5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def build_parser():
    parser = _Parser(
        prog=PROG,
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
        help="output directory; must not exist or be empty (see --overwrite)",
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        default=list(DEFAULT_FORMATS),
        metavar="FORMAT",
        help=(
            f"formats to export, any of: {' '.join(FORMATS)} "
            f"(default: {' '.join(DEFAULT_FORMATS)})"
        ),
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
        "--labels",
        type=Path,
        help="a .npy array of class indices, one per input sample, to "
        "report each format's accuracy",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="representative inputs (.npy or .npz) for the int8 formats "
        "(default: the parity inputs)",
    )
    parser.add_argument(
        "--int8-io",
        choices=("float32", "int8"),
        default="float32",
        help="input and output type of model_int8.tflite (default: float32)",
    )
    parser.add_argument(
        "--class-names",
        type=Path,
        help="text file with one class name per line, stored with the model",
    )
    parser.add_argument(
        "--preprocessing",
        type=Path,
        help="JSON file with height, width, channels, scale, mean and std, "
        "stored with the model for `python -m export.predict`",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="absolute tolerance of the float32 parity check (default: 1e-4)",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        default=1e-4,
        help="relative tolerance of the float32 parity check (default: 1e-4)",
    )
    parser.add_argument(
        "--opset", type=int, default=17, help="ONNX opset version (default: 17)"
    )
    parser.add_argument(
        "--nchw",
        action="store_true",
        help="export ONNX with channels-first 4-D inputs and outputs",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing, non-empty output directory",
    )
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help=(
            "load the model with Keras safe mode off, which allows Lambda "
            "layers and other Python code stored in the file. Loading then "
            "runs that code with your permissions: use it only for files "
            "you trust"
        ),
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log progress, and let TensorFlow's own messages through",
    )
    return parser


def _check_model_file(path):
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    if path.suffix not in MODEL_SUFFIXES:
        raise UsageError(
            f"{path} is not a Keras model file; expected a .keras file saved "
            "with model.save()"
        )
    if path.suffix == ".h5":
        with open(path, "rb") as file:
            if file.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise UsageError(f"{path} is not an HDF5 file")
        return
    if not zipfile.is_zipfile(path):
        raise UsageError(
            f"{path} is not a valid .keras archive (not a zip file, or "
            "truncated); save the model again with model.save()"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UsageError(
            f"{path} is a corrupted .keras archive: {err}"
        ) from None
    if broken is not None:
        raise UsageError(
            f"{path} is a corrupted .keras archive: member {broken} fails "
            "its checksum"
        )
    if "config.json" not in names:
        raise UsageError(
            f"{path} is a zip file but not a Keras model: it has no config.json"
        )


def _check_numpy_file(option, path):
    if path is None:
        return
    if not path.is_file():
        raise UsageError(f"{option} file not found: {path}")
    if path.suffix not in (".npy", ".npz"):
        raise UsageError(f"{option} {path} is not a .npy or .npz file")


def check_args(args):
    """Raise UsageError on a command line that cannot work."""
    if args.atol < 0 or args.rtol < 0:
        raise UsageError("--atol and --rtol must not be negative")
    unknown = [name for name in args.formats if name not in FORMATS]
    if unknown:
        raise UsageError(
            f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}"
        )
    _check_model_file(Path(args.model))
    for option in ("inputs", "labels", "calibration"):
        _check_numpy_file(f"--{option}", getattr(args, option))
    for option in ("class_names", "preprocessing"):
        path = getattr(args, option)
        if path is not None and not path.is_file():
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} file not found: {path}")
    out = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(
            f"--out {out} already exists and is not empty; pass --overwrite "
            "to replace it"
        )
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: directory {parent} is not writable")


def _load_array(path, option):
    import numpy as np

    if path is None:
        return None
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"cannot read {option} {path}: {err}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            return {name: data[name] for name in data.files}
    return data


def _load_text_lines(path):
    if path is None:
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def _load_json(path):
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read --preprocessing {path}: {err}") from None


def load_model(path, unsafe=False):
    """Load a Keras model file, with safe mode unless `unsafe` is True.

    Raises:
        UsageError: when Keras cannot load the file, naming the reason.
    """
    import keras

    import keras_resnet  # noqa: F401  (registers the package's layers)

    try:
        return keras.saving.load_model(path, safe_mode=not unsafe)
    except Exception as err:
        # Keras raises ValueError, OSError, zipfile.BadZipFile, TypeError or
        # KeyError for files it cannot read, depending on where they break.
        message = str(err)
        if "safe_mode" in message:
            raise UsageError(
                f"{path} contains a Lambda layer or other stored Python code, "
                "which Keras safe mode does not load; pass --unsafe-load only "
                "if you trust the file"
            ) from None
        first_line = (message.strip().splitlines() or [""])[0]
        raise UsageError(
            f"cannot load {path} as a Keras model: {type(err).__name__}: "
            f"{first_line}"
        ) from None


def format_table(report):
    """Return the report's per-format checks as a text table.

    An accuracy column appears when the report has labels.
    """
    show_accuracy = report.get("keras_accuracy") is not None
    header = ["format", "path", "size", "max abs error", "top-1"]
    header += ["accuracy", "result"] if show_accuracy else ["result"]
    rows = []
    if show_accuracy:
        rows.append(
            ["keras", "-", "-", "-", "-", f"{report['keras_accuracy']:.2%}", ""]
        )
    for name, result in report["formats"].items():
        top1 = result["top1_agreement"]
        row = [
            name,
            result["path"],
            format_size(result["file_size_bytes"]),
            f"{result['max_abs_error']:.2e}",
            "-" if top1 is None else f"{top1:.1%}",
        ]
        if show_accuracy:
            row.append(f"{result['accuracy']:.2%}")
        row.append("pass" if result["passed"] else "FAIL")
        rows.append(row)

    tolerance = report["tolerance"]
    quantized = report["quantized_tolerance"]
    return (
        render_table(header, rows)
        + f"\nfloat32: |artifact - keras| <= {tolerance['atol']:g} + "
        f"{tolerance['rtol']:g} * max|keras|; quantized: accuracy drop <= "
        f"{quantized['max_accuracy_drop']:.0%} with labels, else top-1 "
        f"agreement >= {quantized['min_top1_agreement']:.0%}"
    )


def _run(args, stream):
    from export.api import ExportError, export_model
    from export.parity import InputError, Tolerance

    try:
        model = load_model(args.model, unsafe=args.unsafe_load)
        report = export_model(
            model,
            args.out,
            args.formats,
            inputs=_load_array(args.inputs, "--inputs"),
            tolerance=Tolerance("float32", atol=args.atol, rtol=args.rtol),
            opset=args.opset,
            labels=_load_array(args.labels, "--labels"),
            calibration=_load_array(args.calibration, "--calibration"),
            int8_io=args.int8_io,
            class_labels=_load_text_lines(args.class_names),
            preprocessing=_load_json(args.preprocessing),
            nchw=args.nchw,
            overwrite=args.overwrite,
        )
    except (UsageError, InputError, ValueError, OSError) as err:
        print_error(PROG, err, stream)
        return EXIT_BAD_INPUT, None
    except ExportError as err:
        print_error(PROG, err, stream)
        return EXIT_FAILED, None
    return (EXIT_OK if report["passed"] else EXIT_FAILED), report


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        check_args(args)
    except UsageError as err:
        print_error(PROG, err)
        return EXIT_BAD_INPUT

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr(enabled=not args.verbose) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        root = logging.getLogger("export")
        root.addHandler(handler)
        root.setLevel(logging.INFO if args.verbose else logging.WARNING)
        try:
            code, report = _run(args, stream)
        finally:
            root.removeHandler(handler)

    if report is not None:
        print(format_table(report))
        print(f"report: {args.out / 'report.json'}")
        print(f"manifest: {args.out / 'manifest.json'}")
    return code
