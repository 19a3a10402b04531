"""Plain and residual convolutional networks for Keras 3.

Every residual network built here has a plain twin with the same layers
under the same names and no shortcut connections, for comparing the two as
He et al. (2015, "Deep Residual Learning for Image Recognition") did.
"""

from keras_resnet.applications import (
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet44,
    ResNet50,
    ResNet50V2,
    ResNet56,
    ResNet101,
    ResNet101V2,
    ResNet110,
    ResNet152,
    ResNet152V2,
    get_model,
    list_models,
)
from keras_resnet.cost import Cost, count_flops
from keras_resnet.features import feature_extractor
from keras_resnet.layers import DropPath, ZeroPaddedIdentity
from keras_resnet.models import plain, resnet
from keras_resnet.preprocessing import preprocess_input
from keras_resnet.weights import copy_weights

__version__ = "0.1.0"

__all__ = [
    "Cost",
    "DropPath",
    "ResNet18",
    "ResNet20",
    "ResNet32",
    "ResNet34",
    "ResNet44",
    "ResNet50",
    "ResNet50V2",
    "ResNet56",
    "ResNet101",
    "ResNet101V2",
    "ResNet110",
    "ResNet152",
    "ResNet152V2",
    "ZeroPaddedIdentity",
    "copy_weights",
    "count_flops",
    "feature_extractor",
    "get_model",
    "list_models",
    "plain",
    "preprocess_input",
    "resnet",
]
