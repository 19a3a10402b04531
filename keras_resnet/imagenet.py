"""ImageNet ResNets: v1 and v2 as keras.applications, v1.5 as torchvision.

All have a 7x7 stride-2 stem with 3x3 max pooling and four stages of 64,
128, 256 and 512 base filters. Depths 18 and 34 use basic blocks, 50 and
more bottleneck blocks.

- "v1": the layout of `keras.applications.ResNet50/101/152`: biased
  convolutions, a bottleneck's stride on its first 1x1 convolution,
  BatchNormalization epsilon 1.001e-5.
- "v1.5": the layout of torchvision's `resnet18` to `resnet152`: bias-free
  convolutions, the stride on the 3x3 convolution, symmetric padding.
- "v2": pre-activation (He et al. 2016, "Identity Mappings in Deep Residual
  Networks") laid out as `keras.applications.ResNet50V2/101V2/152V2`, with
  each stage's stride on its last block.
"""

from keras import layers

from keras_resnet.blocks import BlockOptions, conv, conv_bn
from keras_resnet.builder import Stage
from keras_resnet.family import Family

VERSIONS = ("v1", "v1.5", "v2")

DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}

STAGE_FILTERS = (64, 128, 256, 512)
DEFAULT_SHAPE = (224, 224, 3)

# The stem and four stages divide the input by 32; keras.applications
# accepts 32 x 32 and more.
MIN_SIZE = 32

# Keyword arguments of BlockOptions per version. The v1 and v2 values are
# those of keras.applications (Keras 3.15); v1.5 takes PyTorch's BatchNorm
# defaults (epsilon 1e-5, momentum 0.1 there, 0.9 here).
VERSION_OPTIONS = {
    "v1": dict(
        use_bias=True,
        stride_on_3x3=False,
        bn_epsilon=1.001e-5,
        bn_momentum=0.99,
    ),
    "v1.5": dict(
        use_bias=False,
        stride_on_3x3=True,
        explicit_padding=True,
        bn_epsilon=1e-5,
        bn_momentum=0.9,
    ),
    "v2": dict(
        preact=True,
        use_bias=True,
        stride_on_3x3=True,
        explicit_padding=True,
        bn_epsilon=1.001e-5,
        bn_momentum=0.99,
    ),
}

VERSION_SUFFIXES = {"v1": "", "v1.5": "_v1_5", "v2": "v2"}

# Widths of the three 3x3 convolutions of the ResNet-D deep stem, as in
# Bag of Tricks for Image Classification (He et al. 2019) and timm.
DEEP_STEM_FILTERS = (32, 32, 64)


def check_depth(depth):
    """Raise ValueError unless `depth` is an ImageNet ResNet depth."""
    if isinstance(depth, bool) or depth not in DEPTHS:
        valid = ", ".join(map(str, DEPTHS))
        raise ValueError(
            f"ImageNet depth must be one of {valid}. Received: depth={depth!r}"
        )


def imagenet_family(depth, version, shortcut, deep_stem, **block_options):
    """Return the `Family` of an ImageNet network of `depth` layers."""
    check_depth(depth)
    kind, blocks = DEPTHS[depth]
    options = BlockOptions(
        kind=kind,
        shortcut="B" if shortcut is None else shortcut,
        **VERSION_OPTIONS[version],
        **block_options,
    )

    def stem(inputs):
        if deep_stem:
            first, second, third = DEEP_STEM_FILTERS
            x = conv_bn(inputs, first, 3, options, "conv1_1", strides=2)
            x = conv_bn(x, second, 3, options, "conv1_2")
            if options.preact:
                x = conv(x, third, 3, options, "conv1_3")
            else:
                x = conv_bn(x, third, 3, options, "conv1_3")
        elif options.preact:
            x = conv(inputs, STAGE_FILTERS[0], 7, options, "conv1", strides=2)
        else:
            x = conv_bn(
                inputs, STAGE_FILTERS[0], 7, options, "conv1", strides=2
            )
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    if options.preact:
        strides, at_end = (2, 2, 2, 1), True
    else:
        strides, at_end = (1, 2, 2, 2), False
    stages = [
        Stage(filters, count, stride, stride_at_end=at_end)
        for filters, count, stride in zip(
            STAGE_FILTERS, blocks, strides, strict=True
        )
    ]
    return Family(
        stem=stem,
        stem_stride=4,
        stages=stages,
        options=options,
        default_shape=DEFAULT_SHAPE,
        min_size=MIN_SIZE,
        default_name=f"{depth}{VERSION_SUFFIXES[version]}",
        default_classes=1000,
    )
