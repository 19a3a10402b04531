"""Input preprocessing that goes with each ImageNet version's weights."""

import keras
import numpy as np

# keras.applications' preprocessing modes: "caffe" converts RGB to BGR and
# subtracts the ImageNet mean per channel, "tf" scales [0, 255] to
# [-1, 1], "torch" scales to [0, 1] and normalizes by the ImageNet mean and
# standard deviation, as torchvision's weights expect.
MODES = {"v1": "caffe", "v1.5": "torch", "v2": "tf"}


def preprocess_input(x, version="v1"):
    """Preprocess RGB images in [0, 255] for a network of `version`.

    Args:
        x: NHWC array or tensor of RGB values in [0, 255].
        version: "v1" (caffe mode, as `keras.applications.resnet`), "v2"
            (tf mode, as `keras.applications.resnet_v2`) or "v1.5" (torch
            mode, as torchvision's ImageNet weights).

    Returns:
        The preprocessed images, float32; `x` itself is left unchanged.
    """
    if version not in MODES:
        raise ValueError(
            f"version must be one of {', '.join(map(repr, MODES))}. "
            f"Received: version={version!r}"
        )
    # A float32 copy: keras.applications writes into float arrays in place
    # and keeps float64 as float64.
    if keras.ops.is_tensor(x):
        x = keras.ops.cast(x, "float32")
    else:
        x = np.array(x, dtype=np.float32)
    return keras.applications.imagenet_utils.preprocess_input(
        x, data_format="channels_last", mode=MODES[version]
    )
