"""Named builders with the keras.applications signature.

`ResNet50`, `ResNet101`, `ResNet152` and the V2 builders default to the
layouts of keras.applications' builders of the same names; `ResNet18` and
`ResNet34`, which keras.applications lacks, default to torchvision's v1.5.
`ResNet20` to `ResNet110` are the CIFAR networks. Every builder accepts
the extra options of `keras_resnet.resnet` (`version`, `shortcut`,
`groups`, `se_ratio`, ...) as keyword arguments, and `residual=False`
builds the plain twin.

Unlike keras.applications, `weights` defaults to None, so that building a
network never downloads a file.
"""

from keras_resnet.models import build

# name: (family, depth, version)
NAMED_MODELS = {
    "ResNet18": ("imagenet", 18, "v1.5"),
    "ResNet34": ("imagenet", 34, "v1.5"),
    "ResNet50": ("imagenet", 50, "v1"),
    "ResNet101": ("imagenet", 101, "v1"),
    "ResNet152": ("imagenet", 152, "v1"),
    "ResNet50V2": ("imagenet", 50, "v2"),
    "ResNet101V2": ("imagenet", 101, "v2"),
    "ResNet152V2": ("imagenet", 152, "v2"),
    "ResNet20": ("cifar", 20, "v1"),
    "ResNet32": ("cifar", 32, "v1"),
    "ResNet44": ("cifar", 44, "v1"),
    "ResNet56": ("cifar", 56, "v1"),
    "ResNet110": ("cifar", 110, "v1"),
}


def _named_builder(model_name, family, depth, default_version):
    def builder(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=None,
        classifier_activation="softmax",
        name=None,
        *,
        residual=True,
        version=default_version,
        **options,
    ):
        return build(
            depth,
            family,
            residual=residual,
            version=version,
            weights=weights,
            include_top=include_top,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            **options,
        )

    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = (
        f"Build {model_name}: the {family} ResNet of depth {depth}, version "
        f'"{default_version}" unless `version` is given.\n\n'
        "Takes the arguments of the keras.applications builders, with "
        "`classes` defaulting to 10 for CIFAR networks and 1000 for ImageNet "
        "ones, and the options of `keras_resnet.resnet`."
    )
    return builder


BUILDERS = {
    model_name: _named_builder(model_name, *spec)
    for model_name, spec in NAMED_MODELS.items()
}


def list_models():
    """Return the names of the named builders, such as "ResNet50"."""
    return list(BUILDERS)


def get_model(model_name):
    """Return the named builder `model_name`, such as `ResNet50`."""
    try:
        return BUILDERS[model_name]
    except KeyError:
        raise ValueError(
            f"Unknown model {model_name!r}; keras_resnet.list_models() "
            f"lists {', '.join(BUILDERS)}."
        ) from None


ResNet18 = BUILDERS["ResNet18"]
ResNet34 = BUILDERS["ResNet34"]
ResNet50 = BUILDERS["ResNet50"]
ResNet101 = BUILDERS["ResNet101"]
ResNet152 = BUILDERS["ResNet152"]
ResNet50V2 = BUILDERS["ResNet50V2"]
ResNet101V2 = BUILDERS["ResNet101V2"]
ResNet152V2 = BUILDERS["ResNet152V2"]
ResNet20 = BUILDERS["ResNet20"]
ResNet32 = BUILDERS["ResNet32"]
ResNet44 = BUILDERS["ResNet44"]
ResNet56 = BUILDERS["ResNet56"]
ResNet110 = BUILDERS["ResNet110"]
