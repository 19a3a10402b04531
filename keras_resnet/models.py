"""Entry points: `resnet` builds a residual network, `plain` its twin."""

from keras_resnet import cifar, imagenet
from keras_resnet.blocks import check_choice
from keras_resnet.builder import build_network
from keras_resnet.weights import load_weights

FAMILIES = {
    "cifar": (cifar.cifar_family, cifar.VERSIONS),
    "imagenet": (imagenet.imagenet_family, imagenet.VERSIONS),
}


def build(
    depth,
    family="cifar",
    *,
    residual=True,
    version="v1",
    weights=None,
    shortcut=None,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=None,
    classifier_activation="softmax",
    name=None,
    groups=1,
    width_per_group=64,
    zero_init_residual=False,
    drop_path_rate=0.0,
    deep_stem=False,
    avg_down=False,
    se_ratio=None,
    output_stride=None,
):
    """Build a network of `family`, residual or plain; see `resnet`."""
    check_choice("family", family, tuple(FAMILIES))
    make_family, versions = FAMILIES[family]
    check_choice("version", version, versions, f" for the {family} family")

    spec = make_family(
        depth,
        version,
        shortcut,
        deep_stem,
        groups=groups,
        width_per_group=width_per_group,
        se_ratio=se_ratio,
        avg_down=avg_down,
        zero_init_residual=zero_init_residual,
    )
    if name is None:
        name = f"{'resnet' if residual else 'plain'}{spec.default_name}"
    model = build_network(
        spec.stem,
        spec.stem_stride,
        spec.stages,
        spec.options,
        residual=residual,
        include_top=include_top,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=spec.default_classes if classes is None else classes,
        classifier_activation=classifier_activation,
        name=name,
        default_shape=spec.default_shape,
        min_size=spec.min_size,
        output_stride=output_stride,
        drop_path_rate=drop_path_rate,
    )
    if weights is not None:
        changed = {
            name: value
            for name, value, default in (
                ("shortcut", shortcut, None),
                ("groups", groups, 1),
                ("width_per_group", width_per_group, 64),
                ("se_ratio", se_ratio, None),
                ("deep_stem", deep_stem, False),
                ("avg_down", avg_down, False),
            )
            if value != default
        }
        load_weights(
            model,
            weights,
            family=family,
            version=version,
            depth=depth,
            options=changed,
        )
    return model


def resnet(depth, family="cifar", **kwargs):
    """Build a residual network with identity shortcuts, y = F(x) + x.

    Args:
        depth: number of weighted layers. "cifar": 6n + 2 (20, 32, 44, 56,
            110, ...). "imagenet": 18, 34, 50, 101, 152 or 200.
        family: "cifar" (He et al. 2015, section 4.2: three stages of 16,
            32 and 64 filters on 32 x 32 inputs) or "imagenet" (a 7x7
            stride-2 stem and four stages of 64 to 512 filters).
        version: "v1" (default) or "v2" (pre-activation) for both
            families, and "v1.5" for "imagenet". "v1" and "v2" match
            keras.applications' ResNet50 and ResNet50V2 layer for layer,
            "v1.5" matches torchvision's resnet50.
        weights: None for random initialization, "imagenet" for
            keras.applications' published weights (v1 and v2 at depth 50,
            101 and 152, default options, 3-channel input), or the path of
            a weights file: one that keras.applications writes or reads
            for the same network, or a `.weights.h5` file of this model.
        shortcut: where the shape changes, "A" subsamples and zero-pads
            channels with no weights, "B" uses a 1x1 projection. Defaults
            to "A" for "cifar" (the paper's choice) and "B" for
            "imagenet".
        include_top: whether to end with global average pooling and a
            Dense layer named `predictions`. Defaults to True.
        input_tensor: optional Keras tensor to build the model on.
        input_shape: (height, width, channels), channels last. Height and
            width are at least 8 for "cifar" and 32 for "imagenet", or
            None for any size. Defaults to (32, 32, 3) and (224, 224, 3).
        pooling: with `include_top=False`: None for the last NHWC feature
            map, "avg" or "max" for a global pooling of it.
        classes: classes of the top layer. Defaults to 10 for "cifar" and
            1000 for "imagenet".
        classifier_activation: activation of the top layer; None returns
            logits. Defaults to "softmax".
        name: model name. Defaults to `resnet{depth}` with a version
            suffix ("resnet50v2", "resnet50_v1_5").
        groups: groups of each bottleneck's 3x3 convolution (ResNeXt).
        width_per_group: channels per group of that convolution in the
            first stage, 64 by default; 128 gives Wide ResNet-50-2.
        zero_init_residual: initialize the last BatchNormalization scale
            of each residual branch to zero (in "v2", whose branches end
            in a convolution, that convolution's kernel), so that each
            block starts as the identity.
        drop_path_rate: stochastic depth: the rate at which the last
            block's residual branch is dropped in training, growing
            linearly from 0 at the first block. The identity in inference.
        deep_stem: ResNet-D stem of three 3x3 convolutions ("imagenet").
        avg_down: ResNet-D shortcut: 2x2 average pooling, then a stride-1
            projection, where the shortcut downsamples.
        se_ratio: squeeze-and-excitation on each residual branch with
            this channel reduction ratio, such as 0.0625 for 1/16.
        output_stride: the largest feature stride, 8, 16 or 32 for
            "imagenet"; later strides become dilations.

    Returns:
        A functional `keras.Model` with an input layer named "image".

    Raises:
        ValueError: on an unknown family or version, an invalid depth for
            the family, or an invalid argument; the message names the
            accepted values.
    """
    return build(depth, family, residual=True, **kwargs)


def plain(depth, family="cifar", **kwargs):
    """Build the plain twin of `resnet(depth, family, ...)`: no shortcuts.

    Takes the same arguments as `resnet` and builds the same layers under
    the same names, without the shortcut branches and additions. Where
    every shortcut is weightless (shortcut "A" on "cifar") the two have
    exactly the same weights. The model name defaults to `plain{depth}`.
    `zero_init_residual` and `drop_path_rate` act on residual branches and
    raise ValueError here.
    """
    return build(depth, family, residual=False, **kwargs)
