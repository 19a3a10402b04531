"""Plain and residual convolutional networks for Keras 3.

Every residual network built here has a plain twin with the same layers
under the same names and no shortcut connections, for comparing the two as
He et al. (2015, "Deep Residual Learning for Image Recognition") did.
"""

from keras_resnet.layers import ZeroPaddedIdentity
from keras_resnet.models import plain, resnet

__version__ = "0.1.0"

__all__ = ["ZeroPaddedIdentity", "plain", "resnet"]
