"""The CIFAR networks of He et al. (2015), "Deep Residual Learning", 4.2.

A 3x3 convolution with 16 filters, then three stages of n basic blocks with
16, 32 and 64 filters, the last two starting with stride 2, then global
average pooling and a Dense classifier: 6n + 2 weighted layers in all.
"""

from keras_resnet.blocks import conv_bn
from keras_resnet.builder import Stage, build_network

DEFAULT_SHAPE = (32, 32, 3)

# Two stride-2 stages take 8 x 8 down to 2 x 2.
MIN_SIZE = 8

STAGE_FILTERS = (16, 32, 64)


def blocks_per_stage(depth):
    """Return n for depth = 6n + 2, or raise ValueError naming valid depths."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            "CIFAR depth must be 6n + 2 for n >= 1, such as 8, 14, 20, 32, "
            f"44, 56 or 110. Received: depth={depth!r}"
        )
    return (depth - 2) // 6


def cifar_stem(inputs):
    return conv_bn(inputs, STAGE_FILTERS[0], 3, 1, "conv1")


def cifar_network(
    depth,
    *,
    residual,
    shortcut="A",
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
):
    """Build a CIFAR ResNet of `depth` layers, or its plain twin."""
    n = blocks_per_stage(depth)
    stages = [
        Stage(filters, n, 1 if index == 0 else 2)
        for index, filters in enumerate(STAGE_FILTERS)
    ]
    if name is None:
        name = f"{'resnet' if residual else 'plain'}{depth}"
    return build_network(
        cifar_stem,
        stages,
        residual=residual,
        shortcut=shortcut,
        include_top=include_top,
        input_shape=input_shape,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        default_shape=DEFAULT_SHAPE,
        min_size=MIN_SIZE,
    )
