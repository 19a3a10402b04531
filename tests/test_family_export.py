"""Every named builder exports to SavedModel, TFLite and ONNX with parity."""

import os

# Set before anything imports TensorFlow, which reads it once at import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import re  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import pytest  # noqa: E402

import export  # noqa: E402
from keras_resnet import get_model, list_models, resnet  # noqa: E402

FORMATS = ("savedmodel", "tflite", "onnx")

# Small inputs keep each conversion under about a minute on 2 cores.
# Conversion time grows with the number of layers more than with the input
# size.
SHAPES = {"imagenet": (32, 32, 3), "cifar": (16, 16, 3)}
CIFAR_NAMES = {"ResNet20", "ResNet32", "ResNet44", "ResNet56", "ResNet110"}

# ResNet50 is exported once, at its full 224 x 224 input.
FULL_SIZE = {"ResNet50": (224, 224, 3)}
HEAVY = {"ResNet50", "ResNet110"}

# The 101- and 152-layer networks, the slowest exports (about 50 to 80 s
# each on 2 cores). They form a test class of their own, which
# `--dist loadscope` schedules apart from the rest of this module.
DEEP = ("ResNet101", "ResNet152", "ResNet101V2", "ResNet152V2")

# The last layer of a residual branch: its highest-numbered convolution or
# that convolution's BatchNormalization. Projection shortcuts are `_0_`.
BRANCH_LAYER = re.compile(r"^(conv\d+_block\d+)_([1-9])_(bn|conv)$")
BRANCH_SCALE = 0.2


def damp_residual_branches(model, scale=BRANCH_SCALE):
    """Scale the last layer of every residual branch by `scale`.

    At He initialization, with BatchNormalization at its initial moving
    statistics, each block adds a branch about as large as its input, so
    activations grow exponentially with depth: the logits of a fresh
    ResNet-50 at 32 x 32 reach about 650. float32 rounding in another
    runtime then errs by more than the 1e-4 absolute bound of
    `export.FLOAT32` on the logits near zero, although the artifact is
    faithful. Fixup (Zhang et al. 2019) and zero_init_residual (Goyal et
    al. 2017) start with small or zero branches for the same reason.
    Scaling by 0.2 instead of 0 keeps every layer in the output, so that a
    wrong layer still errs by far more than 1e-4.

    Returns:
        The number of branches scaled.
    """
    last = {}
    for layer in model.layers:
        match = BRANCH_LAYER.match(layer.name)
        if match:
            # Layers come in graph order, so the last match of a block is
            # its branch's last layer.
            last[match.group(1)] = layer
    for layer in last.values():
        # gamma and beta of a BatchNormalization, or kernel and bias.
        weights = layer.get_weights()
        scaled = [w * scale for w in weights[:2]] + weights[2:]
        layer.set_weights(scaled)
    return len(last)


def parity_inputs(shape, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *shape)).astype(np.float32)


def export_and_check(model, out_dir, shape):
    assert damp_residual_branches(model) > 0
    return export.export_model(model, out_dir, inputs=parity_inputs(shape))


def assert_all_passed(report):
    assert sorted(report["formats"]) == sorted(FORMATS)
    for fmt in FORMATS:
        result = report["formats"][fmt]
        assert result["passed"], (fmt, result["max_abs_error"])
    assert report["passed"]


def named_params():
    params = []
    for name in list_models():
        if name in DEEP:
            continue
        marks = [pytest.mark.heavy] if name in HEAVY else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def check_named_export(name, out_dir):
    family = "cifar" if name in CIFAR_NAMES else "imagenet"
    shape = FULL_SIZE.get(name, SHAPES[family])
    # Logits, because a softmax saturates and would hide errors.
    model = get_model(name)(input_shape=shape, classifier_activation=None)
    assert_all_passed(export_and_check(model, out_dir, shape))


@pytest.mark.parametrize("name", named_params())
def test_named_builder_exports(name, tmp_path):
    check_named_export(name, tmp_path / "out")


@pytest.mark.heavy
class TestDeepExports:
    @pytest.mark.parametrize("name", DEEP)
    def test_named_builder_exports(self, name, tmp_path):
        check_named_export(name, tmp_path / "out")


def test_every_named_builder_exports():
    # The two parametrizations together cover `list_models()`.
    covered = {p.values[0] for p in named_params()} | set(DEEP)
    assert covered == set(list_models())


def test_damping_keeps_logits_spread():
    model = get_model("ResNet34")(
        input_shape=SHAPES["imagenet"], classifier_activation=None
    )
    damp_residual_branches(model)
    logits = keras.ops.convert_to_numpy(
        model(parity_inputs(SHAPES["imagenet"]), training=False)
    )
    # The damped network is far from constant, so parity means something.
    assert np.ptp(logits) > 1.0


def test_damping_scales_every_block():
    model = get_model("ResNet50V2")(input_shape=SHAPES["imagenet"])
    # 3 + 4 + 6 + 3 bottleneck blocks.
    assert damp_residual_branches(model) == 16


@pytest.fixture(scope="module")
def resnext_export(tmp_path_factory):
    shape = SHAPES["imagenet"]
    model = resnet(
        50,
        "imagenet",
        version="v1.5",
        groups=32,
        width_per_group=4,
        input_shape=shape,
        classifier_activation=None,
    )
    out_dir = tmp_path_factory.mktemp("resnext") / "out"
    return model, out_dir, export_and_check(model, out_dir, shape)


def test_resnext_exports(resnext_export):
    _, _, report = resnext_export
    assert_all_passed(report)


def test_parity_detects_changed_layer(resnext_export):
    model, out_dir, _ = resnext_export
    changed = keras.models.clone_model(model)
    changed.set_weights(model.get_weights())
    # A BatchNormalization epsilon of 1e-2 instead of 1e-5 rescales one
    # layer by 0.5 %, a small converter error the damped network must show.
    changed.get_layer("conv4_block1_1_bn").epsilon = 1e-2
    report = export.check_parity(
        changed, out_dir, inputs=parity_inputs(SHAPES["imagenet"])
    )
    for fmt in FORMATS:
        assert not report["formats"][fmt]["passed"], fmt


def test_resnext_onnx_grouped_conv(resnext_export):
    out_dir, _ = resnext_export[1:]
    graph = onnx.load(str(out_dir / "model.onnx")).graph
    groups = {
        attribute.i
        for node in graph.node
        if node.op_type == "Conv"
        for attribute in node.attribute
        if attribute.name == "group"
    }
    # ONNX Conv keeps the 32 groups instead of splitting the convolution.
    assert 32 in groups


def test_knob_combination_exports(tmp_path):
    shape = SHAPES["imagenet"]
    model = resnet(
        18,
        "imagenet",
        version="v1.5",
        output_stride=16,
        se_ratio=0.25,
        deep_stem=True,
        avg_down=True,
        input_shape=shape,
        classifier_activation=None,
    )
    assert_all_passed(export_and_check(model, tmp_path / "out", shape))


def test_v2_one_channel_exports(tmp_path):
    shape = (32, 32, 1)
    model = resnet(
        18,
        "imagenet",
        version="v2",
        input_shape=shape,
        classifier_activation=None,
    )
    assert_all_passed(export_and_check(model, tmp_path / "out", shape))
