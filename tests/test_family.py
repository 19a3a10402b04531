"""The ImageNet family: versions, plain twins, knobs and input sizes."""

import os

# Set before anything imports TensorFlow, which reads it once at import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import re  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_resnet import DropPath, copy_weights, plain, resnet  # noqa: E402

# The smallest input the imagenet family accepts, which keeps builds and
# forward passes fast. Tests that need feature maps above 1 x 1 use 64 x 64.
SMALL = (32, 32, 3)
MEDIUM = (64, 64, 3)

# Trainable parameters with 1000 classes, from the "num_params" entries of
# the weights tables in the torchvision model docs, such as
# https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html
# (resnet18 to resnet152 are the v1.5 layout).
TORCHVISION_COUNTS = {
    18: 11_689_512,
    34: 21_797_672,
    50: 25_557_032,
    101: 44_549_160,
    152: 60_192_808,
}
# torchvision resnext50_32x4d (groups=32, width_per_group=4) and
# wide_resnet50_2 (width_per_group=128), same source.
RESNEXT50_32X4D_COUNT = 25_028_904
WIDE_RESNET50_2_COUNT = 68_883_240

VERSIONS = ("v1", "v1.5", "v2")

# Blocks per stage of ResNet-18 and ResNet-50 (He et al. 2015, Table 1).
RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET50_BLOCKS = (3, 4, 6, 3)

PROJECTION = re.compile(r"_0_(conv|bn)$")
BLOCK_OUTPUT = re.compile(r"^conv(\d+)_block(\d+)_out$")


def images(batch, shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *shape)).astype(np.float32)


def predict(model, x, training=False):
    return keras.ops.convert_to_numpy(model(x, training=training))


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def weighted_names(model):
    return {layer.name for layer in model.layers if layer.weights}


def layers_of(model, layer_type):
    return [layer for layer in model.layers if isinstance(layer, layer_type)]


def block_names(model):
    """Return the block prefixes (`conv2_block1`, ...) in network order."""
    found = []
    for layer in model.layers:
        match = BLOCK_OUTPUT.match(layer.name)
        if match:
            stage, block = map(int, match.groups())
            found.append((stage, block))
    return [f"conv{stage}_block{block}" for stage, block in sorted(found)]


def last_branch_layer(block, kind, layer):
    """Return `{block}_{i}_{layer}` for the last convolution of a branch."""
    last = 3 if kind == "bottleneck" else 2
    return f"{block}_{last}_{layer}"


@pytest.fixture(scope="module")
def cached():
    """Return a memoized imagenet builder for tests that only read models.

    ResNet-50 takes about a second to build, and many tests read the same
    configuration. Tests that change weights build their own models.
    """
    models = {}

    def get(builder, depth, **options):
        key = (builder.__name__, depth, tuple(sorted(options.items())))
        if key not in models:
            models[key] = builder(depth, "imagenet", **options)
        return models[key]

    return get


# Parameter counts against torchvision


@pytest.mark.parametrize("depth", sorted(TORCHVISION_COUNTS))
def test_v1_5_count_matches_torchvision(cached, depth):
    model = cached(resnet, depth, version="v1.5", input_shape=SMALL)
    assert trainable_count(model) == TORCHVISION_COUNTS[depth]


def test_resnext_count_matches_torchvision(resnext_twins):
    assert trainable_count(resnext_twins[0]) == RESNEXT50_32X4D_COUNT


def test_wide_resnet_count_matches_torchvision():
    model = resnet(
        50, "imagenet", version="v1.5", width_per_group=128, input_shape=SMALL
    )
    assert trainable_count(model) == WIDE_RESNET50_2_COUNT


# Versions


@pytest.mark.parametrize(
    ("version", "first", "middle"),
    [
        # keras.applications' ResNet50 strides the first 1x1 convolution.
        ("v1", (2, 2), (1, 1)),
        # torchvision's Bottleneck strides the 3x3 convolution ("v1.5").
        ("v1.5", (1, 1), (2, 2)),
    ],
)
def test_bottleneck_stride_placement(cached, version, first, middle):
    model = cached(resnet, 50, version=version, input_shape=SMALL)
    assert model.get_layer("conv3_block1_1_conv").strides == first
    assert model.get_layer("conv3_block1_2_conv").strides == middle


def test_v2_strides_last_block(cached):
    model = cached(resnet, 50, version="v2", input_shape=SMALL)
    # keras.applications' ResNet50V2 strides the last block of a stage.
    assert model.get_layer("conv3_block4_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_2_conv").strides == (1, 1)


def test_v1_5_convolutions_lack_bias(cached):
    model = cached(resnet, 50, version="v1.5", input_shape=SMALL)
    biased = [
        layer.name
        for layer in layers_of(model, keras.layers.Conv2D)
        if layer.use_bias
    ]
    # torchvision builds every ResNet convolution with bias=False.
    assert biased == []


def test_v1_5_batch_norm_epsilon(cached):
    model = cached(resnet, 18, version="v1.5", input_shape=SMALL)
    epsilons = {
        layer.epsilon
        for layer in layers_of(model, keras.layers.BatchNormalization)
    }
    # PyTorch's BatchNorm2d default eps.
    assert epsilons == {1e-5}


@pytest.mark.parametrize(
    ("version", "name"),
    [("v1", "resnet50"), ("v1.5", "resnet50_v1_5"), ("v2", "resnet50v2")],
)
def test_default_model_name(cached, version, name):
    model = cached(resnet, 50, version=version, input_shape=SMALL)
    assert model.name == name


def test_plain_default_model_name():
    model = plain(34, "imagenet", version="v1.5", input_shape=SMALL)
    assert model.name == "plain34_v1_5"


def test_unknown_version_raises():
    with pytest.raises(ValueError, match="version"):
        resnet(50, "imagenet", version="v3")


def test_cifar_rejects_v1_5():
    with pytest.raises(ValueError, match="v1.5"):
        resnet(20, "cifar", version="v1.5")


@pytest.mark.parametrize("depth", [20, 42, 0])
def test_invalid_imagenet_depth_raises(depth):
    with pytest.raises(ValueError, match="depth"):
        resnet(depth, "imagenet")


# Plain twins

TWIN_CONFIGS = [
    ("imagenet", 18, "v1"),
    ("imagenet", 18, "v1.5"),
    ("imagenet", 18, "v2"),
    ("imagenet", 50, "v1"),
    ("imagenet", 50, "v1.5"),
    ("imagenet", 50, "v2"),
    ("cifar", 20, "v1"),
    ("cifar", 20, "v2"),
]


def twin_id(config):
    family, depth, version = config
    return f"{family}{depth}-{version}"


def input_for(family):
    return SMALL if family == "imagenet" else (16, 16, 3)


@pytest.fixture(scope="module", params=TWIN_CONFIGS, ids=twin_id)
def twins(request):
    family, depth, version = request.param
    shape = input_for(family)
    residual = resnet(depth, family, version=version, input_shape=shape)
    twin = plain(depth, family, version=version, input_shape=shape)
    return family, residual, twin


def test_plain_twin_has_no_add(twins):
    _, _, twin = twins
    assert layers_of(twin, keras.layers.Add) == []


def test_resnet_has_add_per_block(twins):
    _, residual, _ = twins
    adds = layers_of(residual, keras.layers.Add)
    assert len(adds) == len(block_names(residual))


def test_plain_names_drop_projections(twins):
    _, residual, twin = twins
    names = weighted_names(residual)
    projections = {name for name in names if PROJECTION.search(name)}
    assert weighted_names(twin) == names - projections


def test_imagenet_resnet_has_projections(twins):
    family, residual, _ = twins
    projections = [
        name for name in weighted_names(residual) if PROJECTION.search(name)
    ]
    # Option "B", the imagenet default, projects where the shape changes.
    # Option "A", the cifar default, has no projection weights.
    assert bool(projections) == (family == "imagenet")


def test_plain_twin_runs(twins):
    family, _, twin = twins
    out = predict(twin, images(2, input_for(family)))
    classes = 1000 if family == "imagenet" else 10
    assert out.shape == (2, classes)
    assert np.isfinite(out).all()


def test_plain_accepts_resnet_weights(twins):
    _, residual, twin = twins
    copy_weights(residual, twin)
    for layer in twin.layers:
        source = residual.get_layer(layer.name).get_weights()
        for copied, original in zip(layer.get_weights(), source, strict=True):
            assert np.array_equal(copied, original), layer.name


# groups and width_per_group


@pytest.fixture(scope="module")
def resnext_twins():
    options = dict(
        version="v1.5", groups=32, width_per_group=4, input_shape=SMALL
    )
    return resnet(50, "imagenet", **options), plain(50, "imagenet", **options)


@pytest.mark.parametrize("which", [0, 1], ids=["resnet", "plain"])
def test_resnext_grouped_convolution(resnext_twins, which):
    layer = resnext_twins[which].get_layer("conv2_block1_2_conv")
    assert layer.groups == 32
    # 32 groups of 4 channels in the first stage, as resnext50_32x4d.
    assert layer.filters == 128


def test_resnext_last_stage_width(resnext_twins):
    layer = resnext_twins[0].get_layer("conv5_block1_2_conv")
    # The width doubles per stage: 32 x 4 x 8 in the fourth.
    assert layer.filters == 1024


def test_resnext_plain_count(resnext_twins):
    residual, twin = resnext_twins
    projections = sum(
        int(np.prod(w.shape))
        for layer in residual.layers
        if PROJECTION.search(layer.name)
        for w in layer.trainable_weights
    )
    assert trainable_count(twin) == RESNEXT50_32X4D_COUNT - projections


@pytest.mark.parametrize("which", [0, 1], ids=["resnet", "plain"])
def test_resnext_runs(resnext_twins, which):
    out = predict(resnext_twins[which], images(2, SMALL))
    assert out.shape == (2, 1000)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("builder", [resnet, plain])
@pytest.mark.parametrize(
    "options", [dict(groups=32), dict(groups=2), dict(width_per_group=128)]
)
@pytest.mark.parametrize("depth", [18, 34])
def test_basic_blocks_reject_groups(builder, options, depth):
    with pytest.raises(ValueError, match="basic blocks"):
        builder(depth, "imagenet", input_shape=SMALL, **options)


@pytest.mark.parametrize("options", [dict(groups=0), dict(width_per_group=0)])
def test_nonpositive_groups_raise(options):
    with pytest.raises(ValueError, match="positive"):
        resnet(50, "imagenet", input_shape=SMALL, **options)


# zero_init_residual


@pytest.mark.parametrize("version", ["v1", "v1.5"])
@pytest.mark.parametrize("depth", [18, 50])
def test_zero_init_last_gamma_zero(cached, version, depth):
    model = cached(
        resnet,
        depth,
        version=version,
        zero_init_residual=True,
        input_shape=SMALL,
    )
    kind = "bottleneck" if depth >= 50 else "basic"
    for block in block_names(model):
        layer = model.get_layer(last_branch_layer(block, kind, "bn"))
        assert not np.any(keras.ops.convert_to_numpy(layer.gamma)), block


@pytest.mark.parametrize("version", ["v1", "v1.5"])
def test_zero_init_other_gammas_one(cached, version):
    model = cached(
        resnet,
        50,
        version=version,
        zero_init_residual=True,
        input_shape=SMALL,
    )
    for layer in layers_of(model, keras.layers.BatchNormalization):
        if layer.name.endswith("_3_bn"):
            continue
        gamma = keras.ops.convert_to_numpy(layer.gamma)
        assert np.all(gamma == 1.0), layer.name


@pytest.mark.parametrize("depth", [18, 50])
def test_zero_init_v2_last_kernel_zero(cached, depth):
    model = cached(
        resnet,
        depth,
        version="v2",
        zero_init_residual=True,
        input_shape=SMALL,
    )
    kind = "bottleneck" if depth >= 50 else "basic"
    for block in block_names(model):
        layer = model.get_layer(last_branch_layer(block, kind, "conv"))
        assert not np.any(keras.ops.convert_to_numpy(layer.kernel)), block


def test_default_last_gamma_nonzero(cached):
    model = cached(resnet, 50, version="v1.5", input_shape=SMALL)
    gamma = keras.ops.convert_to_numpy(
        model.get_layer("conv2_block2_3_bn").gamma
    )
    assert np.all(gamma == 1.0)


def same_shape_block_pairs(model):
    """Return (input, output) layer names of blocks that keep the shape."""
    names = [f"{block}_out" for block in block_names(model)]
    return [
        (before, after)
        for before, after in zip(names, names[1:], strict=False)
        if model.get_layer(before).output.shape
        == model.get_layer(after).output.shape
    ]


def block_features(model, x):
    pairs = same_shape_block_pairs(model)
    names = sorted({name for pair in pairs for name in pair})
    probe = keras.Model(
        model.input, {name: model.get_layer(name).output for name in names}
    )
    outputs = probe(x, training=False)
    values = {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    return pairs, values


@pytest.mark.parametrize("version", VERSIONS)
def test_zero_init_blocks_are_identity(cached, version):
    model = cached(
        resnet,
        50,
        version=version,
        zero_init_residual=True,
        input_shape=SMALL,
    )
    pairs, values = block_features(model, images(2, SMALL))
    assert pairs
    for before, after in pairs:
        np.testing.assert_array_equal(values[after], values[before])


@pytest.mark.parametrize("version", VERSIONS)
def test_default_blocks_change_features(cached, version):
    model = cached(resnet, 50, version=version, input_shape=SMALL)
    pairs, values = block_features(model, images(2, SMALL))
    for before, after in pairs:
        assert not np.allclose(values[after], values[before]), after


@pytest.mark.parametrize("family", ["imagenet", "cifar"])
def test_plain_rejects_zero_init(family):
    with pytest.raises(ValueError, match="zero_init_residual"):
        plain(
            18 if family == "imagenet" else 20, family, zero_init_residual=True
        )


def test_cifar_zero_init_last_gamma_zero():
    model = resnet(20, zero_init_residual=True, input_shape=(16, 16, 3))
    for block in block_names(model):
        gamma = model.get_layer(f"{block}_2_bn").gamma
        assert not np.any(keras.ops.convert_to_numpy(gamma)), block


# drop_path_rate

DROP_PATH_RATE = 0.2


@pytest.mark.parametrize("version", VERSIONS)
def test_drop_path_rates_grow_linearly(cached, version):
    model = cached(
        resnet,
        18,
        version=version,
        drop_path_rate=DROP_PATH_RATE,
        input_shape=SMALL,
    )
    blocks = block_names(model)
    assert len(blocks) == sum(RESNET18_BLOCKS)
    expected = np.linspace(0.0, DROP_PATH_RATE, len(blocks))
    names = {layer.name for layer in model.layers}
    for block, rate in zip(blocks, expected, strict=True):
        layer_name = f"{block}_drop_path"
        if rate == 0:
            # A rate of 0 is the identity, so the first block has no layer.
            assert layer_name not in names
            continue
        layer = model.get_layer(layer_name)
        assert isinstance(layer, DropPath)
        assert layer.rate == pytest.approx(rate)


def test_drop_path_last_rate_is_given(cached):
    model = cached(resnet, 18, drop_path_rate=DROP_PATH_RATE, input_shape=SMALL)
    rates = [layer.rate for layer in layers_of(model, DropPath)]
    assert max(rates) == pytest.approx(DROP_PATH_RATE)


@pytest.fixture(scope="module")
def drop_path_pair():
    """Return a ResNet-18 with stochastic depth and its copy without."""
    options = dict(version="v1.5", input_shape=SMALL)
    dropping = resnet(18, "imagenet", drop_path_rate=0.5, **options)
    reference = resnet(18, "imagenet", **options)
    copy_weights(dropping, reference)
    return dropping, reference


def test_drop_path_inference_deterministic(drop_path_pair):
    dropping, _ = drop_path_pair
    x = images(8, SMALL)
    np.testing.assert_array_equal(predict(dropping, x), predict(dropping, x))


def test_drop_path_inference_is_identity(drop_path_pair):
    dropping, reference = drop_path_pair
    x = images(8, SMALL)
    np.testing.assert_allclose(
        predict(dropping, x), predict(reference, x), rtol=1e-6, atol=1e-6
    )


def test_drop_path_training_varies(drop_path_pair):
    dropping, _ = drop_path_pair
    x = images(8, SMALL)
    # BatchNormalization normalizes by the batch in training too, which is
    # the same for both calls, so only DropPath can change the output.
    first = predict(dropping, x, training=True)
    second = predict(dropping, x, training=True)
    assert not np.allclose(first, second)


@pytest.mark.parametrize("family", ["imagenet", "cifar"])
def test_plain_rejects_drop_path(family):
    with pytest.raises(ValueError, match="drop_path_rate"):
        plain(18 if family == "imagenet" else 20, family, drop_path_rate=0.1)


@pytest.mark.parametrize("rate", [1.0, -0.1])
def test_invalid_drop_path_rate_raises(rate):
    with pytest.raises(ValueError, match="drop_path_rate"):
        resnet(18, "imagenet", drop_path_rate=rate, input_shape=SMALL)


# deep_stem and avg_down (ResNet-D, He et al. 2019, "Bag of Tricks for
# Image Classification with Convolutional Neural Networks")


def stem_trainable(version, deep_stem):
    """Count the stem's trainable weights by hand, 3 input channels.

    The default stem is a 7x7 convolution to 64 channels. The ResNet-D stem
    is three 3x3 convolutions to 32, 32 and 64 channels, the first with
    stride 2. Convolutions have biases in "v1" and "v2". Each is followed by
    BatchNormalization (gamma and beta), except the last one in "v2", whose
    BatchNormalization is the first block's pre-activation.
    """
    bias = version in ("v1", "v2")
    if deep_stem:
        convs = [(3, 3, 32), (3, 32, 32), (3, 32, 64)]
    else:
        convs = [(7, 3, 64)]
    total = 0
    for index, (kernel, c_in, c_out) in enumerate(convs):
        total += kernel * kernel * c_in * c_out + (c_out if bias else 0)
        last = index == len(convs) - 1
        if not (version == "v2" and last):
            total += 2 * c_out
    return total


@pytest.mark.parametrize("version", VERSIONS)
def test_deep_stem_count_difference(cached, version):
    # The stem does not depend on the depth, so ResNet-18 builds faster.
    default = cached(resnet, 18, version=version, input_shape=SMALL)
    deep = cached(
        resnet, 18, version=version, deep_stem=True, input_shape=SMALL
    )
    expected = stem_trainable(version, True) - stem_trainable(version, False)
    assert trainable_count(deep) - trainable_count(default) == expected


def test_stem_formula_matches_default():
    # 7 x 7 x 3 x 64 without bias, plus BatchNormalization of 64 channels:
    # torchvision's conv1 and bn1.
    assert stem_trainable("v1.5", False) == 7 * 7 * 3 * 64 + 2 * 64


@pytest.fixture(scope="module", params=["resnet", "plain"])
def deep_stem_model(request):
    builder = resnet if request.param == "resnet" else plain
    return builder(
        50,
        "imagenet",
        version="v1.5",
        deep_stem=True,
        avg_down=True,
        input_shape=MEDIUM,
    )


@pytest.mark.parametrize(
    "name", ["conv1_1_conv", "conv1_2_conv", "conv1_3_conv"]
)
def test_deep_stem_layer_exists(deep_stem_model, name):
    assert isinstance(deep_stem_model.get_layer(name), keras.layers.Conv2D)


def test_deep_stem_replaces_conv1(deep_stem_model):
    names = {layer.name for layer in deep_stem_model.layers}
    assert "conv1_conv" not in names


def test_deep_stem_first_conv_strided(deep_stem_model):
    assert deep_stem_model.get_layer("conv1_1_conv").strides == (2, 2)


def test_deep_stem_model_runs(deep_stem_model):
    out = predict(deep_stem_model, images(2, MEDIUM))
    assert out.shape == (2, 1000)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("version", ["v1", "v1.5", "v2"])
def test_avg_down_pools_shortcut(cached, version):
    model = cached(
        resnet, 18, version=version, avg_down=True, input_shape=SMALL
    )
    pools = layers_of(model, keras.layers.AveragePooling2D)
    # One per downsampling shortcut: three of the four stages downsample.
    assert len(pools) == 3


@pytest.mark.parametrize("stage", [3, 4, 5])
def test_avg_down_projection_stride_one(cached, stage):
    model = cached(resnet, 18, version="v1.5", avg_down=True, input_shape=SMALL)
    assert model.get_layer(f"conv{stage}_block1_0_conv").strides == (1, 1)
    pool = model.get_layer(f"conv{stage}_block1_0_pool")
    assert isinstance(pool, keras.layers.AveragePooling2D)
    assert pool.pool_size == (2, 2)


@pytest.mark.parametrize("version", VERSIONS)
def test_avg_down_keeps_count(cached, version):
    default = cached(resnet, 18, version=version, input_shape=SMALL)
    pooled = cached(
        resnet, 18, version=version, avg_down=True, input_shape=SMALL
    )
    # Pooling has no weights and the projections keep their shapes.
    assert trainable_count(pooled) == trainable_count(default)


def test_avg_down_changes_shortcut_values():
    options = dict(version="v1.5", include_top=False, input_shape=MEDIUM)
    default = resnet(18, "imagenet", **options)
    pooled = resnet(18, "imagenet", avg_down=True, **options)
    copy_weights(default, pooled)
    x = images(2, MEDIUM)
    assert not np.allclose(predict(pooled, x), predict(default, x))


def test_plain_avg_down_has_no_pooling():
    model = plain(
        18, "imagenet", version="v1.5", avg_down=True, input_shape=SMALL
    )
    # The plain twin has no shortcuts to pool.
    assert layers_of(model, keras.layers.AveragePooling2D) == []


def test_cifar_rejects_deep_stem():
    with pytest.raises(ValueError, match="deep_stem"):
        resnet(20, deep_stem=True)


# se_ratio (Hu et al. 2018, "Squeeze-and-Excitation Networks")

SE_RATIO = 1 / 16
SE_SUFFIXES = ("_se_squeeze", "_se_reduce", "_se_expand", "_se_excite")


def se_trainable(stage_blocks, stage_channels, ratio):
    """Count the weights of the SE blocks by hand.

    Each block's SE unit is two fully connected layers with biases, from
    the block's C output channels to C * ratio and back.
    """
    total = 0
    for blocks, channels in zip(stage_blocks, stage_channels, strict=True):
        reduced = int(channels * ratio)
        unit = channels * reduced + reduced + reduced * channels + channels
        total += blocks * unit
    return total


@pytest.fixture(scope="module", params=["resnet", "plain"])
def se_model(request):
    builder = resnet if request.param == "resnet" else plain
    return builder(
        50, "imagenet", version="v1.5", se_ratio=SE_RATIO, input_shape=SMALL
    )


def test_se_layers_in_every_block(se_model):
    names = {layer.name for layer in se_model.layers}
    for block in block_names(se_model):
        for suffix in SE_SUFFIXES:
            assert f"{block}{suffix}" in names


def test_se_reduce_filters(se_model):
    layer = se_model.get_layer("conv4_block1_se_reduce")
    # 1024 output channels of the third stage, divided by 16.
    assert layer.filters == 64


def test_se_model_runs(se_model):
    out = predict(se_model, images(2, SMALL))
    assert out.shape == (2, 1000)
    assert np.isfinite(out).all()


def test_se_count_difference(cached):
    default = cached(resnet, 50, version="v1.5", input_shape=SMALL)
    excited = cached(
        resnet, 50, version="v1.5", se_ratio=SE_RATIO, input_shape=SMALL
    )
    expected = se_trainable(RESNET50_BLOCKS, (256, 512, 1024, 2048), SE_RATIO)
    assert trainable_count(excited) - trainable_count(default) == expected


def test_plain_twin_keeps_se():
    options = dict(version="v2", se_ratio=SE_RATIO, input_shape=SMALL)
    residual = resnet(50, "imagenet", **options)
    twin = plain(50, "imagenet", **options)

    def se_names(model):
        return {n for n in weighted_names(model) if "_se_" in n}

    assert se_names(twin) == se_names(residual)
    assert len(se_names(twin)) == 2 * sum(RESNET50_BLOCKS)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_se_basic_blocks_run(version):
    model = resnet(
        18, "imagenet", version=version, se_ratio=0.25, input_shape=SMALL
    )
    assert predict(model, images(2, SMALL)).shape == (2, 1000)


@pytest.mark.parametrize("ratio", [0.0, 1.5])
def test_invalid_se_ratio_raises(ratio):
    with pytest.raises(ValueError, match="se_ratio"):
        resnet(50, "imagenet", se_ratio=ratio, input_shape=SMALL)


# output_stride


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("stride", "size"), [(8, 28), (16, 14), (32, 7)])
def test_output_stride_at_224(cached, version, stride, size):
    model = cached(
        resnet,
        18,
        version=version,
        include_top=False,
        output_stride=stride,
    )
    assert model.output.shape == (None, size, size, 512)


@pytest.mark.parametrize("builder", [resnet, plain])
@pytest.mark.parametrize(("stride", "size"), [(8, 8), (16, 4), (32, 2)])
def test_output_stride_runs_at_64(builder, stride, size):
    model = builder(
        18,
        "imagenet",
        include_top=False,
        output_stride=stride,
        input_shape=MEDIUM,
    )
    assert predict(model, images(1, MEDIUM)).shape == (1, size, size, 512)


@pytest.mark.parametrize("stride", [2, 12, 64])
def test_invalid_output_stride_raises(stride):
    with pytest.raises(ValueError, match="output_stride"):
        resnet(50, "imagenet", output_stride=stride, input_shape=SMALL)


@pytest.mark.parametrize(
    ("stride", "dilations"),
    [
        # torchvision's replace_stride_with_dilation: the block whose
        # stride is replaced keeps the previous dilation, the rest of the
        # stage dilates by the replaced stride.
        (16, {"conv4_block2": 1, "conv5_block1": 1, "conv5_block2": 2}),
        (
            8,
            {
                "conv4_block1": 1,
                "conv4_block2": 2,
                "conv5_block1": 2,
                "conv5_block3": 4,
            },
        ),
    ],
)
def test_output_stride_dilations(cached, stride, dilations):
    model = cached(
        resnet,
        50,
        version="v1.5",
        include_top=False,
        output_stride=stride,
        input_shape=MEDIUM,
    )
    for block, rate in dilations.items():
        layer = model.get_layer(f"{block}_2_conv")
        assert layer.dilation_rate == (rate, rate), block
        assert layer.strides == (1, 1), block


def test_output_stride_keeps_count(cached):
    default = cached(resnet, 18, version="v1.5", input_shape=SMALL)
    dilated = cached(
        resnet, 18, version="v1.5", output_stride=8, input_shape=SMALL
    )
    assert trainable_count(dilated) == trainable_count(default)


# Input sizes


def test_v1_5_odd_size_feature_map():
    model = resnet(
        50,
        "imagenet",
        version="v1.5",
        include_top=False,
        input_shape=(65, 97, 3),
    )
    # Each stride-2 step pads symmetrically and gives ceil(n / 2), the
    # 3x3 max pooling with padding 1 too: 65 -> 33 -> 17 -> 9 -> 5 -> 3 and
    # 97 -> 49 -> 25 -> 13 -> 7 -> 4.
    assert predict(model, images(1, (65, 97, 3))).shape == (1, 3, 4, 2048)


@pytest.mark.parametrize(
    ("version", "application"), [("v1", "ResNet50"), ("v2", "ResNet50V2")]
)
def test_odd_size_matches_keras_shape(version, application):
    shape = (65, 97, 3)
    reference = getattr(keras.applications, application)(
        weights=None, include_top=False, input_shape=shape
    )
    model = resnet(
        50, "imagenet", version=version, include_top=False, input_shape=shape
    )
    assert model.output.shape == reference.output.shape


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("pooling", "expected"),
    [
        (None, {(64, 64): (1, 2, 2, 512), (96, 80): (1, 3, 3, 512)}),
        ("avg", {(64, 64): (1, 512), (96, 80): (1, 512)}),
    ],
)
def test_none_spatial_dims(version, pooling, expected):
    model = resnet(
        18,
        "imagenet",
        version=version,
        include_top=False,
        pooling=pooling,
        input_shape=(None, None, 3),
    )
    for size, shape in expected.items():
        assert predict(model, images(1, (*size, 3))).shape == shape


@pytest.mark.parametrize("builder", [resnet, plain])
@pytest.mark.parametrize("version", VERSIONS)
def test_one_channel_input(builder, version):
    model = builder(18, "imagenet", version=version, input_shape=(32, 32, 1))
    assert model.get_layer("conv1_conv").kernel.shape == (7, 7, 1, 64)
    assert predict(model, images(2, (32, 32, 1))).shape == (2, 1000)


@pytest.mark.parametrize("shape", [(31, 64, 3), (64, 31, 3), (16, 16, 3)])
def test_input_below_32_raises(shape):
    with pytest.raises(ValueError, match="at least 32"):
        resnet(50, "imagenet", input_shape=shape)


def test_default_input_shape(cached):
    model = cached(resnet, 18)
    assert model.input_shape == (None, 224, 224, 3)
