"""Weights: keras.applications' published ones, files, and copies by name.

Layer names of the "v1" and "v2" ImageNet networks are those of
`keras.applications.ResNet50` and `ResNet50V2`, so weights move between
the two by name with `copy_weights`.
"""

import os

import keras

# keras.applications builders whose published ImageNet weights fit the
# network of the same (version, depth).
KERAS_APPLICATIONS = {
    ("v1", 50): "ResNet50",
    ("v1", 101): "ResNet101",
    ("v1", 152): "ResNet152",
    ("v2", 50): "ResNet50V2",
    ("v2", 101): "ResNet101V2",
    ("v2", 152): "ResNet152V2",
}


def keras_application(version, depth):
    """Return the keras.applications builder matching a network, or None."""
    name = KERAS_APPLICATIONS.get((version, depth))
    return getattr(keras.applications, name) if name else None


def copy_weights(source, target):
    """Copy every weighted layer of `target` from the same-named `source` layer.

    Raises:
        ValueError: when `source` lacks a layer of `target`, or a layer's
            weights differ in number or shape; the message names the layer.
    """
    source_layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        donor = source_layers.get(layer.name)
        if donor is None:
            raise ValueError(
                f"Layer {layer.name!r} of {target.name!r} has no layer of the "
                f"same name in {source.name!r}; the networks differ."
            )
        shapes = [tuple(w.shape) for w in layer.weights]
        donor_shapes = [tuple(w.shape) for w in donor.weights]
        if shapes != donor_shapes:
            raise ValueError(
                f"Layer {layer.name!r} has weights of shapes {shapes} in "
                f"{target.name!r} and {donor_shapes} in {source.name!r}."
            )
        layer.set_weights(donor.get_weights())


def _head_arguments(model):
    """Return the keras.applications arguments that rebuild `model`'s head."""
    names = {layer.name for layer in model.layers}
    include_top = "predictions" in names
    arguments = {
        "include_top": include_top,
        "input_shape": tuple(model.input_shape[1:]),
    }
    if include_top:
        top = model.get_layer("predictions")
        arguments["classes"] = top.units
        activation = keras.activations.serialize(top.activation)
        arguments["classifier_activation"] = (
            None if activation == "linear" else activation
        )
    elif "avg_pool" in names:
        arguments["pooling"] = "avg"
    elif "max_pool" in names:
        arguments["pooling"] = "max"
    return arguments


def load_weights(model, weights, *, family, version, depth):
    """Load `weights` into a freshly built `model`.

    Args:
        model: the network built by `keras_resnet.resnet` or `plain`.
        weights: "imagenet" for keras.applications' published weights, or
            the path of a weights file.
        family, version, depth: the configuration `model` was built with.

    Raises:
        ValueError: for "imagenet" on a network without published weights,
            or when the weights do not fit the network.
        FileNotFoundError: for a path that does not exist.
    """
    application = None
    if family == "imagenet":
        application = keras_application(version, depth)

    if weights == "imagenet":
        if application is None:
            available = ", ".join(
                f"depth {d} {v}" for v, d in KERAS_APPLICATIONS
            )
            raise ValueError(
                "Published ImageNet weights exist only for the imagenet "
                f"family at {available} (keras.applications). Received: "
                f"family={family!r}, version={version!r}, depth={depth}. "
                "Pass weights=None or the path of a weights file."
            )
    elif not os.path.exists(weights):
        raise FileNotFoundError(
            f"weights must be None, 'imagenet' or the path of a weights "
            f"file. No file at: {weights}"
        )

    if application is None:
        model.load_weights(str(weights))
        return

    # keras.applications downloads and checks its own files and reads both
    # its legacy .h5 files and Keras 3 .weights.h5 files; the weights then
    # move over by layer name.
    reference = application(weights=str(weights), **_head_arguments(model))
    copy_weights(reference, model)
