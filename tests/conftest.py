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
