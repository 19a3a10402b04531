"""Layers that Keras does not ship and the builders need."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_resnet")
class ZeroPaddedIdentity(keras.layers.Layer):
    """Identity shortcut that subsamples and zero-pads channels (option A).

    He et al. (2015), section 4.2, use this shortcut on CIFAR so that the
    residual network has no more parameters than its plain twin. The layer
    keeps every `strides`-th row and column, which matches the output size
    of a stride-`strides` convolution with "same" padding for odd sizes too
    (ceil(H / strides)), then appends zero channels up to `filters`: half
    before the input channels and the rest after.

    A registered layer, unlike a `Lambda`, loads from a `.keras` file with
    `safe_mode=True`.

    Args:
        filters: number of output channels, at least the input's.
        strides: spatial subsampling factor.
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        if filters < 1:
            raise ValueError(f"filters must be positive. Received: {filters=}")
        if strides < 1:
            raise ValueError(f"strides must be positive. Received: {strides=}")
        self.filters = int(filters)
        self.strides = int(strides)

    def _extra_channels(self, input_channels):
        extra = self.filters - input_channels
        if extra < 0:
            raise ValueError(
                f"ZeroPaddedIdentity cannot reduce {input_channels} channels "
                f"to filters={self.filters}; use a projection shortcut."
            )
        return extra // 2, extra - extra // 2

    def build(self, input_shape):
        self._extra_channels(input_shape[-1])
        super().build(input_shape)

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        before, after = self._extra_channels(x.shape[-1])
        if before or after:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [before, after]])
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def subsample(size):
            if size is None:
                return None
            return -(-size // self.strides)

        return (batch, subsample(height), subsample(width), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides})
        return config


@keras.saving.register_keras_serializable(package="keras_resnet")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drop a whole residual branch per sample in training.

    Huang et al. (2016), "Deep Networks with Stochastic Depth". In training
    each sample's branch is zeroed with probability `rate` and otherwise
    scaled by 1 / (1 - rate), so that its expected value is unchanged. In
    inference the layer is the identity and adds no op to an exported
    graph.

    Args:
        rate: drop probability in [0, 1).
        seed: optional seed of the layer's random generator.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"rate must be in [0, 1). Received: {rate=}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        mask = keras.random.uniform(shape, seed=self.seed_generator) < keep
        return inputs * ops.cast(mask, inputs.dtype) / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


def walk_layers(model):
    """Yield every layer of `model`, those of nested models included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)
