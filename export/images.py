"""Read image files into 8-bit arrays of a model's input size."""

from pathlib import Path

import numpy as np
import tensorflow as tf


class ImageError(ValueError):
    """An image file that cannot be read."""


def load_image(path, height, width, channels):
    """Decode a PNG, JPEG, BMP or GIF file and resize it.

    Color images become grayscale for `channels=1` and grayscale ones RGB
    for `channels=3`. Resizing is bilinear with antialiasing, so large
    images shrink without aliasing.

    Returns:
        uint8 array of shape (height, width, channels).

    Raises:
        ImageError: when the file is missing or not a decodable image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"Image file not found: {path}")
    return decode_image(path.read_bytes(), height, width, channels, path)


def decode_image(data, height, width, channels, source="image"):
    """Decode PNG, JPEG, BMP or GIF bytes and resize them; see `load_image`.

    `source` names the data in error messages.
    """
    try:
        image = tf.io.decode_image(data, channels=0, expand_animations=False)
    except (tf.errors.InvalidArgumentError, ValueError):
        raise ImageError(
            f"Cannot decode {source}: it is not a PNG, JPEG, BMP or GIF image."
        ) from None

    # Drop the alpha channel of grayscale-alpha and RGBA images.
    if image.shape[-1] == 2:
        image = image[..., :1]
    elif image.shape[-1] == 4:
        image = image[..., :3]
    if channels == 1 and image.shape[-1] == 3:
        image = tf.image.rgb_to_grayscale(image)
    elif channels == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)

    resized = tf.image.resize(image, (height, width), antialias=True)
    return np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
