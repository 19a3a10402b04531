"""The generic network builder that every family feeds with stage data."""

from dataclasses import dataclass

import keras
from keras import layers

from keras_resnet.blocks import (
    SHORTCUTS,
    BlockOptions,
    batch_norm,
    check_choice,
    residual_block,
)

POOLINGS = (None, "avg", "max")


@dataclass(frozen=True)
class Stage:
    """One stage of blocks at the same width.

    Attributes:
        filters: filters of every block in the stage.
        blocks: number of blocks.
        strides: the stage's downsampling stride.
        stride_at_end: put the stride on the stage's last block, as
            keras.applications' ResNet50V2 does, instead of its first.
    """

    filters: int
    blocks: int
    strides: int
    stride_at_end: bool = False

    def block_strides(self):
        strides = [1] * self.blocks
        strides[-1 if self.stride_at_end else 0] = self.strides
        return strides


@dataclass(frozen=True)
class BlockPlan:
    """The name, filters, stride, dilation and drop rate of one block."""

    name: str
    filters: int
    strides: int
    dilation: int
    drop_rate: float


def output_strides(stages, stem_stride):
    """Return the output strides the stages can stop downsampling at."""
    total, strides = stem_stride, [stem_stride]
    for stage in stages:
        if stage.strides > 1:
            total *= stage.strides
            strides.append(total)
    return strides


def plan_blocks(stages, stem_stride, output_stride, drop_path_rate):
    """Return a `BlockPlan` per block, in order.

    Once the network's stride would exceed `output_stride`, each further
    stride is replaced by dilating the following 3x3 convolutions by the
    same factor. The block whose stride is replaced keeps the previous
    dilation, as torchvision's `replace_stride_with_dilation` does. The
    stochastic-depth rate grows linearly from 0 at the first block to
    `drop_path_rate` at the last.
    """
    layout = [
        (index, block, stage.filters, stride)
        for index, stage in enumerate(stages)
        for block, stride in enumerate(stage.block_strides())
    ]
    total = len(layout)
    current, dilation, plans = stem_stride, 1, []
    for position, (index, block, filters, stride) in enumerate(layout):
        block_dilation = dilation
        if stride > 1 and current * stride > output_stride:
            dilation *= stride
            stride = 1
        else:
            current *= stride
        rate = drop_path_rate * position / (total - 1) if total > 1 else 0.0
        plans.append(
            BlockPlan(
                name=f"conv{index + 2}_block{block + 1}",
                filters=filters,
                strides=stride,
                dilation=block_dilation,
                drop_rate=rate,
            )
        )
    return plans


def resolve_input(input_shape, input_tensor, default_shape, min_size):
    """Return the model's input tensor after checking its shape.

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
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError(
                "input_tensor must be a Keras tensor, such as the output of "
                f"keras.Input. Received: input_tensor={input_tensor!r}"
            )
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
        return input_tensor
    return keras.Input(shape=input_shape, name="image")


def check_options(
    *,
    include_top,
    pooling,
    classes,
    shortcut,
    residual,
    zero_init_residual,
    drop_path_rate,
    se_ratio,
    groups,
    width_per_group,
    kind,
):
    """Raise ValueError on options that cannot build a network."""
    check_choice("pooling", pooling, POOLINGS)
    check_choice(
        "shortcut",
        shortcut,
        SHORTCUTS,
        ' ("A" pads with zeros and adds no weights, "B" uses 1x1 projections)',
    )
    if include_top and (not isinstance(classes, int) or classes < 1):
        raise ValueError(
            "classes must be a positive integer when include_top=True. "
            f"Received: classes={classes!r}"
        )
    if not 0 <= drop_path_rate < 1:
        raise ValueError(
            f"drop_path_rate must be in [0, 1). Received: {drop_path_rate=}"
        )
    if se_ratio is not None and not 0 < se_ratio <= 1:
        raise ValueError(
            f"se_ratio must be in (0, 1], or None. Received: {se_ratio=}"
        )
    if not residual and (zero_init_residual or drop_path_rate):
        raise ValueError(
            "zero_init_residual and drop_path_rate act on residual branches "
            "around an identity shortcut; a plain network has none, and "
            "zeroing or dropping its only path would cut the network. "
            f"Received: {zero_init_residual=}, {drop_path_rate=}"
        )
    if groups < 1 or width_per_group < 1:
        raise ValueError(
            "groups and width_per_group must be positive. "
            f"Received: {groups=}, {width_per_group=}"
        )
    if kind == "basic" and (groups != 1 or width_per_group != 64):
        raise ValueError(
            "groups and width_per_group apply to bottleneck blocks (depth "
            "50 and more); basic blocks need groups=1, width_per_group=64. "
            f"Received: {groups=}, {width_per_group=}"
        )


def build_network(
    stem,
    stem_stride,
    stages,
    options,
    *,
    residual,
    include_top,
    input_shape,
    input_tensor,
    pooling,
    classes,
    classifier_activation,
    name,
    default_shape,
    min_size,
    output_stride=None,
    drop_path_rate=0.0,
):
    """Build a functional network from a stem and a list of stages.

    Stage `k` (counting from 0) names its blocks `conv{k + 2}_block{i}`
    with `i` counting from 1, the scheme of `keras.applications.ResNet50`,
    because the stem is `conv1`. These names are the contract for moving
    weights between models, so they do not change between releases.

    Args:
        stem: function from the input tensor to the first stage's input.
        stem_stride: the stem's total stride.
        stages: list of `Stage`.
        options: `BlockOptions` shared by every block.
        residual: False builds the plain twin, without shortcuts.
        include_top: whether to end with global average pooling and a
            `classes`-way Dense layer named `predictions`.
        pooling: with `include_top=False`, None returns the last feature
            map (NHWC), "avg" or "max" a global pooling of it.
        classifier_activation: activation of `predictions`; None returns
            logits.
        name: model name.
        default_shape: input shape used when none is given.
        min_size: smallest accepted input height and width.
        output_stride: the largest stride of the feature maps; further
            downsampling is replaced by dilation. None keeps every stride.
        drop_path_rate: stochastic-depth rate of the last block.

    Returns:
        A `keras.Model`.
    """
    check_options(
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        shortcut=options.shortcut,
        residual=residual,
        zero_init_residual=options.zero_init_residual,
        drop_path_rate=drop_path_rate,
        se_ratio=options.se_ratio,
        groups=options.groups,
        width_per_group=options.width_per_group,
        kind=options.kind,
    )
    strides = output_strides(stages, stem_stride)
    if output_stride is None:
        output_stride = strides[-1]
    check_choice("output_stride", output_stride, strides)
    inputs = resolve_input(input_shape, input_tensor, default_shape, min_size)

    x = stem(inputs)
    for plan in plan_blocks(stages, stem_stride, output_stride, drop_path_rate):
        x = residual_block(
            x,
            plan.filters,
            options,
            plan.name,
            strides=plan.strides,
            dilation=plan.dilation,
            residual=residual,
            drop_rate=plan.drop_rate,
        )
    if options.preact:
        x = batch_norm(x, options, "post_bn")
        x = layers.Activation("relu", name="post_relu")(x)

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


__all__ = ["BlockOptions", "Stage", "build_network", "plan_blocks"]
