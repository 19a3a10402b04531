"""Multi-scale feature maps of a built network, for detection backbones."""

import re

import keras

_BLOCK_OUTPUT = re.compile(r"^conv(\d+)_block(\d+)_out$")


def _downsamples(model, block_name):
    prefix = f"{block_name}_"
    return any(
        layer.name.startswith(prefix)
        and isinstance(layer, keras.layers.Conv2D)
        and max(layer.strides) > 1
        for layer in model.layers
    )


def stage_outputs(model):
    """Return {"C2": layer name, ...}: each stage's output layer.

    C_k is the output of the last block of stage `conv{k}` that does not
    downsample, at stride 2**k for "imagenet" unless dilated. Networks laid
    out as keras.applications' ResNet50V2 stride in the last block of a
    stage, so their C_k is the block before it. Their C5 is `post_relu`,
    after the final BatchNormalization and ReLU.
    """
    blocks = {}
    for layer in model.layers:
        match = _BLOCK_OUTPUT.match(layer.name)
        if match:
            stage, block = map(int, match.groups())
            blocks[stage] = max(blocks.get(stage, 0), block)
    if not blocks:
        raise ValueError(
            f"Model {model.name!r} has no layers named conv{{k}}_block{{i}}"
            "_out; feature_extractor needs a network built by keras_resnet "
            "or keras.applications' ResNet."
        )

    names = {layer.name for layer in model.layers}
    preact = "post_relu" in names
    last_stage = max(blocks)
    outputs = {}
    for stage in sorted(blocks):
        block = blocks[stage]
        if preact and stage == last_stage:
            outputs[f"C{stage}"] = "post_relu"
            continue
        if block > 1 and _downsamples(model, f"conv{stage}_block{block}"):
            block -= 1
        outputs[f"C{stage}"] = f"conv{stage}_block{block}_out"
    return outputs


def feature_extractor(model, levels=None):
    """Return a model from `model`'s input to its stage outputs.

    Args:
        model: a network built by `keras_resnet` (or keras.applications'
            ResNet and ResNetV2), with or without its top.
        levels: the levels to return, such as ("C3", "C4", "C5"). Defaults
            to every stage: C2 to C5 for "imagenet", C2 to C4 for "cifar".

    Returns:
        A `keras.Model` whose output is a dict from level to NHWC tensor.
    """
    available = stage_outputs(model)
    if levels is None:
        levels = tuple(available)
    unknown = [level for level in levels if level not in available]
    if unknown:
        raise ValueError(
            f"levels must be among {', '.join(available)}. "
            f"Received: levels={list(levels)}"
        )
    outputs = {
        level: model.get_layer(available[level]).output for level in levels
    }
    # A single input as a tensor, not a one-element list, so that calling
    # the extractor on an array matches its input structure.
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_features")
