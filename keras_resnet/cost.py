"""Parameters and multiply-accumulates per image of a built model."""

from dataclasses import dataclass
from math import prod

import keras

from keras_resnet.layers import walk_layers


@dataclass(frozen=True)
class Cost:
    """Size and arithmetic of a model for one input image.

    Attributes:
        params: every weight, BatchNormalization moving statistics
            included, as `model.count_params()` counts them.
        trainable_params: trainable weights only, as torchvision counts.
        macs: multiply-accumulates of the convolutions and Dense layers for
            one image. torchvision publishes this figure as "GFLOPS"
            (for example 4.089 for resnet50), so compare it with `gmacs`.
    """

    params: int
    trainable_params: int
    macs: int

    @property
    def gmacs(self):
        return self.macs / 1e9

    @property
    def flops(self):
        """Floating-point operations, two per multiply-accumulate."""
        return 2 * self.macs


def _static(shape, layer):
    dims = tuple(shape[1:])
    if any(dim is None for dim in dims):
        raise ValueError(
            f"Layer {layer.name!r} has output shape {shape} with unknown "
            "dimensions; build the model with a fixed input_shape to count "
            "its cost."
        )
    return dims


def _layer_macs(layer):
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        height, width, channels = _static(layer.output.shape, layer)
        kernel = prod(layer.kernel_size)
        return height * width * channels * kernel
    if isinstance(layer, keras.layers.Conv2D):
        height, width, filters = _static(layer.output.shape, layer)
        in_channels = layer.input.shape[-1]
        kernel = prod(layer.kernel_size) * in_channels // layer.groups
        return height * width * filters * kernel
    if isinstance(layer, keras.layers.Dense):
        dims = _static(layer.output.shape, layer)
        positions = prod(dims[:-1])
        return positions * layer.input.shape[-1] * layer.units
    return 0


def count_flops(model):
    """Return the `Cost` of `model` for one input image.

    Counts the multiply-accumulates of Conv2D, DepthwiseConv2D and Dense
    layers, nested models included. BatchNormalization, activations,
    pooling and additions are left out, as torchvision's published figures
    leave them out.

    Raises:
        ValueError: when a layer's output shape has unknown dimensions.
    """
    trainable = sum(prod(w.shape) for w in model.trainable_weights)
    # A nested model counts 0 itself, and its layers count through the walk.
    macs = sum(_layer_macs(layer) for layer in walk_layers(model))
    return Cost(
        params=model.count_params(),
        trainable_params=int(trainable),
        macs=int(macs),
    )
