import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_resnet import ZeroPaddedIdentity, plain, resnet

# The input shape of the `small_resnet` fixture in conftest.py.
SMALL_SHAPE = (16, 16, 3)

# Trainable parameters of the CIFAR-10 ResNets with option A shortcuts, and
# the rounded figures that He et al. (2015), "Deep Residual Learning for
# Image Recognition", give in Table 6. The exact counts are what test() in
# resnet.py of github.com/akamaster/pytorch_resnet_cifar10, a PyTorch
# option A implementation, sums over every requires_grad parameter. Its
# README repeats the rounded figures.
PAPER_COUNTS = {
    20: (269_722, "0.27M"),
    32: (464_154, "0.46M"),
    44: (658_586, "0.66M"),
    56: (853_018, "0.85M"),
    110: (1_727_962, "1.7M"),
}
DEPTHS = sorted(PAPER_COUNTS)


def closed_form_count(depth, in_channels=3, classes=10):
    """Count trainable parameters of the CIFAR ResNet of He et al. (2015)."""
    n = (depth - 2) // 6

    def conv_bn(c_in, c_out):
        # A bias-free 3x3 convolution, then BatchNormalization's gamma + beta.
        return 3 * 3 * c_in * c_out + 2 * c_out

    total = conv_bn(in_channels, 16)
    channels = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += conv_bn(channels, width) + conv_bn(width, width)
            channels = width
    return total + 64 * classes + classes


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def layer_names(model):
    return [layer.name for layer in model.layers]


def count_layers(model, layer_type):
    return sum(isinstance(layer, layer_type) for layer in model.layers)


@pytest.fixture(scope="module")
def cifar_model():
    """Return a cached builder, since ResNet-110 takes seconds to build."""
    cache = {}

    def get(builder, depth, shortcut="A"):
        key = (builder.__name__, depth, shortcut)
        if key not in cache:
            cache[key] = builder(depth, shortcut=shortcut)
        return cache[key]

    return get


# Parameter counts


@pytest.mark.parametrize("depth", DEPTHS)
def test_resnet_count_matches_golden(cifar_model, depth):
    model = cifar_model(resnet, depth)
    assert trainable_count(model) == PAPER_COUNTS[depth][0]


@pytest.mark.parametrize("depth", DEPTHS)
def test_plain_count_matches_golden(cifar_model, depth):
    model = cifar_model(plain, depth)
    assert trainable_count(model) == PAPER_COUNTS[depth][0]


@pytest.mark.parametrize("depth", DEPTHS)
def test_golden_count_rounds_to_paper(depth):
    count, figure = PAPER_COUNTS[depth]
    decimals = len(figure.rstrip("M").split(".")[1])
    assert f"{count / 1e6:.{decimals}f}M" == figure


@pytest.mark.parametrize("depth", DEPTHS)
def test_golden_count_matches_closed_form(depth):
    assert closed_form_count(depth) == PAPER_COUNTS[depth][0]


def test_closed_form_other_channels_classes():
    model = resnet(20, input_shape=(16, 16, 5), classes=7)
    expected = closed_form_count(20, in_channels=5, classes=7)
    assert trainable_count(model) == expected


# Plain and residual twins


def test_twins_share_layer_names(cifar_model):
    residual = cifar_model(resnet, 20)
    twin = cifar_model(plain, 20)
    shortcut_free = [
        name
        for name in layer_names(residual)
        if not name.endswith(("_add", "_shortcut"))
    ]
    assert shortcut_free == layer_names(twin)


def test_resnet_extra_layers_are_shortcuts(cifar_model):
    residual = set(layer_names(cifar_model(resnet, 20)))
    twin = set(layer_names(cifar_model(plain, 20)))
    extra = residual - twin
    assert all(name.endswith(("_add", "_shortcut")) for name in extra)


def test_plain_set_weights_from_resnet():
    residual = resnet(20, input_shape=SMALL_SHAPE)
    twin = plain(20, input_shape=SMALL_SHAPE)
    twin.set_weights(residual.get_weights())
    # Shapes repeat inside a stage, so compare every layer by name.
    for layer in twin.layers:
        source = residual.get_layer(layer.name).get_weights()
        for copied, original in zip(layer.get_weights(), source, strict=True):
            assert np.array_equal(copied, original), layer.name


def test_option_b_adds_projections(cifar_model):
    option_a = trainable_count(cifar_model(resnet, 20, "A"))
    option_b = trainable_count(cifar_model(resnet, 20, "B"))
    # Strided 1x1 projections 16->32 and 32->64, each with BN gamma + beta.
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert option_b == option_a + projections


def test_option_b_resnet_has_projections(cifar_model):
    names = layer_names(cifar_model(resnet, 20, "B"))
    projections = [name for name in names if name.endswith("_0_conv")]
    assert projections == ["conv3_block1_0_conv", "conv4_block1_0_conv"]


def test_option_b_plain_lacks_projections(cifar_model):
    names = layer_names(cifar_model(plain, 20, "B"))
    assert not [name for name in names if "_0_" in name]


def test_option_b_plain_equals_option_a(cifar_model):
    option_b = trainable_count(cifar_model(plain, 20, "B"))
    assert option_b == PAPER_COUNTS[20][0]


@pytest.mark.parametrize("depth", [20, 32])
def test_resnet_add_per_block(cifar_model, depth):
    blocks = 3 * (depth - 2) // 6
    model = cifar_model(resnet, depth)
    assert count_layers(model, keras.layers.Add) == blocks


@pytest.mark.parametrize("depth", [20, 32])
def test_plain_has_no_add(cifar_model, depth):
    model = cifar_model(plain, depth)
    assert count_layers(model, keras.layers.Add) == 0


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet_has_no_lambda(cifar_model, shortcut):
    model = cifar_model(resnet, 20, shortcut)
    assert count_layers(model, keras.layers.Lambda) == 0


# Argument checks


@pytest.mark.parametrize("builder", [resnet, plain])
@pytest.mark.parametrize("depth", [21, 7, 0, 2, "20", 20.0])
def test_invalid_depth_names_rule(builder, depth):
    with pytest.raises(ValueError, match=r"6n \+ 2"):
        builder(depth)


def test_invalid_depth_names_value():
    with pytest.raises(ValueError, match="depth=21"):
        resnet(21)


def test_unknown_family_raises():
    with pytest.raises(ValueError, match="family='vgg'"):
        resnet(20, family="vgg")


@pytest.mark.parametrize("shortcut", ["C", "a"])
def test_unknown_shortcut_raises(shortcut):
    with pytest.raises(ValueError, match=f"shortcut={shortcut!r}"):
        resnet(20, shortcut=shortcut)


def test_unknown_pooling_raises():
    with pytest.raises(ValueError, match="pooling='mean'"):
        resnet(20, include_top=False, pooling="mean")


@pytest.mark.parametrize("shape", [(7, 16, 3), (16, 7, 3), (4, 4, 3)])
def test_input_below_8_raises(shape):
    with pytest.raises(ValueError, match="at least 8"):
        resnet(20, input_shape=shape)


def test_zero_classes_raises():
    with pytest.raises(ValueError, match="classes=0"):
        resnet(20, classes=0)


# Inputs and heads


@pytest.mark.parametrize("channels", [1, 5])
def test_resnet_other_channel_counts(images, predict, channels):
    shape = (16, 16, channels)
    model = resnet(20, input_shape=shape)
    assert predict(model, images(2, shape)).shape == (2, 10)


@pytest.fixture(scope="module")
def any_size_resnet():
    return resnet(
        20, input_shape=(None, None, 3), include_top=False, pooling="avg"
    )


@pytest.mark.parametrize("size", [(16, 16), (24, 20)])
def test_none_spatial_dims_any_size(any_size_resnet, images, predict, size):
    x = images(2, (*size, 3))
    assert predict(any_size_resnet, x).shape == (2, 64)


@pytest.fixture(scope="module")
def odd_size_resnet():
    return resnet(20, input_shape=(9, 9, 3), include_top=False)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        ("conv2_block3_out", (None, 9, 9, 16)),
        ("conv3_block1_shortcut", (None, 5, 5, 32)),
        ("conv3_block1_1_conv", (None, 5, 5, 32)),
        ("conv4_block1_shortcut", (None, 3, 3, 64)),
        ("conv4_block1_1_conv", (None, 3, 3, 64)),
        ("conv4_block3_out", (None, 3, 3, 64)),
    ],
)
def test_odd_size_stage_shapes(odd_size_resnet, layer, shape):
    assert odd_size_resnet.get_layer(layer).output.shape == shape


def test_odd_size_runs(odd_size_resnet, images, predict):
    x = images(2, (9, 9, 3))
    assert predict(odd_size_resnet, x).shape == (2, 3, 3, 64)


def test_feature_map_without_pooling(predict, images):
    model = resnet(20, include_top=False)
    assert predict(model, images(2, (32, 32, 3))).shape == (2, 8, 8, 64)


@pytest.fixture(scope="module")
def logits_resnet():
    return resnet(20, input_shape=SMALL_SHAPE, classifier_activation=None)


def test_logits_rows_not_normalized(logits_resnet, images, predict):
    sums = predict(logits_resnet, images(4)).sum(axis=-1)
    assert not np.allclose(sums, 1.0, atol=1e-3)


def test_logits_have_negative_values(logits_resnet, images, predict):
    assert (predict(logits_resnet, images(4)) < 0).any()


def test_softmax_rows_sum_to_one(small_resnet, images, predict):
    sums = predict(small_resnet, images(4)).sum(axis=-1)
    assert np.allclose(sums, 1.0, atol=1e-5)


# ZeroPaddedIdentity


@pytest.mark.parametrize(("filters", "before"), [(6, 2), (5, 1)])
def test_zero_padded_identity_values(filters, before):
    x = np.arange(1, 1 + 3 * 3 * 2, dtype=np.float32).reshape(1, 3, 3, 2)
    out = keras.ops.convert_to_numpy(ZeroPaddedIdentity(filters, 2)(x))
    subsampled = x[:, ::2, ::2, :]
    assert out.shape == (1, 2, 2, filters)
    assert np.array_equal(out[..., before : before + 2], subsampled)
    assert not out[..., :before].any()
    assert not out[..., before + 2 :].any()


@pytest.mark.parametrize(("size", "expected"), [(9, 5), (5, 3)])
def test_zero_padded_identity_matches_conv(size, expected):
    x = np.zeros((1, size, size, 4), dtype=np.float32)
    shortcut = ZeroPaddedIdentity(8, 2)(x)
    conv = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    assert shortcut.shape == conv.shape
    assert shortcut.shape[1:3] == (expected, expected)


@pytest.mark.parametrize("size", [9, 5, None])
def test_zero_padded_identity_output_shape(size):
    layer = ZeroPaddedIdentity(8, 2)
    inputs = keras.Input((size, size, 4))
    expected = None if size is None else -(-size // 2)
    assert layer(inputs).shape == (None, expected, expected, 8)


@pytest.mark.parametrize("size", [16, 9])
def test_shortcut_samples_conv_grid(images, size):
    # With a kernel whose centre tap copies input channel c to output
    # channel c + 8, the strided 3x3 convolution of conv3_block1 equals
    # its option A shortcut only if both read the same rows and columns.
    # "same" padding on an even size would read the odd ones instead.
    model = resnet(20, input_shape=(size, size, 3), include_top=False)
    conv = model.get_layer("conv3_block1_1_conv")
    kernel = np.zeros(conv.kernel.shape, dtype=np.float32)
    for channel in range(16):
        kernel[1, 1, channel, channel + 8] = 1.0
    conv.kernel.assign(kernel)
    probe = keras.Model(
        model.input,
        [conv.output, model.get_layer("conv3_block1_shortcut").output],
    )
    convolved, shortcut = probe(images(2, (size, size, 3)), training=False)
    assert np.allclose(convolved, shortcut, atol=1e-6)


def test_zero_padded_identity_fewer_filters():
    with pytest.raises(ValueError, match="cannot reduce 4 channels"):
        ZeroPaddedIdentity(2)(np.zeros((1, 8, 8, 4), dtype=np.float32))


def test_zero_padded_identity_config_round_trip():
    layer = ZeroPaddedIdentity(32, 2, name="shortcut")
    config = layer.get_config()
    assert ZeroPaddedIdentity.from_config(config).get_config() == config


def test_zero_padded_identity_serializes():
    layer = ZeroPaddedIdentity(32, 2, name="shortcut")
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is ZeroPaddedIdentity
    assert (restored.filters, restored.strides) == (32, 2)


# .keras files

# A fresh interpreter, so that only `import keras_resnet` can register
# ZeroPaddedIdentity before load_model runs with its default safe_mode=True.
LOAD_SCRIPT = """
import sys

import keras
import numpy as np
{import_line}

model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(x, training=False)))
"""


def load_in_fresh_process(model_file, x, tmp_path, import_package):
    import_line = "import keras_resnet" if import_package else ""
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT.format(import_line=import_line))
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, str(script), str(model_file), "x.npy", "y.npy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, tmp_path / "y.npy"


def test_keras_file_loads_in_fresh_process(
    small_resnet, small_resnet_file, images, predict, tmp_path
):
    x = images(3)
    result, output = load_in_fresh_process(
        small_resnet_file, x, tmp_path, import_package=True
    )
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(output), predict(small_resnet, x))


def test_keras_file_needs_package_import(small_resnet_file, images, tmp_path):
    result, output = load_in_fresh_process(
        small_resnet_file, images(1), tmp_path, import_package=False
    )
    assert result.returncode != 0
    assert "ZeroPaddedIdentity" in result.stderr
    assert not output.exists()


@pytest.mark.heavy
def test_resnet110_keras_round_trip(images, predict, tmp_path):
    model = resnet(110)
    path = tmp_path / "resnet110.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = images(2, (32, 32, 3))
    assert np.array_equal(predict(loaded, x), predict(model, x))
