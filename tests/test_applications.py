"""Named builders, list_models, and weights from keras.applications."""

import os

# Set before anything imports TensorFlow, which reads it once at import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import inspect  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_resnet  # noqa: E402
from keras_resnet import (  # noqa: E402
    copy_weights,
    get_model,
    list_models,
    plain,
    resnet,
)

# keras.applications builders: (depth, version, count_params() with the top
# and BatchNormalization moving statistics, from Keras 3.15).
APPLICATIONS = {
    "ResNet50": (50, "v1", 25_636_712),
    "ResNet101": (101, "v1", 44_707_176),
    "ResNet152": (152, "v1", 60_419_944),
    "ResNet50V2": (50, "v2", 25_613_800),
    "ResNet101V2": (101, "v2", 44_675_560),
    "ResNet152V2": (152, "v2", 60_380_648),
}

# The named builders as the keras_resnet.applications docstring documents
# them: name -> (family, depth, default version, default model name).
NAMED = {
    "ResNet18": ("imagenet", 18, "v1.5", "resnet18_v1_5"),
    "ResNet34": ("imagenet", 34, "v1.5", "resnet34_v1_5"),
    "ResNet50": ("imagenet", 50, "v1", "resnet50"),
    "ResNet101": ("imagenet", 101, "v1", "resnet101"),
    "ResNet152": ("imagenet", 152, "v1", "resnet152"),
    "ResNet50V2": ("imagenet", 50, "v2", "resnet50v2"),
    "ResNet101V2": ("imagenet", 101, "v2", "resnet101v2"),
    "ResNet152V2": ("imagenet", 152, "v2", "resnet152v2"),
    "ResNet20": ("cifar", 20, "v1", "resnet20"),
    "ResNet32": ("cifar", 32, "v1", "resnet32"),
    "ResNet44": ("cifar", 44, "v1", "resnet44"),
    "ResNet56": ("cifar", 56, "v1", "resnet56"),
    "ResNet110": ("cifar", 110, "v1", "resnet110"),
}
CIFAR_NAMES = [name for name, spec in NAMED.items() if spec[0] == "cifar"]

# torchvision trainable parameters of resnet18 and resnet34 ("num_params"
# in the weights tables of the torchvision model docs, such as
# https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html
# for resnet50).
TORCHVISION_COUNTS = {"ResNet18": 11_689_512, "ResNet34": 21_797_672}

# keras.applications' builder arguments, in order.
KERAS_ARGUMENTS = [
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "pooling",
    "classes",
    "classifier_activation",
    "name",
]

# Small inputs that keep builds and forward passes fast: the imagenet
# minimum is 32 x 32, and 64 x 64 leaves 2 x 2 maps in the last stage.
WEIGHTS_SHAPE = (64, 64, 3)
SMALL_SHAPES = {"imagenet": (32, 32, 3), "cifar": (16, 16, 3)}


def images(batch, shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *shape)).astype(np.float32)


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def weighted_names(model):
    return {layer.name for layer in model.layers if layer.weights}


def randomize(model, seed=0):
    """Randomize BatchNormalization weights and every bias of `model`.

    Fresh networks have gamma 1, beta 0, moving mean 0, moving variance 1
    and zero biases, so a copy that swapped or dropped any of them would
    go unnoticed. Moving variances stay in [0.5, 1.5] to keep activations
    finite through 150 layers.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.gamma.shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, size).astype(np.float32),
                    rng.normal(0.0, 0.1, size).astype(np.float32),
                    rng.normal(0.0, 0.1, size).astype(np.float32),
                    rng.uniform(0.5, 1.5, size).astype(np.float32),
                ]
            )
        elif getattr(layer, "use_bias", False) and layer.bias is not None:
            kernel, bias = layer.get_weights()
            noise = rng.normal(0.0, 0.1, bias.shape).astype(np.float32)
            layer.set_weights([kernel, noise])
    return model


def build_named(name, **options):
    family = NAMED[name][0]
    options.setdefault("input_shape", SMALL_SHAPES[family])
    return get_model(name)(**options)


# Layer names, counts and weights against keras.applications


@pytest.fixture(scope="module", params=sorted(APPLICATIONS))
def pair(request):
    """Return a keras.applications network and keras_resnet's equivalent.

    The reference has randomized weights, which are copied into ours.
    `fresh` is our output before the copy.
    """
    name = request.param
    depth, version, _ = APPLICATIONS[name]
    reference = getattr(keras.applications, name)(
        weights=None, input_shape=WEIGHTS_SHAPE, classifier_activation=None
    )
    randomize(reference)
    ours = resnet(
        depth,
        "imagenet",
        version=version,
        input_shape=WEIGHTS_SHAPE,
        classifier_activation=None,
    )
    x = images(2, WEIGHTS_SHAPE)
    fresh = predict(ours, x)
    copy_weights(reference, ours)
    return SimpleNamespace(
        name=name,
        reference=reference,
        ours=ours,
        expected=predict(reference, x),
        actual=predict(ours, x),
        fresh=fresh,
    )


def test_count_matches_keras_golden(pair):
    assert pair.ours.count_params() == APPLICATIONS[pair.name][2]


def test_keras_count_matches_golden(pair):
    # Guards the golden numbers against another Keras version.
    assert pair.reference.count_params() == APPLICATIONS[pair.name][2]


def test_count_matches_live_keras(pair):
    assert pair.ours.count_params() == pair.reference.count_params()


def test_layer_names_match_keras(pair):
    assert weighted_names(pair.ours) == weighted_names(pair.reference)


def test_model_name_matches_keras(pair):
    assert pair.ours.name == pair.reference.name


def test_copied_weights_match_keras(pair):
    np.testing.assert_allclose(pair.actual, pair.expected, rtol=1e-5, atol=1e-5)


def test_uncopied_weights_differ(pair):
    # Shows that the comparison above can fail.
    assert not np.allclose(pair.fresh, pair.expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("name", "version"), [("ResNet50", "v1"), ("ResNet50V2", "v2")]
)
def test_odd_size_features_match_keras(name, version):
    shape = (65, 97, 3)
    reference = getattr(keras.applications, name)(
        weights=None, include_top=False, input_shape=shape
    )
    randomize(reference)
    ours = resnet(
        50, "imagenet", version=version, include_top=False, input_shape=shape
    )
    copy_weights(reference, ours)
    x = images(2, shape)
    np.testing.assert_allclose(
        predict(ours, x), predict(reference, x), rtol=1e-5, atol=1e-5
    )


def test_copy_weights_rejects_missing_layer():
    reference = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3)
    )
    ours = resnet(50, "imagenet", deep_stem=True, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="conv1_1_conv"):
        copy_weights(reference, ours)


def test_copy_weights_rejects_other_shapes():
    reference = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3)
    )
    # v1.5 convolutions have no bias, so each has one weight fewer.
    ours = resnet(50, "imagenet", version="v1.5", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="conv1_conv"):
        copy_weights(reference, ours)


# weights=PATH


@pytest.fixture(scope="module", params=["ResNet50", "ResNet50V2"])
def keras_weights_file(request, tmp_path_factory):
    """Return a randomized keras.applications model and its weights file."""
    name = request.param
    reference = getattr(keras.applications, name)(
        weights=None, input_shape=WEIGHTS_SHAPE, classifier_activation=None
    )
    randomize(reference, seed=3)
    path = tmp_path_factory.mktemp("weights") / f"{name}.weights.h5"
    reference.save_weights(path)
    return name, reference, path


def test_resnet_loads_keras_weights_file(keras_weights_file):
    name, reference, path = keras_weights_file
    depth, version, _ = APPLICATIONS[name]
    # A pathlib.Path, as keras.applications accepts.
    ours = resnet(
        depth,
        "imagenet",
        version=version,
        weights=path,
        input_shape=WEIGHTS_SHAPE,
        classifier_activation=None,
    )
    x = images(2, WEIGHTS_SHAPE)
    np.testing.assert_allclose(
        predict(ours, x), predict(reference, x), rtol=1e-5, atol=1e-5
    )


def test_plain_loads_keras_weights_file(keras_weights_file):
    name, reference, path = keras_weights_file
    depth, version, _ = APPLICATIONS[name]
    options = dict(
        version=version,
        input_shape=WEIGHTS_SHAPE,
        classifier_activation=None,
    )
    loaded = plain(depth, "imagenet", weights=str(path), **options)
    copied = plain(depth, "imagenet", **options)
    copy_weights(reference, copied)
    x = images(2, WEIGHTS_SHAPE)
    np.testing.assert_allclose(
        predict(loaded, x), predict(copied, x), rtol=1e-6, atol=1e-6
    )


OWN_FILE_CASES = {
    "cifar20": (resnet, "cifar", 20, {}),
    "resnet18_v1_5": (resnet, "imagenet", 18, {"version": "v1.5"}),
    "resnet50": (resnet, "imagenet", 50, {}),
    "resnet50v2": (resnet, "imagenet", 50, {"version": "v2"}),
    "resnet50_se": (resnet, "imagenet", 50, {"se_ratio": 0.25}),
    "plain50": (plain, "imagenet", 50, {}),
}


@pytest.mark.parametrize("case", sorted(OWN_FILE_CASES))
def test_own_weights_file_round_trip(case, tmp_path):
    builder, family, depth, options = OWN_FILE_CASES[case]
    options = dict(
        options,
        input_shape=SMALL_SHAPES[family],
        classifier_activation=None,
    )
    source = randomize(builder(depth, family, **options), seed=5)
    path = tmp_path / "model.weights.h5"
    source.save_weights(path)
    # The resnet docstring accepts "a `.weights.h5` file of this model".
    loaded = builder(depth, family, weights=str(path), **options)
    x = images(2, SMALL_SHAPES[family])
    np.testing.assert_allclose(
        predict(loaded, x), predict(source, x), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("ResNet18", {}, "depth=18"),
        ("ResNet34", {}, "depth=34"),
        ("ResNet50", {"version": "v1.5"}, "v1.5"),
        ("ResNet20", {}, "cifar"),
        ("ResNet110", {}, "cifar"),
    ],
)
def test_imagenet_weights_unavailable(name, options, match):
    with pytest.raises(ValueError, match=match):
        build_named(name, weights="imagenet", **options)


@pytest.mark.parametrize(
    "options",
    [
        {"groups": 32, "width_per_group": 4},
        {"se_ratio": 0.25},
        {"deep_stem": True},
    ],
    ids=["groups", "se_ratio", "deep_stem"],
)
def test_imagenet_weights_reject_option(options):
    option = next(iter(options))
    # classes=10 makes keras.applications raise its own ValueError before
    # it downloads anything, should keras_resnet pass the request on.
    with pytest.raises(ValueError, match=option):
        resnet(
            50,
            "imagenet",
            weights="imagenet",
            classes=10,
            input_shape=(64, 64, 3),
            **options,
        )


@pytest.mark.parametrize("name", ["ResNet18", "ResNet50", "ResNet20"])
def test_missing_weights_file_raises(name, tmp_path):
    missing = tmp_path / "absent.weights.h5"
    with pytest.raises(FileNotFoundError, match="absent.weights.h5"):
        build_named(name, weights=str(missing))


# Named builders


def test_list_models_names():
    assert sorted(list_models()) == sorted(NAMED)


@pytest.mark.parametrize("name", list_models())
def test_get_model_is_module_attribute(name):
    assert get_model(name) is getattr(keras_resnet, name)


@pytest.mark.parametrize("name", list_models())
def test_builder_function_name(name):
    assert get_model(name).__name__ == name


def test_get_model_unknown_raises():
    with pytest.raises(ValueError, match="Nope"):
        get_model("Nope")


def test_get_model_error_lists_names():
    with pytest.raises(ValueError, match="ResNet50V2"):
        get_model("resnet50")


@pytest.mark.parametrize("name", list_models())
def test_signature_has_keras_arguments(name):
    parameters = list(inspect.signature(get_model(name)).parameters)
    assert parameters[: len(KERAS_ARGUMENTS)] == KERAS_ARGUMENTS


def test_keras_signature_order():
    # The list above is keras.applications.ResNet50's own argument order.
    parameters = list(inspect.signature(keras.applications.ResNet50).parameters)
    assert parameters == KERAS_ARGUMENTS


@pytest.mark.parametrize("name", list_models())
def test_weights_default_none(name):
    weights = inspect.signature(get_model(name)).parameters["weights"]
    # Unlike keras.applications, building never downloads by default.
    assert weights.default is None


@pytest.fixture(scope="module")
def default_models():
    """Return a cache of each named builder called with no arguments."""
    models = {}

    def get(name):
        if name not in models:
            models[name] = get_model(name)()
        return models[name]

    return get


@pytest.mark.parametrize("name", list_models())
def test_default_input_shape(default_models, name):
    family = NAMED[name][0]
    side = 224 if family == "imagenet" else 32
    assert default_models(name).input_shape == (None, side, side, 3)


@pytest.mark.parametrize("name", list_models())
def test_default_output_shape(default_models, name):
    family = NAMED[name][0]
    classes = 1000 if family == "imagenet" else 10
    assert default_models(name).output_shape == (None, classes)


@pytest.mark.parametrize("name", list_models())
def test_default_top_is_softmax(default_models, name):
    top = default_models(name).get_layer("predictions")
    assert top.activation is keras.activations.softmax


@pytest.mark.parametrize("name", list_models())
def test_default_model_name(default_models, name):
    assert default_models(name).name == NAMED[name][3]


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_default_matches_resnet(default_models, name):
    _, depth, _, _ = NAMED[name]
    model = default_models(name)
    expected = resnet(depth, "cifar")
    assert weighted_names(model) == weighted_names(expected)
    assert model.count_params() == expected.count_params()


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_default_count_matches_keras(default_models, name):
    assert default_models(name).count_params() == APPLICATIONS[name][2]


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_default_count_matches_torchvision(default_models, name):
    model = default_models(name)
    assert trainable_count(model) == TORCHVISION_COUNTS[name]


@pytest.fixture(scope="module")
def tensor_twins():
    """Return a cache of each named builder's plain twin on an input tensor.

    One build per name serves both the `residual=False` and the
    `input_tensor` tests, because a ResNet-152 takes seconds to build.
    """
    models = {}

    def get(name):
        if name not in models:
            shape = SMALL_SHAPES[NAMED[name][0]]
            tensor = keras.Input(shape=shape, name="pixels")
            twin = get_model(name)(input_tensor=tensor, residual=False)
            models[name] = (tensor, twin)
        return models[name]

    return get


@pytest.mark.parametrize("name", list_models())
def test_residual_false_is_plain_twin(default_models, tensor_twins, name):
    _, twin = tensor_twins(name)
    names = weighted_names(default_models(name))
    projections = {n for n in names if n.endswith(("_0_conv", "_0_bn"))}
    assert weighted_names(twin) == names - projections
    assert twin.name == "plain" + NAMED[name][3].removeprefix("resnet")
    adds = [
        layer for layer in twin.layers if isinstance(layer, keras.layers.Add)
    ]
    assert adds == []


@pytest.mark.parametrize("name", list_models())
def test_input_tensor_becomes_input(tensor_twins, name):
    tensor, model = tensor_twins(name)
    assert model.inputs[0] is tensor
    shape = SMALL_SHAPES[NAMED[name][0]]
    assert predict(model, images(2, shape)).shape[0] == 2


def test_input_tensor_from_layer():
    pixels = keras.Input(shape=(16, 16, 3), name="pixels")
    scaled = keras.layers.Rescaling(1 / 255, name="scale")(pixels)
    model = keras_resnet.ResNet20(input_tensor=scaled)
    # The model starts at the source input, as keras.applications' do.
    assert model.inputs[0] is pixels
    assert "scale" in {layer.name for layer in model.layers}


def test_input_tensor_rejects_array():
    with pytest.raises(ValueError, match="input_tensor"):
        keras_resnet.ResNet20(input_tensor=np.zeros((1, 16, 16, 3)))


def test_classes_and_logits():
    model = keras_resnet.ResNet18(
        classes=7, classifier_activation=None, input_shape=(32, 32, 3)
    )
    out = predict(model, images(3, (32, 32, 3)))
    assert out.shape == (3, 7)
    assert not np.allclose(out.sum(axis=-1), 1.0, atol=1e-3)


def test_name_argument():
    assert keras_resnet.ResNet20(name="mine").name == "mine"


@pytest.mark.parametrize(
    ("pooling", "layer"), [("avg", "avg_pool"), ("max", "max_pool")]
)
def test_pooling_argument(pooling, layer):
    model = keras_resnet.ResNet18(
        include_top=False, pooling=pooling, input_shape=(32, 32, 3)
    )
    assert model.output_shape == (None, 512)
    assert model.layers[-1].name == layer


def test_version_override():
    model = keras_resnet.ResNet50(version="v1.5", input_shape=(32, 32, 3))
    # torchvision resnet50, the v1.5 layout.
    assert trainable_count(model) == 25_557_032


def test_extra_options_pass_through():
    model = keras_resnet.ResNet50(
        groups=32, width_per_group=4, version="v1.5", input_shape=(32, 32, 3)
    )
    # torchvision resnext50_32x4d.
    assert trainable_count(model) == 25_028_904
