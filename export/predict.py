"""`python -m export.predict ARTIFACT IMAGE...`: top-k labels from any artifact.

The artifact is a SavedModel directory, a `.tflite` file or an `.onnx`
file written by `export_model`. The command reads the class labels and
preprocessing stored with it (ONNX `metadata_props`, the SavedModel's
`assets/metadata.json`, or the `manifest.json` beside the file), turns each
image into the model input, runs it in the artifact's own runtime and
prints the top-k labels with their scores. The scores are the model's
output values: probabilities when the model ends in a softmax.

Exit codes: 0 on success, 2 for bad input (a missing artifact or image, an
artifact without stored preprocessing, an unreadable image).
"""

import argparse
import json
import os
import sys
from pathlib import Path

from export.console import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    UsageError,
    print_error,
    quiet_native_stderr,
)
from export.formats import MANIFEST_NAME, METADATA_ASSET

PROG = "python -m export.predict"


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Classify images with an exported model (SavedModel directory, "
            ".tflite or .onnx file), applying the preprocessing stored with "
            "it, and print the top-k labels with scores."
        ),
    )
    parser.add_argument(
        "artifact", type=Path, help="saved_model/ directory, .tflite or .onnx"
    )
    parser.add_argument(
        "images", type=Path, nargs="+", help="PNG, JPEG, BMP or GIF files"
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=5,
        help="number of labels to print per image (default: 5)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per image"
    )
    return parser


def artifact_format(path):
    """Return the runtime format name of the artifact at `path`."""
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "savedmodel"
    if path.is_file() and path.suffix == ".tflite":
        return "tflite"
    if path.is_file() and path.suffix == ".onnx":
        return "onnx"
    if not path.exists():
        raise UsageError(f"artifact not found: {path}")
    raise UsageError(
        f"{path} is not a SavedModel directory, .tflite or .onnx file"
    )


def read_metadata(path, fmt):
    """Return the class labels and preprocessing stored with an artifact."""
    if fmt == "onnx":
        import onnx

        from export.metadata import from_onnx_props

        model = onnx.load(str(path), load_external_data=False)
        props = {entry.key: entry.value for entry in model.metadata_props}
        metadata = from_onnx_props(props)
        if metadata["preprocessing"] is not None:
            return metadata
    if fmt == "savedmodel" and (path / METADATA_ASSET).is_file():
        return json.loads((path / METADATA_ASSET).read_text())
    manifest = path.parent / MANIFEST_NAME
    if manifest.is_file():
        return json.loads(manifest.read_text())["metadata"]
    return {"class_labels": None, "preprocessing": None}


def predict(artifact, images, top_k=5):
    """Return, per image, the top-k (label, score) pairs from `artifact`.

    Raises:
        UsageError: when the artifact has no stored preprocessing or an
            image cannot be read.
    """
    import numpy as np

    from export.images import ImageError, load_image
    from export.metadata import apply_preprocessing, check_preprocessing
    from export.runtimes import load_runtime

    fmt = artifact_format(artifact)
    metadata = read_metadata(artifact, fmt)
    preprocessing = check_preprocessing(metadata["preprocessing"])
    if preprocessing is None:
        raise UsageError(
            f"{artifact} has no stored preprocessing; export it with "
            "preprocessing=... (--preprocessing FILE.json)"
        )
    try:
        pixels = np.stack(
            [
                load_image(
                    image,
                    preprocessing["height"],
                    preprocessing["width"],
                    preprocessing["channels"],
                )
                for image in images
            ]
        )
    except ImageError as err:
        raise UsageError(str(err)) from None

    runtime = load_runtime(fmt, artifact)
    if len(runtime.input_names) != 1:
        raise UsageError(
            f"{artifact} takes {len(runtime.input_names)} inputs; predict "
            "needs a model with one image input"
        )
    inputs = apply_preprocessing(pixels, preprocessing)
    outputs = runtime({runtime.input_names[0]: inputs})
    scores = next(iter(outputs.values())) if len(outputs) == 1 else None
    if scores is None or scores.ndim != 2:
        raise UsageError(
            f"{artifact} does not return one (batch, classes) output of "
            "class scores"
        )

    labels = metadata.get("class_labels") or [
        str(i) for i in range(scores.shape[1])
    ]
    results = []
    for row in scores:
        order = np.argsort(-row)[:top_k]
        results.append([(labels[i], float(row[i])) for i in order])
    return results


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        print_error(PROG, f"--top-k must be positive. Received: {args.top_k}")
        return EXIT_BAD_INPUT
    try:
        artifact_format(args.artifact)
    except UsageError as err:
        print_error(PROG, err)
        return EXIT_BAD_INPUT

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr() as stream:
        try:
            results = predict(args.artifact, args.images, args.top_k)
        except (UsageError, ValueError, OSError) as err:
            print_error(PROG, err, stream)
            return EXIT_BAD_INPUT

    for image, top in zip(args.images, results, strict=True):
        if args.json:
            print(
                json.dumps(
                    {
                        "image": str(image),
                        "top_k": [
                            {"label": label, "score": score}
                            for label, score in top
                        ],
                    }
                )
            )
            continue
        print(image)
        for label, score in top:
            print(f"  {label}\t{score:.4f}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
