"""The configured stem, stages and block options that a family builds."""

from collections.abc import Callable
from dataclasses import dataclass

from keras_resnet.blocks import BlockOptions
from keras_resnet.builder import Stage


@dataclass(frozen=True)
class Family:
    """One configured network of a family, before the head is chosen.

    Attributes:
        stem: function from the input tensor to the first stage's input.
        stem_stride: the stem's total stride.
        stages: the network's `Stage` list.
        options: `BlockOptions` shared by every block.
        default_shape: input shape used when none is given.
        min_size: smallest accepted input height and width.
        default_name: model name after the "resnet" or "plain" prefix.
        default_classes: classes of the top layer when none are given.
    """

    stem: Callable
    stem_stride: int
    stages: list[Stage]
    options: BlockOptions
    default_shape: tuple
    min_size: int
    default_name: str
    default_classes: int
