"""Train ResNet-20 and its plain twin on real digits, export both, compare.

The data set is scikit-learn's digits: 1,797 handwritten digits of 8 x 8
pixels that ship inside scikit-learn, so the demo runs offline. A stratified
20% is held out. Each model is trained, exported to SavedModel, TFLite and
ONNX with the held-out images as parity inputs, and every artifact is run
in its own runtime to measure its held-out accuracy.

Run it as `make demo`, or `python examples/digits_demo.py --help`.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_resnet  # noqa: E402
from export import export_model  # noqa: E402
from export.table import format_size, render_table  # noqa: E402

# How an 8-bit grayscale image becomes the model input, stored with every
# artifact for `python -m export.predict`: digits' pixels run from 0 to 16
# and the model sees them divided by 16, which for an 8-bit image of the
# same digit is a division by 255.
PREPROCESSING = {"height": 8, "width": 8, "channels": 1, "scale": 1 / 255}


def load_data(seed):
    """Return (x_train, y_train, x_test, y_test) as NHWC floats in [0, 1]."""
    digits = load_digits()
    # Pixel values are integers 0..16.
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target,
        test_size=0.2,
        stratify=digits.target,
        random_state=seed,
    )
    return x_train, y_train, x_test, y_test


def train(model, x_train, y_train, epochs, batch_size):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=2,
    )
    return history.history


# Every artifact the export writes: the float32 ones must match the Keras
# accuracy exactly, the quantized ones lose at most one point.
FORMATS = (
    "savedmodel",
    "tflite",
    "onnx",
    "tflite_float16",
    "tflite_dynamic",
    "tflite_int8",
    "onnx_int8",
)

# Calibration samples for the int8 formats, taken from the training split.
CALIBRATION_SAMPLES = 256


def evaluate_exports(model, out_dir, data):
    """Export `model`, and return table rows and whether every check passed.

    Each format's accuracy is measured by `export_model` in that format's
    own runtime on the held-out images.
    """
    x_train, _, x_test, y_test = data
    report = export_model(
        model,
        out_dir,
        FORMATS,
        inputs=x_test,
        labels=y_test,
        calibration=x_train[:CALIBRATION_SAMPLES],
        class_labels=[str(digit) for digit in range(10)],
        preprocessing=PREPROCESSING,
        overwrite=True,
    )
    keras_accuracy = report["keras_accuracy"]
    rows = [(model.name, "keras", f"{keras_accuracy:.2%}", "-", "-", "-")]
    ok = report["passed"]
    for fmt, result in report["formats"].items():
        if result["precision"] == "float32":
            ok = ok and result["accuracy"] == keras_accuracy
        rows.append(
            (
                model.name,
                fmt,
                f"{result['accuracy']:.2%}",
                f"{result['top1_agreement']:.2%}",
                f"{result['max_abs_error']:.2e}",
                format_size(result["file_size_bytes"]),
            )
        )
    return rows, ok


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="directory for the exported models (default: out/demo)",
    )
    parser.add_argument(
        "--epochs", type=int, default=30, help="training epochs (default: 30)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="batch size (default: 32)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    x_train, y_train, x_test, y_test = load_data(args.seed)
    print(
        f"digits: {len(x_train)} training and {len(x_test)} held-out images "
        f"of {x_train.shape[1]} x {x_train.shape[2]} pixels",
        file=sys.stderr,
    )

    rows, all_ok = [], True
    for build in (keras_resnet.resnet, keras_resnet.plain):
        keras.utils.set_random_seed(args.seed)
        model = build(20, input_shape=x_train.shape[1:], classes=10)
        print(f"training {model.name}", file=sys.stderr)
        start = time.perf_counter()
        history = train(model, x_train, y_train, args.epochs, args.batch_size)
        print(
            f"{model.name}: final training accuracy "
            f"{history['accuracy'][-1]:.2%} in "
            f"{time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
        model_rows, ok = evaluate_exports(
            model, args.out / model.name, (x_train, y_train, x_test, y_test)
        )
        rows.extend(model_rows)
        all_ok = all_ok and ok

    print()
    print(
        render_table(
            (
                "model",
                "format",
                "held-out accuracy",
                "top-1 agreement",
                "max abs error",
                "size",
            ),
            rows,
        )
    )
    print(f"\nartifacts and parity reports: {args.out}/")
    if not all_ok:
        print(
            "error: an exported format failed its accuracy check",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
