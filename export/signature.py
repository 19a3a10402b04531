"""Names, shapes and dtypes of a Keras model's inputs and outputs.

Every artifact takes the same named inputs and returns the same named
outputs: the names of the model's input layers and output layers, which a
`.keras` round trip keeps, rather than the `keras_tensor_N` names that
Keras gives its symbolic tensors.
"""

import re
from dataclasses import asdict, dataclass

import keras
import tensorflow as tf

# Characters that TensorFlow accepts in a signature's tensor names.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/]")


@dataclass(frozen=True)
class TensorInfo:
    """One named input or output of a model.

    Attributes:
        name: the layer name used in every exported signature.
        shape: dimensions with None for dynamic ones, batch first.
        dtype: numpy dtype name, such as "float32".
    """

    name: str
    shape: tuple
    dtype: str

    def spec(self):
        return tf.TensorSpec(self.shape, tf.as_dtype(self.dtype), self.name)

    def to_dict(self):
        """Return the fields as JSON types: the shape becomes a list."""
        return {**asdict(self), "shape": list(self.shape)}


def walk_layers(model):
    """Yield every layer of `model`, those of nested models included."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from walk_layers(layer)


def _layer_names(tensors):
    names = []
    for tensor in tensors:
        history = getattr(tensor, "_keras_history", None)
        name = history.operation.name if history else tensor.name
        name = _UNSAFE.sub("_", name)
        candidate, count = name, 1
        while candidate in names:
            candidate = f"{name}_{count}"
            count += 1
        names.append(candidate)
    return names


def _infos(tensors):
    return [
        TensorInfo(
            name,
            tuple(tensor.shape),
            keras.backend.standardize_dtype(tensor.dtype),
        )
        for name, tensor in zip(_layer_names(tensors), tensors, strict=True)
    ]


def model_signature(model):
    """Return the model's inputs and outputs as two lists of `TensorInfo`.

    Raises:
        ValueError: when the model has no defined inputs, as a
            `keras.Sequential` model created without `keras.Input` has
            until it is called on data.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"model must be a keras.Model. Received: {type(model).__name__}"
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            f"Model {model.name!r} has no defined inputs, so it cannot be "
            "exported. Build it on keras.Input(shape=...) first, for example "
            "keras.Sequential([keras.Input((32, 32, 3)), ...])."
        )
    return _infos(inputs), _infos(outputs)


def serving_function(model, inputs, outputs):
    """Return a `tf.function` that runs the model in inference mode.

    It takes the inputs positionally in the model's order, and returns a
    dict from output name to tensor.
    """

    def serve(*tensors):
        args = tensors[0] if len(tensors) == 1 else list(tensors)
        results = tf.nest.flatten(model(args, training=False))
        return {
            info.name: tf.cast(result, info.dtype)
            for info, result in zip(outputs, results, strict=True)
        }

    return tf.function(serve, input_signature=[info.spec() for info in inputs])


# Parts of the names of TensorFlow's random-number ops: RandomUniform,
# StatelessRandomNormalV2, StatelessMultinomial, TruncatedNormal and their
# relatives.
RANDOM_OP_PARTS = ("Random", "Multinomial", "TruncatedNormal")


def random_ops(function):
    """Return the random-number op types in the traced `function`'s graph.

    An inference graph has none: a layer that draws random numbers with
    `training=False` would make every artifact nondeterministic.
    """
    graph_def = function.get_concrete_function().graph.as_graph_def()
    nodes = list(graph_def.node)
    for library_function in graph_def.library.function:
        nodes.extend(library_function.node_def)
    return sorted(
        {
            node.op
            for node in nodes
            if any(part in node.op for part in RANDOM_OP_PARTS)
        }
    )
