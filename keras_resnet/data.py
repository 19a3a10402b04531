"""Image classification data sets held in memory, with a held-out split.

Three sources, all returned as an `ImageData`:

- `load_digits`: scikit-learn's digits, 1,797 real 8 x 8 grayscale images
  that ship inside scikit-learn, so it works offline.
- `load_cifar10`: `keras.datasets.cifar10.load_data()`, which downloads
  CIFAR-10 on first use; its test set is the held-out set.
- `load_image_folder`: a folder with one sub-folder of images per class,
  read with `keras.utils.image_dataset_from_directory`.

The digits and folder splits are stratified: each class keeps its share in
both the training and the held-out set.
"""

import dataclasses
import logging
import socket
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn import datasets
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)

DATASETS = ("digits", "cifar10")

# Share of the images that `load_digits` and `load_image_folder` hold out.
HELDOUT_FRACTION = 0.2

# Seconds that one socket operation of the CIFAR-10 download may stall
# before it fails. `keras.utils.get_file` sets no timeout of its own.
DOWNLOAD_TIMEOUT = 60.0

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"

# Side that the commands upsample digits to by default, so that the last
# stage of the CIFAR networks sees 4 x 4 maps instead of 2 x 2.
DIGITS_IMAGE_SIZE = 16


class DataError(Exception):
    """A data set that failed to load; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Training and held-out images, NHWC, with integer labels.

    Attributes:
        name: data set name, such as "digits" or "cifar10".
        x_train: training images, uint8 or float32, shape (n, h, w, c).
        y_train: training labels, int32 in [0, classes), shape (n,).
        x_heldout: held-out images, same dtype and image shape.
        y_heldout: held-out labels.
        class_names: one name per class, in label order.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray
    class_names: tuple

    @property
    def classes(self):
        """Number of classes."""
        return len(self.class_names)

    @property
    def image_shape(self):
        """(height, width, channels) of one image."""
        return tuple(self.x_train.shape[1:])

    def subset(self, train_size):
        """Return a copy with only the first `train_size` training images.

        The held-out set is kept whole. Used to shorten test runs.
        """
        return dataclasses.replace(
            self,
            x_train=self.x_train[:train_size],
            y_train=self.y_train[:train_size],
        )

    def describe(self):
        """Return a one-line summary of sizes and image shape."""
        height, width, channels = self.image_shape
        return (
            f"{self.name}: {len(self.x_train)} training and "
            f"{len(self.x_heldout)} held-out images of {height} x {width} x "
            f"{channels}, {self.classes} classes"
        )


def stratified_split(images, labels, seed, heldout_fraction):
    """Split into (x_train, y_train, x_heldout, y_heldout), stratified.

    Raises:
        DataError: when a class has too few images to appear in both sets.
    """
    try:
        x_train, x_heldout, y_train, y_heldout = train_test_split(
            images,
            labels,
            test_size=heldout_fraction,
            stratify=labels,
            random_state=seed,
        )
    except ValueError as error:
        raise DataError(
            f"cannot hold out {heldout_fraction:.0%} of each class: {error} "
            "Give every class at least 2 images, and enough for the "
            "held-out set to contain one image of each class."
        ) from None
    return x_train, y_train, x_heldout, y_heldout


def resize_images(images, size):
    """Resize NHWC float images to `size` x `size`, bilinearly."""
    if images.shape[1:3] == (size, size):
        return images
    resized = tf.image.resize(images, (size, size), method="bilinear")
    return resized.numpy().astype(np.float32)


def load_digits(seed=0, image_size=8, heldout_fraction=HELDOUT_FRACTION):
    """Load scikit-learn's digits with a stratified held-out split.

    Args:
        seed: seed of the split.
        image_size: side in pixels. The 8 x 8 images are upsampled
            bilinearly to this size when it is larger.
        heldout_fraction: share of each class held out.

    Returns:
        An `ImageData` of float32 images in [0, 1], one channel.
    """
    digits = datasets.load_digits()
    # Pixel values are integers 0..16.
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    images = resize_images(images, image_size)
    labels = digits.target.astype(np.int32)
    x_train, y_train, x_heldout, y_heldout = stratified_split(
        images, labels, seed, heldout_fraction
    )
    return ImageData(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_heldout=x_heldout,
        y_heldout=y_heldout,
        class_names=tuple(str(label) for label in range(10)),
    )


def load_cifar10():
    """Load CIFAR-10 through `keras.datasets.cifar10.load_data()`.

    Keras downloads the archive (about 170 MB) to ~/.keras/datasets/, or
    `$KERAS_HOME/datasets/`, on first use and reads it from there later.
    A stalled download fails after `DOWNLOAD_TIMEOUT` seconds without
    data.

    Returns:
        An `ImageData` of uint8 RGB images, 50,000 training and 10,000
        held-out (the CIFAR-10 test set).

    Raises:
        DataError: when the download or the archive fails.
    """
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        (x_train, y_train), (x_test, y_test) = (
            keras.datasets.cifar10.load_data()
        )
    except Exception as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DataError(
            f"keras.datasets.cifar10.load_data() failed: {reason}. Run it "
            f"where it can download, or copy {CIFAR10_ARCHIVE} into "
            "~/.keras/datasets/, or train on a folder of images with "
            "--data-dir DIR."
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return ImageData(
        name="cifar10",
        x_train=x_train,
        y_train=y_train.reshape(-1).astype(np.int32),
        x_heldout=x_test,
        y_heldout=y_test.reshape(-1).astype(np.int32),
        class_names=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
    )


def load_image_folder(
    directory,
    image_size=32,
    seed=0,
    heldout_fraction=HELDOUT_FRACTION,
    color_mode="rgb",
):
    """Load a folder of images with one sub-folder per class.

    The images are read with `keras.utils.image_dataset_from_directory`,
    resized to `image_size` x `image_size` and held in memory as uint8.
    Labels follow the sorted sub-folder names.

    Args:
        directory: the folder; each sub-folder's name is a class name.
        image_size: side in pixels that every image is resized to.
        seed: seed of the stratified held-out split.
        heldout_fraction: share of each class held out.
        color_mode: "rgb", "grayscale" or "rgba".

    Returns:
        An `ImageData` of uint8 images.

    Raises:
        DataError: when the folder is missing, contains no images in class
            sub-folders, or has a class too small to split.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(
            f"--data-dir {directory} is not a directory. Pass a folder "
            "with one sub-folder of images per class."
        )
    try:
        dataset = keras.utils.image_dataset_from_directory(
            directory,
            labels="inferred",
            label_mode="int",
            color_mode=color_mode,
            batch_size=None,
            image_size=(image_size, image_size),
            shuffle=False,
            verbose=False,
        )
    except ValueError as error:
        raise DataError(
            f"cannot read images from --data-dir {directory}: {error} "
            "Pass a folder with one sub-folder of .png, .jpg, .bmp or .gif "
            "images per class."
        ) from None
    class_names = tuple(dataset.class_names)
    if len(class_names) < 2:
        raise DataError(
            f"--data-dir {directory} has {len(class_names)} class "
            f"sub-folder(s) {list(class_names)}; classification needs at "
            "least 2."
        )
    # NOTE: the whole folder is held in memory, as CIFAR-10 is. That suits
    # folders up to CIFAR size: 50,000 RGB images of 32 x 32 are 150 MB.
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
        labels.append(label)
    x_train, y_train, x_heldout, y_heldout = stratified_split(
        np.stack(images),
        np.asarray(labels, dtype=np.int32),
        seed,
        heldout_fraction,
    )
    logger.info(
        "read %d images of %d classes from %s",
        len(images),
        len(class_names),
        directory,
    )
    return ImageData(
        name=directory.name or str(directory),
        x_train=x_train,
        y_train=y_train,
        x_heldout=x_heldout,
        y_heldout=y_heldout,
        class_names=class_names,
    )


def add_data_arguments(parser, digits_size=DIGITS_IMAGE_SIZE):
    """Add --dataset, --data-dir and --image-size to an argparse parser.

    `digits_size` is the --image-size default for digits, given in the help.
    """
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="digits",
        help=(
            "digits: scikit-learn's 8 x 8 digits, offline; cifar10: "
            "keras.datasets.cifar10, downloaded on first use (default: "
            "digits)"
        ),
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=(
            "train on a folder with one sub-folder of images per class "
            "instead of --dataset"
        ),
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="PIXELS",
        help=(
            "side in pixels that images are resized to: digits are "
            f"upsampled bilinearly from 8 (default: {digits_size}), folder "
            "images default to 32, cifar10 stays 32"
        ),
    )


def load_from_args(args, seed, digits_size=DIGITS_IMAGE_SIZE):
    """Load the data set that `add_data_arguments`' options name.

    `digits_size` is the side of digits images when --image-size is unset.

    Raises:
        DataError: when it cannot be loaded.
    """
    size = args.image_size
    if size is not None and size < 8:
        raise DataError(
            f"--image-size must be at least 8 pixels, the smallest input "
            f"of the CIFAR networks. Received: --image-size {size}"
        )
    if args.data_dir is not None:
        return load_image_folder(args.data_dir, size or 32, seed=seed)
    if args.dataset == "cifar10":
        if size not in (None, 32):
            raise DataError(
                "--image-size applies to digits and folders; CIFAR-10 "
                f"images stay 32 x 32. Received: --image-size {size}"
            )
        return load_cifar10()
    return load_digits(seed=seed, image_size=size or digits_size)
