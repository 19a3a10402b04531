"""ONNX export through tf2onnx, with named inputs and a dynamic batch."""

import contextlib
import os

import keras
import onnx
import tensorflow as tf
import tf2onnx

from export.signature import walk_layers

DEFAULT_OPSET = 17

# ONNX metadata property that records the input and output layout.
LAYOUT_KEY = "layout"


# tf2onnx reads this variable on each conversion. Unset, it deep-copies the
# whole graph, weights included, before each of its optimizer passes so that
# a failing pass can be undone and skipped. The copies are freed late:
# converting ResNet-101 at 32 x 32 peaked at 13 GB of resident memory
# with them and at 7 GB without. Set, a failing pass stops the conversion.
# tf2onnx 1.17.0 compares the variable's name, not its value, with "TRUE"
# (tf2onnx/convert.py, `_convert_common`), so any value turns the copies
# off, TRUE included. `write_onnx` therefore unsets it when the caller
# asks for TRUE.
CATCH_ERRORS_VARIABLE = "TF2ONNX_CATCH_ERRORS"


# The symbolic name that the batch dimension gets in the ONNX graph, where
# tf2onnx would otherwise write a generated name such as "unk__13".
BATCH_DIM = "batch"


def _name_batch_dimension(graph_values):
    for value in graph_values:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


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
        for layer in walk_layers(model)
        if isinstance(layer, keras.layers.Conv2D)
        and layer.groups > 1
        and layer.data_format == "channels_last"
    ]
    for layer in patched:
        layer.convolution_op = _graph_convolution(layer)
    try:
        yield
    finally:
        for layer in patched:
            del layer.convolution_op


def _set_metadata(model_proto, props):
    existing = {entry.key: entry for entry in model_proto.metadata_props}
    for key, value in props.items():
        entry = existing.get(key) or model_proto.metadata_props.add()
        entry.key = key
        entry.value = value


@contextlib.contextmanager
def _environment(name, value):
    """Set the environment variable `name` to `value` inside the block.

    A `value` of None unsets it. The previous state comes back on exit,
    also when the block raises.
    """
    before = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _catch_errors_value():
    """Return the value of CATCH_ERRORS_VARIABLE for the conversion.

    The default is FALSE, which turns tf2onnx's per-pass copies off. A
    caller's TRUE (any case) maps to unset, the only state in which
    tf2onnx 1.17.0 catches failing passes when `large_model` is off, as
    it is here.
    """
    requested = os.environ.get(CATCH_ERRORS_VARIABLE, "FALSE")
    if requested.strip().upper() == "TRUE":
        return None
    return "FALSE"


def write_onnx(
    function, inputs, outputs, path, opset=DEFAULT_OPSET, nchw=False, props=None
):
    """Convert the serving `tf.function` to ONNX and save it at `path`.

    The graph's inputs and outputs carry the names of the function's input
    specs and output dict keys. With `nchw`, 4-D inputs and outputs are
    channels first; tf2onnx then moves the layout change into the
    convolutions' weights instead of adding Transpose nodes. `props` are
    written to `metadata_props`. The file is checked with
    `onnx.checker.check_model` before it is written.
    """
    layout = {}
    if nchw:
        layout = {
            "inputs_as_nchw": [i.name for i in inputs if len(i.shape) == 4],
            "outputs_as_nchw": [o.name for o in outputs if len(o.shape) == 4],
        }
    # NOTE: the variable is process-wide, so exports that run at the same
    # time in two threads can see each other's value.
    with _environment(CATCH_ERRORS_VARIABLE, _catch_errors_value()):
        model_proto, _ = tf2onnx.convert.from_function(
            function,
            input_signature=[info.spec() for info in inputs],
            opset=opset,
            **layout,
        )
    _name_batch_dimension(model_proto.graph.input)
    _name_batch_dimension(model_proto.graph.output)
    _set_metadata(
        model_proto,
        {LAYOUT_KEY: "NCHW" if nchw else "NHWC", **(props or {})},
    )
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(path))
