"""Shared fixtures: a small ResNet-20, random images and a saved .keras file."""

import os

# Set before anything imports TensorFlow, which reads it once at import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_resnet  # noqa: E402

# 16 x 16 keeps the exports at a few seconds each and is still large enough
# for both stride-2 stages (the builders accept 8 x 8 and up).
SMALL_SHAPE = (16, 16, 3)


def _scope(item):
    """The unit that `--dist loadscope` keeps on one worker: class or module."""
    return item.nodeid.rsplit("::", 1)[0]


def pytest_collection_modifyitems(config, items):
    """Run every module or class holding a heavy test before the others.

    `make test` spreads whole modules and classes over two workers in
    collection order. Starting the long ones first keeps one worker from
    left alone at the end with a unit that takes minutes. The sort is stable,
    so tests keep their order within each unit.
    """
    heavy = {_scope(item) for item in items if item.get_closest_marker("heavy")}
    items.sort(key=lambda item: _scope(item) not in heavy)


@pytest.fixture(scope="session")
def images():
    """Return a factory of standard-normal float32 NHWC batches."""

    def make(batch, shape=SMALL_SHAPE, seed=1):
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, *shape)).astype(np.float32)

    return make


@pytest.fixture(scope="session")
def predict():
    """Return a function running a Keras model in inference mode to numpy."""

    def run(model, x):
        return keras.ops.convert_to_numpy(model(x, training=False))

    return run


@pytest.fixture(scope="module")
def small_resnet():
    return keras_resnet.resnet(20, input_shape=SMALL_SHAPE)


@pytest.fixture(scope="module")
def small_resnet_file(small_resnet, tmp_path_factory):
    path = tmp_path_factory.mktemp("keras_file") / "resnet20.keras"
    small_resnet.save(path)
    return path


# ResNet-20 trained briefly on scikit-learn's digits, shared by the
# quantization, predict and serving tests. The digits are real 8 x 8
# handwritten images that ship inside scikit-learn, so no download runs.

DIGITS_SHAPE = (8, 8, 1)
DIGITS_PREPROCESSING = {
    "height": 8,
    "width": 8,
    "channels": 1,
    "scale": 1 / 255,
}
# Names that differ from the class indices, so that a test can tell the
# stored labels from the index fallback.
DIGITS_CLASS_LABELS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
]
DIGITS_FORMATS = (
    "savedmodel",
    "tflite",
    "onnx",
    "tflite_float16",
    "tflite_dynamic",
    "tflite_int8",
    "onnx_int8",
)
DIGITS_CALIBRATION_SAMPLES = 256


@pytest.fixture(scope="session")
def digits_split():
    """Return (x_train, y_train, x_test, y_test) with a stratified 20% held out.

    Images are float32 NHWC in [0, 1] (pixel values 0..16 divided by 16);
    labels are int64 class indices.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype(np.int64),
        test_size=0.2,
        stratify=digits.target,
        random_state=0,
    )
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def digits_model(digits_split):
    """ResNet-20 at 8 x 8 x 1 trained 5 epochs, seed 0 (15-40 s on 2 cores)."""
    x_train, y_train, _, _ = digits_split
    keras.utils.set_random_seed(0)
    model = keras_resnet.resnet(20, input_shape=DIGITS_SHAPE, classes=10)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def digits_export(digits_model, digits_split, tmp_path_factory):
    """Return (out_dir, report) of the digits model exported to every format.

    The held-out split is the parity set, with labels, the first 256
    training images calibrate the int8 formats, and the class labels and
    preprocessing are stored with the artifacts.
    """
    import export

    x_train, _, x_test, y_test = digits_split
    out_dir = tmp_path_factory.mktemp("digits") / "export"
    report = export.export_model(
        digits_model,
        out_dir,
        DIGITS_FORMATS,
        inputs=x_test,
        labels=y_test,
        calibration=x_train[:DIGITS_CALIBRATION_SAMPLES],
        class_labels=DIGITS_CLASS_LABELS,
        preprocessing=DIGITS_PREPROCESSING,
    )
    return out_dir, report
