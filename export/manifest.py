"""`manifest.json`: each artifact described from the artifact itself."""

import hashlib
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np
import onnx
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.core.protobuf import saved_model_pb2

from export.savedmodel import SIGNATURE_KEY

# The value that marks a dynamic dimension in the manifest's shapes.
DYNAMIC = None

TOOLS = (
    "tensorflow",
    "keras",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
)


def tool_versions():
    """Return the installed version of each converter and runtime."""
    return {name: package_metadata.version(name) for name in TOOLS}


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(path, root):
    paths = sorted(p for p in path.rglob("*") if p.is_file())
    return [
        {
            "path": p.relative_to(root).as_posix(),
            "size_bytes": p.stat().st_size,
            "sha256": sha256_file(p),
        }
        for p in paths
    ]


def _dims(shape):
    return [DYNAMIC if dim is None or dim < 0 else int(dim) for dim in shape]


def _savedmodel_io(path):
    # The SignatureDef in saved_model.pb, which is what `saved_model_cli
    # show` prints. Reading it skips `tf.saved_model.load`, which restores
    # every variable and took 1.6 s for ResNet-50.
    saved_model = saved_model_pb2.SavedModel.FromString(
        (Path(path) / "saved_model.pb").read_bytes()
    )
    signature = saved_model.meta_graphs[0].signature_def[SIGNATURE_KEY]

    def describe(infos):
        return [
            {
                "name": name,
                "dtype": tf.dtypes.as_dtype(info.dtype).name,
                "shape": _dims(tf.TensorShape(info.tensor_shape).as_list()),
            }
            for name, info in sorted(infos.items())
        ]

    return describe(signature.inputs), describe(signature.outputs)


def _tflite_io(path):
    runner = Interpreter(model_path=str(path)).get_signature_runner(
        SIGNATURE_KEY
    )

    def describe(details):
        entries = []
        for name, detail in sorted(details.items()):
            scale, zero_point = detail["quantization"]
            entry = {
                "name": name,
                "dtype": np.dtype(detail["dtype"]).name,
                "shape": _dims(detail["shape_signature"]),
            }
            if scale:
                entry["quantization"] = {
                    "scale": float(scale),
                    "zero_point": int(zero_point),
                }
            entries.append(entry)
        return entries

    return describe(runner.get_input_details()), describe(
        runner.get_output_details()
    )


def _onnx_io(path):
    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}

    def describe(values):
        entries = []
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
            shape = [
                dim.dim_value if dim.HasField("dim_value") else DYNAMIC
                for dim in tensor.shape.dim
            ]
            entries.append(
                {"name": value.name, "dtype": dtype.name, "shape": shape}
            )
        return entries

    opset = next(
        (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        None,
    )
    return describe(model.graph.input), describe(model.graph.output), opset


def artifact_entry(fmt, out_dir, parity):
    """Return the manifest entry of the artifact of `fmt` in `out_dir`."""
    path = Path(out_dir) / fmt.path
    entry = {
        "format": fmt.name,
        "runtime": fmt.runtime,
        "precision": fmt.precision,
        "path": fmt.path,
    }
    if path.is_dir():
        files = _files(path, Path(out_dir))
        entry["size_bytes"] = sum(f["size_bytes"] for f in files)
        entry["files"] = files
    else:
        entry["size_bytes"] = path.stat().st_size
        entry["sha256"] = sha256_file(path)

    if fmt.runtime == "savedmodel":
        inputs, outputs = _savedmodel_io(path)
        entry["converter"] = {"tensorflow": tf.__version__}
    elif fmt.runtime == "tflite":
        inputs, outputs = _tflite_io(path)
        entry["converter"] = {"tensorflow": tf.__version__}
    else:
        inputs, outputs, opset = _onnx_io(path)
        entry["opset"] = opset
        entry["converter"] = {
            "tf2onnx": package_metadata.version("tf2onnx"),
            "onnxruntime.quantization": package_metadata.version("onnxruntime")
            if fmt.quantized
            else None,
        }
    entry["inputs"] = inputs
    entry["outputs"] = outputs
    entry["parity"] = parity
    return entry


def build_manifest(report, formats, out_dir, metadata):
    """Return the manifest for the artifacts in `out_dir`.

    Shapes list None for dynamic dimensions, and the batch dimension of
    every artifact is dynamic.
    """
    return {
        "model": report["model"],
        "metadata": metadata,
        "artifacts": [
            artifact_entry(fmt, out_dir, report["formats"][fmt.name])
            for fmt in formats
        ],
        "versions": tool_versions(),
    }
