"""The generic network builder that every family feeds with stage data."""

from dataclasses import dataclass

import keras
from keras import layers

from keras_resnet.blocks import basic_block, check_shortcut

POOLINGS = (None, "avg", "max")


@dataclass(frozen=True)
class Stage:
    """One stage of blocks at the same width.

    Attributes:
        filters: output channels of every block in the stage.
        blocks: number of blocks.
        strides: stride of the stage's first block; the others use 1.
    """

    filters: int
    blocks: int
    strides: int


def resolve_input(input_shape, input_tensor, default_shape, min_size):
    """Return the model's `keras.Input` after checking its shape.

    Args:
        input_shape: (height, width, channels) or None for `default_shape`.
            Height and width may be None for inputs of any size.
        input_tensor: an existing Keras tensor to build on, or None.
        default_shape: the shape used when neither argument is given.
        min_size: the smallest height and width the network accepts.

    Raises:
        ValueError: on a shape that is not three positive dimensions, or a
            height or width below `min_size`.
    """
    if input_tensor is not None:
        if input_shape is None:
            input_shape = tuple(input_tensor.shape[1:])
    elif input_shape is None:
        input_shape = default_shape

    try:
        input_shape = tuple(input_shape)
    except TypeError:
        input_shape = None
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(
            "input_shape must be (height, width, channels), channels last. "
            f"Received: input_shape={input_shape!r}"
        )

    height, width, channels = input_shape
    if channels is None or channels < 1:
        raise ValueError(
            "input_shape needs a known, positive channel count. "
            f"Received: input_shape={input_shape}"
        )
    for size in (height, width):
        if size is not None and size < min_size:
            raise ValueError(
                f"input_shape height and width must be at least {min_size}. "
                f"Received: input_shape={input_shape}"
            )

    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError(
                "input_tensor must be a Keras tensor, such as the output of "
                f"keras.Input. Received: input_tensor={input_tensor!r}"
            )
        return input_tensor
    return keras.Input(shape=input_shape, name="image")


def check_head(include_top, pooling, classes):
    """Raise ValueError on a head configuration that cannot be built."""
    if pooling not in POOLINGS:
        raise ValueError(
            'pooling must be None, "avg" or "max". '
            f"Received: pooling={pooling!r}"
        )
    if include_top and (not isinstance(classes, int) or classes < 1):
        raise ValueError(
            "classes must be a positive integer when include_top=True. "
            f"Received: classes={classes!r}"
        )


def build_network(
    stem,
    stages,
    *,
    residual,
    shortcut,
    include_top,
    input_shape,
    input_tensor,
    pooling,
    classes,
    classifier_activation,
    name,
    default_shape,
    min_size,
):
    """Build a functional network from a stem and a list of stages.

    Stage `k` (counting from 0) names its blocks `conv{k + 2}_block{i}`
    with `i` counting from 1, the scheme of `keras.applications.ResNet50`,
    because the stem is `conv1`. These names are the contract for moving
    weights between models, so they do not change between releases.

    Args:
        stem: function from the input tensor to the first stage's input.
        stages: list of `Stage`.
        residual: False builds the plain twin, without shortcuts.
        shortcut: "A" or "B"; see `keras_resnet.blocks.shortcut_branch`.
        include_top: whether to end with global average pooling and a
            `classes`-way Dense layer named `predictions`.
        pooling: with `include_top=False`, None returns the last feature
            map (NHWC), "avg" or "max" a global pooling of it.
        classifier_activation: activation of `predictions`; None returns
            logits.
        name: model name.
        default_shape: input shape used when none is given.
        min_size: smallest accepted input height and width.

    Returns:
        A `keras.Model`.
    """
    check_shortcut(shortcut)
    check_head(include_top, pooling, classes)
    inputs = resolve_input(input_shape, input_tensor, default_shape, min_size)

    x = stem(inputs)
    for index, stage in enumerate(stages):
        for block in range(stage.blocks):
            x = basic_block(
                x,
                stage.filters,
                stage.strides if block == 0 else 1,
                name=f"conv{index + 2}_block{block + 1}",
                residual=residual,
                shortcut=shortcut,
            )

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(
            classes, activation=classifier_activation, name="predictions"
        )(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    return keras.Model(inputs, x, name=name)
