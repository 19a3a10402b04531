"""Entry points: `resnet` builds a residual network, `plain` its twin."""

from keras_resnet.cifar import cifar_network

FAMILIES = {"cifar": cifar_network}


def _network(depth, family, residual, kwargs):
    try:
        build = FAMILIES[family]
    except (KeyError, TypeError):
        raise ValueError(
            f"family must be one of {', '.join(map(repr, FAMILIES))}. "
            f"Received: family={family!r}"
        ) from None
    return build(depth, residual=residual, **kwargs)


def resnet(depth, family="cifar", **kwargs):
    """Build a residual network with identity shortcuts, y = F(x) + x.

    Args:
        depth: number of weighted layers. For the "cifar" family, 6n + 2
            (20, 32, 44, 56, 110, ...).
        family: "cifar", the network of He et al. (2015), section 4.2.
        shortcut: "A" (default) keeps identity shortcuts everywhere and
            zero-pads channels where the width grows, adding no weights;
            "B" uses strided 1x1 projections there.
        include_top: whether to end with global average pooling and a
            Dense layer named `predictions`. Defaults to True.
        input_tensor: optional Keras tensor to build the model on.
        input_shape: (height, width, channels), channels last, with height
            and width at least 8 (None for any size). Defaults to
            (32, 32, 3).
        pooling: with `include_top=False`: None for the last NHWC feature
            map, "avg" or "max" for a global pooling of it.
        classes: number of classes of the top layer. Defaults to 10.
        classifier_activation: activation of the top layer; None returns
            logits. Defaults to "softmax".
        name: model name. Defaults to `resnet{depth}`.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: on an unknown family, an invalid depth for the family,
            or an invalid argument.
    """
    return _network(depth, family, True, kwargs)


def plain(depth, family="cifar", **kwargs):
    """Build the plain twin of `resnet(depth, family, ...)`: no shortcuts.

    Takes the same arguments as `resnet` and builds the same layers under
    the same names, without the shortcut branches and additions. With
    shortcut "A" the two have exactly the same weights. With "B" the plain
    network lacks the projection layers. Defaults the name to
    `plain{depth}`.
    """
    return _network(depth, family, False, kwargs)
