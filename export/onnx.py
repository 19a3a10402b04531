"""ONNX export through tf2onnx, with named inputs and a dynamic batch."""

import onnx
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
