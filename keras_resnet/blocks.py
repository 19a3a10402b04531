"""Residual blocks, each usable with or without its shortcut.

A block with `residual=False` is the plain twin: the same layers under the
same names, minus the shortcut branch and the addition. Where the shortcut
has no weights (option "A", or wherever input and output shapes agree) a
residual network and its plain twin have the same weights by name.

Layer names inside block `{name}`, such as `conv3_block2`:
`{name}_{i}_conv`, `{name}_{i}_bn` and `{name}_{i}_relu` for the i-th
convolution of the residual branch (from 1), `{name}_0_conv` and
`{name}_0_bn` for a projection shortcut, `{name}_add` and `{name}_out` for
the addition and the block output. Pre-activation blocks start with
`{name}_preact_bn` and `{name}_preact_relu` and end with the addition
`{name}_out`, as in `keras.applications.ResNet50V2`.
"""

from dataclasses import dataclass

from keras import layers

from keras_resnet.layers import DropPath, ZeroPaddedIdentity

SHORTCUTS = ("A", "B")
BLOCK_KINDS = ("basic", "bottleneck")

# Bottleneck blocks widen their last 1x1 convolution by this factor.
EXPANSION = 4


@dataclass(frozen=True)
class BlockOptions:
    """How every block of one network is laid out.

    Attributes:
        kind: "basic" (two 3x3 convolutions) or "bottleneck" (1x1, 3x3,
            1x1 with `EXPANSION` times the filters at the end).
        preact: pre-activation order, BN and ReLU before each convolution
            (He et al. 2016, "Identity Mappings in Deep Residual Networks").
        use_bias: whether convolutions have biases, as in
            keras.applications' ResNet50 (v1) and ResNet50V2.
        stride_on_3x3: put a bottleneck's stride on the 3x3 convolution
            (torchvision's v1.5 and v2) instead of the first 1x1 (v1).
        explicit_padding: pad with `ZeroPadding2D` and convolve with "valid"
            padding, which pads equally on both sides as PyTorch does.
            Otherwise convolutions use "same" padding.
        bn_epsilon: BatchNormalization epsilon.
        bn_momentum: BatchNormalization momentum of the moving statistics.
        shortcut: "A" (subsample and zero-pad, no weights) or "B" (1x1
            projection) where the shape changes.
        groups: groups of the 3x3 convolution in bottleneck blocks.
        width_per_group: channels per group of the bottleneck's 3x3
            convolution when `filters` is 64; scales with `filters`.
        se_ratio: squeeze-and-excitation reduction ratio, such as 1/16;
            None for no squeeze-and-excitation.
        avg_down: shortcut downsampling by 2x2 average pooling before a
            stride-1 projection (ResNet-D) instead of a strided projection.
        zero_init_residual: start each residual branch at zero.
    """

    kind: str = "basic"
    preact: bool = False
    use_bias: bool = False
    stride_on_3x3: bool = True
    explicit_padding: bool = False
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9
    shortcut: str = "A"
    groups: int = 1
    width_per_group: int = 64
    se_ratio: float | None = None
    avg_down: bool = False
    zero_init_residual: bool = False

    def output_channels(self, filters):
        return filters * EXPANSION if self.kind == "bottleneck" else filters

    def bottleneck_width(self, filters):
        return int(filters * self.width_per_group / 64) * self.groups


def batch_norm(x, options, name, zero_gamma=False):
    return layers.BatchNormalization(
        momentum=options.bn_momentum,
        epsilon=options.bn_epsilon,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
    )(x)


def conv(
    x,
    filters,
    kernel_size,
    options,
    name,
    strides=1,
    dilation=1,
    groups=1,
    use_bias=None,
    zero_kernel=False,
):
    """Apply a He-initialized convolution named `{name}_conv`.

    With `options.explicit_padding`, or for any strided convolution with a
    kernel larger than 1, the input is first padded by `ZeroPadding2D`
    named `{name}_pad` and the convolution uses "valid" padding. Both give
    the ceil(H / strides) output size of "same" padding.
    """
    pad = dilation * (kernel_size - 1) // 2
    explicit = pad > 0 and (options.explicit_padding or strides > 1)
    if explicit:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid" if explicit else "same",
        dilation_rate=dilation,
        groups=groups,
        use_bias=options.use_bias if use_bias is None else use_bias,
        kernel_initializer="zeros" if zero_kernel else "he_normal",
        name=f"{name}_conv",
    )(x)


def conv_bn(x, filters, kernel_size, options, name, activation=True, **kw):
    """Apply `conv`, BatchNormalization `{name}_bn` and ReLU `{name}_relu`.

    Keyword arguments other than `zero_gamma` go to `conv`.
    """
    zero_gamma = kw.pop("zero_gamma", False)
    x = conv(x, filters, kernel_size, options, name, **kw)
    x = batch_norm(x, options, f"{name}_bn", zero_gamma=zero_gamma)
    if activation:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def branch_convolutions(options, filters, strides, dilation):
    """Return the residual branch as (filters, kernel, strides, dilation,
    groups) tuples, one a convolution."""
    if options.kind == "basic":
        return [
            (filters, 3, strides, dilation, 1),
            (filters, 3, 1, dilation, 1),
        ]
    width = options.bottleneck_width(filters)
    first, middle = (1, strides) if options.stride_on_3x3 else (strides, 1)
    return [
        (width, 1, first, 1, 1),
        (width, 3, middle, dilation, options.groups),
        (options.output_channels(filters), 1, 1, 1, 1),
    ]


def squeeze_excite(x, options, name):
    """Rescale channels by squeeze-and-excitation (Hu et al. 2018)."""
    channels = x.shape[-1]
    reduced = max(1, int(channels * options.se_ratio))
    scale = layers.GlobalAveragePooling2D(
        keepdims=True, name=f"{name}_se_squeeze"
    )(x)
    scale = layers.Conv2D(
        reduced, 1, activation="relu", name=f"{name}_se_reduce"
    )(scale)
    scale = layers.Conv2D(
        channels, 1, activation="sigmoid", name=f"{name}_se_expand"
    )(scale)
    return layers.Multiply(name=f"{name}_se_excite")([x, scale])


def shortcut_branch(x, channels, strides, options, name, source=None):
    """Return the shortcut of a block with `channels` output channels.

    Where input and output shapes agree the shortcut is the identity.
    Where they differ, option "A" subsamples and zero-pads channels and
    option "B" projects with a 1x1 convolution, strided or after 2x2
    average pooling with `options.avg_down`. Post-activation projections
    are followed by BatchNormalization. Pre-activation ones read `source`,
    the block's activated input, as in keras.applications' ResNet50V2.
    """
    if strides == 1 and x.shape[-1] == channels:
        return x
    if x.shape[-1] == channels and options.preact:
        # keras.applications' ResNet50V2 subsamples without a projection
        # where only the spatial size changes; ResNet-D averages instead.
        if options.avg_down:
            return layers.AveragePooling2D(
                strides, strides=strides, padding="same", name=f"{name}_0_pool"
            )(x)
        return layers.MaxPooling2D(1, strides=strides, name=f"{name}_0_pool")(x)
    if options.shortcut == "A":
        return ZeroPaddedIdentity(channels, strides, name=f"{name}_shortcut")(x)

    source = x if source is None else source
    conv_strides = strides
    if options.avg_down and strides > 1:
        source = layers.AveragePooling2D(
            strides, strides=strides, padding="same", name=f"{name}_0_pool"
        )(source)
        conv_strides = 1
    if options.preact:
        return conv(source, channels, 1, options, f"{name}_0", conv_strides)
    return conv_bn(
        source,
        channels,
        1,
        options,
        f"{name}_0",
        activation=False,
        strides=conv_strides,
    )


def residual_block(
    x,
    filters,
    options,
    name,
    strides=1,
    dilation=1,
    residual=True,
    drop_rate=0.0,
):
    """Apply one basic or bottleneck block, post- or pre-activation.

    Args:
        x: NHWC input tensor.
        filters: filters of the block; a bottleneck block outputs
            `EXPANSION` times as many channels.
        options: the network's `BlockOptions`.
        name: prefix of every layer name, such as `conv2_block1`.
        strides: spatial stride of the block.
        dilation: dilation rate of the 3x3 convolutions.
        residual: whether to add the shortcut; False builds the plain block.
        drop_rate: stochastic-depth rate of the residual branch.

    Returns:
        The block's output tensor.
    """
    channels = options.output_channels(filters)
    convolutions = branch_convolutions(options, filters, strides, dilation)
    last = len(convolutions)

    if options.preact:
        source = batch_norm(x, options, f"{name}_preact_bn")
        source = layers.Activation("relu", name=f"{name}_preact_relu")(source)
    else:
        source = x

    skip = None
    if residual:
        skip = shortcut_branch(
            x, channels, strides, options, name, source=source
        )

    y = source
    for index, (width, kernel, step, rate, groups) in enumerate(
        convolutions, start=1
    ):
        block_name = f"{name}_{index}"
        is_last = index == last
        settings = dict(strides=step, dilation=rate, groups=groups)
        if options.preact and is_last:
            # ResNet50V2 ends the branch with a biased convolution and no BN.
            y = conv(
                y,
                width,
                kernel,
                options,
                block_name,
                zero_kernel=options.zero_init_residual,
                **settings,
            )
        elif options.preact:
            y = conv_bn(
                y,
                width,
                kernel,
                options,
                block_name,
                use_bias=False,
                **settings,
            )
        else:
            y = conv_bn(
                y,
                width,
                kernel,
                options,
                block_name,
                activation=not is_last,
                zero_gamma=is_last and options.zero_init_residual,
                **settings,
            )

    if options.se_ratio:
        y = squeeze_excite(y, options, name)
    if drop_rate > 0:
        y = DropPath(drop_rate, name=f"{name}_drop_path")(y)

    if options.preact:
        if skip is None:
            return layers.Identity(name=f"{name}_out")(y)
        return layers.Add(name=f"{name}_out")([skip, y])
    if skip is not None:
        y = layers.Add(name=f"{name}_add")([skip, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def check_choice(name, value, choices, hint=""):
    """Raise ValueError unless `value` is one of `choices`."""
    if value not in choices:
        allowed = ", ".join(map(repr, choices))
        raise ValueError(
            f"{name} must be one of {allowed}{hint}. Received: {name}={value!r}"
        )
