"""The CIFAR networks of He et al. (2015), "Deep Residual Learning", 4.2.

A 3x3 convolution with 16 filters, then three stages of n basic blocks with
16, 32 and 64 filters, the last two starting with stride 2, then global
average pooling and a Dense classifier: 6n + 2 weighted layers in all.
Version "v2" uses the pre-activation blocks of He et al. (2016), "Identity
Mappings in Deep Residual Networks", on the same stages.
"""

from keras_resnet.blocks import BlockOptions, conv, conv_bn
from keras_resnet.builder import Stage
from keras_resnet.family import Family

VERSIONS = ("v1", "v2")

DEFAULT_SHAPE = (32, 32, 3)

# Two stride-2 stages take 8 x 8 down to 2 x 2.
MIN_SIZE = 8

STAGE_FILTERS = (16, 32, 64)

# PyTorch's BatchNorm defaults (its momentum 0.1 is 0.9 here), with which
# the common reimplementations of the CIFAR networks train. Keras' default
# momentum of 0.99 lags behind on small data sets with few steps per epoch.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def blocks_per_stage(depth):
    """Return n for depth = 6n + 2, or raise ValueError naming valid depths."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        depth_ok = False
    else:
        depth_ok = depth >= 8 and (depth - 2) % 6 == 0
    if not depth_ok:
        raise ValueError(
            "CIFAR depth must be 6n + 2 for n >= 1, such as 8, 14, 20, 32, "
            f"44, 56 or 110. Received: depth={depth!r}"
        )
    return (depth - 2) // 6


def cifar_family(depth, version, shortcut, deep_stem, **block_options):
    """Return the `Family` of a CIFAR network of `depth` layers."""
    n = blocks_per_stage(depth)
    if deep_stem:
        raise ValueError(
            "deep_stem replaces the 7x7 stem of the imagenet family; the "
            "cifar family has a single 3x3 stem. Received: deep_stem=True"
        )
    options = BlockOptions(
        kind="basic",
        preact=version == "v2",
        bn_epsilon=BN_EPSILON,
        bn_momentum=BN_MOMENTUM,
        shortcut="A" if shortcut is None else shortcut,
        **block_options,
    )

    def stem(inputs):
        if options.preact:
            return conv(inputs, STAGE_FILTERS[0], 3, options, "conv1")
        return conv_bn(inputs, STAGE_FILTERS[0], 3, options, "conv1")

    stages = [
        Stage(filters, n, 1 if index == 0 else 2)
        for index, filters in enumerate(STAGE_FILTERS)
    ]
    return Family(
        stem=stem,
        stem_stride=1,
        stages=stages,
        options=options,
        default_shape=DEFAULT_SHAPE,
        min_size=MIN_SIZE,
        default_name=f"{depth}{'' if version == 'v1' else 'v2'}",
        default_classes=10,
    )
