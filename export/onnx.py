"""ONNX export through tf2onnx, with named inputs and a dynamic batch."""

import contextlib

import keras
import onnx
import tensorflow as tf
import tf2onnx

DEFAULT_OPSET = 17

# The symbolic name that the batch dimension gets in the ONNX graph, where
# tf2onnx would otherwise write a generated name such as "unk__13".
BATCH_DIM = "batch"


def _name_batch_dimension(graph_values):
    for value in graph_values:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def _conv_layers(layer):
    for child in getattr(layer, "layers", []):
        if isinstance(child, keras.layers.Conv2D):
            yield child
        yield from _conv_layers(child)


def _graph_convolution(layer):
    def convolution_op(inputs, kernel):
        return tf.nn.convolution(
            inputs,
            kernel,
            strides=list(layer.strides),
            padding=layer.padding.upper(),
            dilations=list(layer.dilation_rate),
            data_format="NHWC",
        )

    return convolution_op


@contextlib.contextmanager
def plain_grouped_convolutions(model):
    """Trace grouped convolutions as one TensorFlow Conv2D op each.

    Keras 3.15 runs a grouped `Conv2D` on TensorFlow inside a nested
    `tf.function(jit_compile=True)`, because TensorFlow's CPU kernel lacks
    grouped convolution. tf2onnx 1.17 cannot convert that nested call
    (tensorflow-onnx issue 2099), but it converts a grouped Conv2D op to an
    ONNX Conv with its `group` attribute. Within this context each grouped
    layer of `model` calls `tf.nn.convolution` directly; the graph is only
    traced for conversion, never run by TensorFlow.
    """
    patched = [
        layer
        for layer in _conv_layers(model)
        if layer.groups > 1 and layer.data_format == "channels_last"
    ]
    for layer in patched:
        layer.convolution_op = _graph_convolution(layer)
    try:
        yield
    finally:
        for layer in patched:
            del layer.convolution_op


def write_onnx(function, inputs, path, opset=DEFAULT_OPSET):
    """Convert the serving `tf.function` to ONNX and save it at `path`.

    The graph's inputs and outputs carry the names of the function's input
    specs and output dict keys. The file is checked with
    `onnx.checker.check_model` before it is written.
    """
    model_proto, _ = tf2onnx.convert.from_function(
        function,
        input_signature=[info.spec() for info in inputs],
        opset=opset,
    )
    _name_batch_dimension(model_proto.graph.input)
    _name_batch_dimension(model_proto.graph.output)
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(path))
