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


def _weight_shapes(model):
    return {
        layer.name: [tuple(w.shape) for w in layer.weights]
        for layer in model.layers
        if layer.weights
    }


def load_weights(model, weights, *, family, version, depth, options=None):
    """Load `weights` into a freshly built `model`.

    keras.applications' files go through keras.applications, which
    downloads and checks its published files and reads both its legacy
    `.h5` files and Keras 3 `.weights.h5` files; the weights then move
    over by layer name. That route is taken only when `model` has exactly
    the weighted layers of the keras.applications network, so that any
    other option (groups, squeeze-and-excitation, a deep stem, the plain
    twin) loads its own `.weights.h5` file directly.

    Args:
        model: the network built by `keras_resnet.resnet` or `plain`.
        weights: "imagenet" for keras.applications' published weights, or
            the path of a weights file.
        family, version, depth: the configuration `model` was built with.
        options: the options that differ from their defaults, named in
            the error for "imagenet".

    Raises:
        ValueError: for "imagenet" on a network without published weights,
            or when the weights do not fit the network.
        FileNotFoundError: for a path that does not exist.
    """
    if weights != "imagenet" and not os.path.exists(weights):
        raise FileNotFoundError(
            f"weights must be None, 'imagenet' or the path of a weights "
            f"file. No file at: {weights}"
        )

    application = None
    if family == "imagenet":
        application = keras_application(version, depth)
    if application is not None:
        arguments = _head_arguments(model)
        # Built without weights first, so that a mismatch is found before
        # anything is downloaded.
        layout = _weight_shapes(application(weights=None, **arguments))
        ours = _weight_shapes(model)
        if any(layout.get(name) != shapes for name, shapes in ours.items()):
            application = None

    if application is None:
        if weights == "imagenet":
            available = ", ".join(
                f"depth {d} {v}" for v, d in KERAS_APPLICATIONS
            )
            raise ValueError(
                "Published ImageNet weights exist only for networks with the "
                f"layers of keras.applications' ResNets ({available}, with "
                "default options). Received: "
                f"family={family!r}, version={version!r}, depth={depth}, "
                f"options {options or {}}, model {model.name!r}. Pass "
                "weights=None or the path of a weights file."
            )
        model.load_weights(str(weights))
        return

    if weights != "imagenet":
        # A file saved from this very network loads as it is; a file of the
        # keras.applications network goes through keras.applications. A
        # failed direct load is overwritten in full by the copy below.
        try:
            model.load_weights(str(weights))
            return
        except (ValueError, KeyError, OSError):
            pass
    reference = application(weights=str(weights), **arguments)
    copy_weights(reference, model)
