"""Residual blocks, each usable with or without its shortcut.

A block with `residual=False` is the plain twin: the same layers under the
same names, minus the shortcut branch and the addition. With option "A" the
shortcut has no weights, so a residual network and its plain twin have the
same weights by name and `plain.set_weights(resnet.get_weights())` works.
"""

from keras import layers

from keras_resnet.layers import ZeroPaddedIdentity

SHORTCUTS = ("A", "B")

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here), which the
# CIFAR networks of He et al. (2015) were trained with in common
# reimplementations. Keras' default momentum of 0.99 lags far behind on
# small data sets with few steps per epoch.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv_bn(x, filters, kernel_size, strides, name, activation=True):
    """Apply a bias-free convolution, BatchNormalization and optionally ReLU.

    Layers are named `{name}_conv`, `{name}_bn` and `{name}_relu`.
    """
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn"
    )(x)
    if activation:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def shortcut_branch(x, filters, strides, shortcut, name):
    """Return the shortcut of a block whose output has `filters` channels.

    Where input and output shapes agree the shortcut is the identity for
    both options. Where they differ, option "A" subsamples and zero-pads
    channels (no weights) and option "B" projects with a strided 1x1
    convolution and BatchNormalization, named `{name}_0_conv`/`{name}_0_bn`.
    """
    if strides == 1 and x.shape[-1] == filters:
        return x
    if shortcut == "A":
        return ZeroPaddedIdentity(filters, strides, name=f"{name}_shortcut")(x)
    return conv_bn(x, filters, 1, strides, f"{name}_0", activation=False)


def basic_block(x, filters, strides, name, residual=True, shortcut="A"):
    """Apply two 3x3 convolutions, adding the shortcut before the last ReLU.

    Args:
        x: NHWC input tensor.
        filters: output channels of both convolutions.
        strides: stride of the first convolution.
        name: prefix of every layer name, such as `conv2_block1`.
        residual: whether to add the shortcut; False builds the plain block.
        shortcut: "A" or "B", used where the shape changes.

    Returns:
        The block's output tensor.
    """
    skip = None
    if residual:
        skip = shortcut_branch(x, filters, strides, shortcut, name)

    y = conv_bn(x, filters, 3, strides, f"{name}_1")
    y = conv_bn(y, filters, 3, 1, f"{name}_2", activation=False)

    if skip is not None:
        y = layers.Add(name=f"{name}_add")([skip, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def check_shortcut(shortcut):
    """Raise ValueError unless `shortcut` is a known option."""
    if shortcut not in SHORTCUTS:
        raise ValueError(
            f"shortcut must be one of {', '.join(map(repr, SHORTCUTS))}: "
            '"A" pads with zeros and adds no weights, "B" uses 1x1 '
            f"projections. Received: shortcut={shortcut!r}"
        )
