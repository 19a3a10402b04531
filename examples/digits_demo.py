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
from export import export_model, load_runtime  # noqa: E402
from export.runtimes import ARTIFACT_PATHS  # noqa: E402
from export.table import format_size, render_table  # noqa: E402


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


def accuracy(probabilities, labels):
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels))


def evaluate_exports(model, out_dir, x_test, y_test):
    """Return table rows and whether every artifact matched Keras."""
    report = export_model(model, out_dir, inputs=x_test)
    keras_accuracy = accuracy(model.predict(x_test, verbose=0), y_test)
    rows = [(model.name, "keras", f"{keras_accuracy:.2%}", "-", "-")]
    ok = report["passed"]

    output_name = report["outputs"][0]["name"]
    input_name = report["inputs"][0]["name"]
    for fmt, result in report["formats"].items():
        runtime = load_runtime(fmt, out_dir / ARTIFACT_PATHS[fmt])
        predictions = runtime({input_name: x_test})[output_name]
        fmt_accuracy = accuracy(predictions, y_test)
        ok = ok and fmt_accuracy == keras_accuracy
        rows.append(
            (
                model.name,
                fmt,
                f"{fmt_accuracy:.2%}",
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
            model, args.out / model.name, x_test, y_test
        )
        rows.extend(model_rows)
        all_ok = all_ok and ok

    print()
    print(
        render_table(
            ("model", "format", "held-out accuracy", "max abs error", "size"),
            rows,
        )
    )
    print(f"\nartifacts and parity reports: {args.out}/")
    if not all_ok:
        print(
            "error: an exported format disagrees with the Keras model",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
