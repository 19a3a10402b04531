"""count_flops, feature_extractor and preprocess_input."""

import os

# Set before anything imports TensorFlow, which reads it once at import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.applications import imagenet_utils  # noqa: E402

from keras_resnet import (  # noqa: E402
    ResNet18,
    count_flops,
    feature_extractor,
    plain,
    preprocess_input,
    resnet,
)


def images(batch, shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *shape)).astype(np.float32)


def to_numpy(value):
    return keras.ops.convert_to_numpy(value)


# count_flops against torchvision

# torchvision's published "GFLOPS" at 224 x 224, which are
# multiply-accumulates (the weights tables of the torchvision model docs,
# https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html
# rounds resnet50's 4.089 to 4.09).
TORCHVISION_GMACS = {"resnet18": 1.814, "resnet50": 4.089}


@pytest.fixture(scope="module")
def resnet50_v1_5():
    return resnet(50, "imagenet", version="v1.5")


def test_resnet18_gmacs_match_torchvision():
    cost = count_flops(ResNet18())
    assert cost.gmacs == pytest.approx(TORCHVISION_GMACS["resnet18"], rel=0.01)


def test_resnet50_gmacs_match_torchvision(resnet50_v1_5):
    cost = count_flops(resnet50_v1_5)
    assert cost.gmacs == pytest.approx(TORCHVISION_GMACS["resnet50"], rel=0.01)


def test_resnet50_trainable_matches_torchvision(resnet50_v1_5):
    # torchvision resnet50 "num_params".
    assert count_flops(resnet50_v1_5).trainable_params == 25_557_032


def test_params_equal_count_params(resnet50_v1_5):
    cost = count_flops(resnet50_v1_5)
    assert cost.params == resnet50_v1_5.count_params()


def test_flops_are_twice_macs(resnet50_v1_5):
    cost = count_flops(resnet50_v1_5)
    assert cost.flops == 2 * cost.macs


def test_gmacs_scale_with_area():
    small = count_flops(resnet(18, "imagenet", input_shape=(64, 64, 3)))
    large = count_flops(resnet(18, "imagenet", input_shape=(128, 128, 3)))
    # Every feature map has 4 times the positions, and only the Dense layer
    # (512 x 1000) stays the same.
    dense = 512 * 1000
    assert large.macs - dense == 4 * (small.macs - dense)


# count_flops on hand-computed models


def test_tiny_model_macs():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="valid", groups=2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    # Conv 1: 8 x 8 positions x 4 filters x (3 x 3 x 3) = 6912.
    # Conv 2: (8 - 3) // 2 + 1 = 3, so 3 x 3 positions x 6 filters
    #         x (3 x 3 x 4 / 2 groups) = 972.
    # Dense: 3 x 3 x 6 = 54 inputs x 5 units = 270. Biases add no MACs.
    assert count_flops(model).macs == 6912 + 972 + 270


def test_tiny_model_params():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, x)
    cost = count_flops(model)
    # 3 x 3 x 3 x 4 kernel, gamma and beta, then the moving mean and
    # variance, which count_params() counts and training does not.
    assert cost.trainable_params == 108 + 8
    assert cost.params == 108 + 16


def test_depthwise_macs():
    inputs = keras.Input((6, 6, 4))
    outputs = keras.layers.DepthwiseConv2D(
        3, padding="same", depth_multiplier=2
    )(inputs)
    model = keras.Model(inputs, outputs)
    # 6 x 6 positions x 8 output channels x 3 x 3, one input channel each.
    assert count_flops(model).macs == 6 * 6 * 8 * 9


def test_dense_on_sequence_macs():
    inputs = keras.Input((7, 3))
    outputs = keras.layers.Dense(2)(inputs)
    model = keras.Model(inputs, outputs)
    # The same 3 x 2 weights at each of 7 positions.
    assert count_flops(model).macs == 7 * 3 * 2


def test_nested_model_macs():
    inner_inputs = keras.Input((4, 4, 2))
    inner = keras.Model(
        inner_inputs, keras.layers.Conv2D(3, 1)(inner_inputs), name="inner"
    )
    inputs = keras.Input((4, 4, 2))
    x = inner(inputs)
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    # Inner 1x1 conv: 16 positions x 3 filters x 2 = 96. Dense: 48 x 5.
    assert count_flops(model).macs == 96 + 240


def test_unknown_dims_raise():
    model = resnet(
        18, "imagenet", include_top=False, input_shape=(None, None, 3)
    )
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(model)


# feature_extractor

IMAGENET_SHAPE = (64, 64, 3)
CIFAR_SHAPE = (16, 16, 3)

# Bottleneck output channels per stage: 4 x (64, 128, 256, 512).
IMAGENET_CHANNELS = {"C2": 256, "C3": 512, "C4": 1024, "C5": 2048}
IMAGENET_STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}
CIFAR_CHANNELS = {"C2": 16, "C3": 32, "C4": 64}
CIFAR_STRIDES = {"C2": 1, "C3": 2, "C4": 4}


def expected_shapes(shape, channels, strides):
    return {
        level: (
            2,
            shape[0] // strides[level],
            shape[1] // strides[level],
            channels[level],
        )
        for level in channels
    }


def build_imagenet(kind, version):
    if kind == "keras":
        application = {"v1": "ResNet50", "v2": "ResNet50V2"}[version]
        return getattr(keras.applications, application)(
            weights=None, input_shape=IMAGENET_SHAPE
        )
    builder = resnet if kind == "resnet" else plain
    return builder(50, "imagenet", version=version, input_shape=IMAGENET_SHAPE)


IMAGENET_CASES = [
    ("resnet", "v1"),
    ("resnet", "v1.5"),
    ("resnet", "v2"),
    ("plain", "v1"),
    ("plain", "v1.5"),
    ("plain", "v2"),
    ("keras", "v1"),
    ("keras", "v2"),
]


@pytest.fixture(
    scope="module", params=IMAGENET_CASES, ids=lambda case: "-".join(case)
)
def imagenet_features(request):
    model = build_imagenet(*request.param)
    features = feature_extractor(model)
    return {
        level: to_numpy(value)
        for level, value in features(images(2, IMAGENET_SHAPE)).items()
    }


def test_imagenet_levels(imagenet_features):
    assert sorted(imagenet_features) == ["C2", "C3", "C4", "C5"]


@pytest.mark.parametrize("level", sorted(IMAGENET_STRIDES))
def test_imagenet_level_shape(imagenet_features, level):
    expected = expected_shapes(
        IMAGENET_SHAPE, IMAGENET_CHANNELS, IMAGENET_STRIDES
    )
    assert imagenet_features[level].shape == expected[level]


@pytest.mark.parametrize("version", ["v1", "v1.5", "v2"])
def test_basic_block_levels(version):
    model = resnet(18, "imagenet", version=version, input_shape=IMAGENET_SHAPE)
    features = feature_extractor(model)
    shapes = {k: tuple(v.shape) for k, v in features.output.items()}
    assert shapes == {
        "C2": (None, 16, 16, 64),
        "C3": (None, 8, 8, 128),
        "C4": (None, 4, 4, 256),
        "C5": (None, 2, 2, 512),
    }


@pytest.mark.parametrize("version", ["v1", "v1.5", "v2"])
def test_c5_is_last_feature_map(version):
    model = resnet(
        50,
        "imagenet",
        version=version,
        include_top=False,
        input_shape=IMAGENET_SHAPE,
    )
    x = images(2, IMAGENET_SHAPE)
    c5 = to_numpy(feature_extractor(model, levels=("C5",))(x)["C5"])
    np.testing.assert_array_equal(c5, to_numpy(model(x, training=False)))


@pytest.mark.parametrize("version", ["v1.5", "v2"])
def test_dilated_levels_keep_stride(version):
    model = resnet(
        50,
        "imagenet",
        version=version,
        output_stride=16,
        input_shape=IMAGENET_SHAPE,
    )
    output = feature_extractor(model).output
    # The last stage dilates instead of striding, so C5 stays at stride 16.
    assert tuple(output["C4"].shape) == (None, 4, 4, 1024)
    assert tuple(output["C5"].shape) == (None, 4, 4, 2048)


@pytest.mark.parametrize("builder", [resnet, plain])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_cifar_levels(builder, version):
    model = builder(20, version=version, input_shape=CIFAR_SHAPE)
    features = feature_extractor(model)(images(2, CIFAR_SHAPE))
    shapes = {level: to_numpy(value).shape for level, value in features.items()}
    assert shapes == expected_shapes(CIFAR_SHAPE, CIFAR_CHANNELS, CIFAR_STRIDES)


def test_level_subset():
    model = resnet(18, "imagenet", input_shape=IMAGENET_SHAPE)
    features = feature_extractor(model, levels=("C3", "C5"))
    assert sorted(features.output) == ["C3", "C5"]


def test_unknown_level_raises():
    model = resnet(18, "imagenet", input_shape=IMAGENET_SHAPE)
    with pytest.raises(ValueError, match="C6"):
        feature_extractor(model, levels=("C3", "C6"))


def test_cifar_has_no_c5():
    model = resnet(20, input_shape=CIFAR_SHAPE)
    with pytest.raises(ValueError, match="C2, C3, C4"):
        feature_extractor(model, levels=("C5",))


def test_other_model_raises():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match="conv"):
        feature_extractor(model)


# preprocess_input


@pytest.fixture
def pixels():
    rng = np.random.default_rng(7)
    return rng.uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)


def keras_reference(version, x):
    # keras.applications writes over float inputs, so each call gets a copy.
    x = np.copy(x)
    if version == "v1":
        return keras.applications.resnet.preprocess_input(x)
    if version == "v2":
        return keras.applications.resnet_v2.preprocess_input(x)
    return imagenet_utils.preprocess_input(
        x, data_format="channels_last", mode="torch"
    )


@pytest.mark.parametrize("version", ["v1", "v1.5", "v2"])
def test_preprocess_matches_keras(pixels, version):
    expected = keras_reference(version, pixels)
    actual = to_numpy(preprocess_input(np.copy(pixels), version))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-5)


def test_preprocess_v1_caffe_values(pixels):
    out = to_numpy(preprocess_input(np.copy(pixels), "v1"))
    # RGB to BGR, minus the ImageNet BGR mean (keras.applications caffe).
    mean_bgr = np.array([103.939, 116.779, 123.68], np.float32)
    expected = pixels[..., ::-1] - mean_bgr
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)


def test_preprocess_v2_tf_values(pixels):
    out = to_numpy(preprocess_input(np.copy(pixels), "v2"))
    np.testing.assert_allclose(out, pixels / 127.5 - 1.0, rtol=1e-6, atol=1e-6)


def test_preprocess_v1_5_torch_values(pixels):
    out = to_numpy(preprocess_input(np.copy(pixels), "v1.5"))
    # The mean and standard deviation of torchvision's ImageNet weights.
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    expected = (pixels / 255.0 - mean) / std
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_preprocess_default_is_v1(pixels):
    expected = to_numpy(preprocess_input(np.copy(pixels), "v1"))
    actual = to_numpy(preprocess_input(np.copy(pixels)))
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("version", ["v1", "v1.5", "v2"])
def test_preprocess_uint8_returns_float32(pixels, version):
    out = preprocess_input(pixels.astype(np.uint8), version)
    assert to_numpy(out).dtype == np.float32


@pytest.mark.parametrize("version", ["v1", "v1.5", "v2"])
def test_preprocess_float64_returns_float32(pixels, version):
    # The preprocess_input docstring promises float32 output.
    out = preprocess_input(pixels.astype(np.float64), version)
    assert to_numpy(out).dtype == np.float32


@pytest.mark.parametrize("version", ["v1", "v1.5", "v2"])
def test_preprocess_tensor_matches_array(pixels, version):
    expected = to_numpy(preprocess_input(np.copy(pixels), version))
    tensor = keras.ops.convert_to_tensor(pixels)
    actual = to_numpy(preprocess_input(tensor, version))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("version", ["v3", "torch", None])
def test_preprocess_unknown_version_raises(pixels, version):
    with pytest.raises(ValueError, match="version"):
        preprocess_input(pixels, version)


def test_extractor_call_warns_nothing():
    model = resnet(18, "imagenet", input_shape=IMAGENET_SHAPE)
    features = feature_extractor(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        features(images(1, IMAGENET_SHAPE))
