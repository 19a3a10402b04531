"""float32 copies of models built under a mixed-precision policy."""

import keras

from export.signature import walk_layers

# Compute dtypes below float32 that a float32 copy replaces. Integer
# layers, such as Hashing, keep their dtype.
LOW_PRECISION = ("float16", "bfloat16")


def non_float32_layers(model):
    """Return the names of layers that compute in float16 or bfloat16."""
    return [
        layer.name
        for layer in walk_layers(model)
        if keras.backend.standardize_dtype(layer.compute_dtype) in LOW_PRECISION
    ]


def _clone_float32(layer):
    config = layer.get_config()
    if keras.backend.standardize_dtype(layer.compute_dtype) in LOW_PRECISION:
        config["dtype"] = "float32"
    return layer.__class__.from_config(config)


def float32_model(model):
    """Return `model`, or a float32 copy if it computes in lower precision.

    Under a `mixed_float16` or `mixed_bfloat16` policy Keras keeps float32
    variables but computes in 16 bits, and the converters would export the
    casts. The copy has the same architecture and weights with float32
    compute, so the artifacts take and return float32.

    Raises:
        ValueError: when a layer cannot be copied as float32, such as a
            layer nested in a sub-model; the message names it.
    """
    if not non_float32_layers(model):
        return model
    # The copy's input layers take the global policy, so build it under
    # float32 whatever policy is active, and restore that policy after.
    active = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = keras.models.clone_model(model, clone_function=_clone_float32)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Model {model.name!r} computes in mixed precision and could not "
            f"be copied as float32 for export: {err}. Rebuild it under the "
            "float32 policy and load its weights."
        ) from err
    finally:
        keras.config.set_dtype_policy(active)
    remaining = non_float32_layers(copy)
    if remaining:
        raise ValueError(
            f"Model {model.name!r} computes in mixed precision, and layers "
            f"{remaining} stay below float32 in a copy. Rebuild it under the "
            "float32 policy (keras.config.set_dtype_policy('float32')) and "
            "load its weights before exporting."
        )
    copy.set_weights(model.get_weights())
    return copy
