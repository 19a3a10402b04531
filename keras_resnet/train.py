"""Train a network on an in-memory image data set with Keras `model.fit`.

One training loop for every command in this package:

1. `Recipe` fixes the optimizer, schedule, batch size and augmentation.
2. `build_compiled_model` seeds the initializers, builds the network and
   compiles it. A distributed run calls it inside `strategy.scope()`.
3. `fit` feeds the data in an order fixed by the seed, trains with
   `model.fit` and progress bars, and returns a `TrainResult`.

After every epoch `ErrorEvaluation` measures the error on the training set
and on the held-out set in a separate pass in inference mode, without
augmentation: BatchNormalization uses its moving statistics and the
weights are those at the epoch's end. The running accuracy that `fit`
reports averages over an epoch of changing weights, augmented images and
batch statistics, and is recorded beside it as `running_error`.

Run `python -m keras_resnet.train --help` to train one network.
"""

import argparse
import csv
import dataclasses
import hashlib
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_resnet import data as image_data
from keras_resnet import distribute
from keras_resnet.cifar import blocks_per_stage
from keras_resnet.models import plain, resnet

logger = logging.getLogger(__name__)

# Pixels of zero padding before the random crop of the CIFAR augmentation.
CROP_PADDING = 4

EVAL_BATCH_SIZE = 500


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to train: SGD with momentum and a step schedule.

    The learning rate is `warmup_learning_rate` for the first
    `warmup_fraction` of the total steps, then `learning_rate`, multiplied
    by `decay_factor` once each fraction in `decay_at` of the steps has
    run. Fractions rather than step counts keep the schedule's shape when
    --epochs changes the length of a run.

    Attributes:
        epochs: passes over the training set.
        batch_size: global batch size, summed over all replicas.
        learning_rate: base learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty coefficient: each convolution and Dense
            kernel w adds weight_decay * w to its gradient, as weight
            decay in Caffe and PyTorch's SGD does. BatchNormalization
            parameters and biases are not decayed.
        decay_at: fractions of the total steps where the rate decays.
        decay_factor: factor applied at each of those points.
        warmup_fraction: share of the total steps at
            `warmup_learning_rate` before the base rate; 0 for none.
        warmup_learning_rate: learning rate during the warm-up.
        augment: pad by `CROP_PADDING` zeros, take a random crop of the
            original size and flip horizontally at random.
        max_steps: stop after this many steps, inside the last epoch, or
            None to run every step of `epochs`.
    """

    epochs: int
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_at: tuple = (0.5, 0.75)
    decay_factor: float = 0.1
    warmup_fraction: float = 0.0
    warmup_learning_rate: float = 0.01
    augment: bool = False
    max_steps: int | None = None

    def total_steps(self, train_size):
        """Return the optimizer steps that training on `train_size` runs."""
        steps = self.epochs * steps_per_epoch(train_size, self.batch_size)
        if self.max_steps is not None:
            steps = min(steps, self.max_steps)
        return steps

    def learning_rate_schedule(self, total_steps):
        """Return a `PiecewiseConstantDecay`, or a float for one phase."""
        # Phases as (first step, rate). A phase given by a fraction f
        # starts after round(f * total_steps) steps.
        phases = [(0, self.warmup_learning_rate)]
        phases.append(
            (round(self.warmup_fraction * total_steps), self.learning_rate)
        )
        rate = self.learning_rate
        for fraction in self.decay_at:
            rate *= self.decay_factor
            phases.append((round(fraction * total_steps), rate))

        # A phase of no steps, such as the warm-up when warmup_fraction is
        # 0 or two decays in a very short run, is dropped.
        nonempty_phases = []
        for first_step, phase_rate in phases:
            while nonempty_phases and nonempty_phases[-1][0] >= first_step:
                nonempty_phases.pop()
            nonempty_phases.append((first_step, phase_rate))
        if len(nonempty_phases) == 1:
            return nonempty_phases[0][1]

        # The schedule reads `optimizer.iterations`, the number of steps
        # already run, and keeps value i while it is <= boundary i, so a
        # phase that starts at step s needs the boundary s - 1 before it.
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [first_step - 1 for first_step, _ in nonempty_phases[1:]],
            [phase_rate for _, phase_rate in nonempty_phases],
        )

    def validate(self):
        """Raise ValueError naming the first invalid field."""
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1. Received: {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(
                f"batch_size must be >= 1. Received: {self.batch_size}"
            )
        if not self.learning_rate > 0:
            raise ValueError(
                f"learning_rate must be > 0. Received: {self.learning_rate}"
            )
        fractions = list(self.decay_at)
        if any(not 0 < f < 1 for f in fractions) or fractions != sorted(
            fractions
        ):
            raise ValueError(
                "decay_at must contain increasing fractions of the total "
                f"steps in (0, 1). Received: {self.decay_at}"
            )
        warmup_end = fractions[0] if fractions else 1.0
        if not 0 <= self.warmup_fraction < warmup_end:
            raise ValueError(
                "warmup_fraction must be >= 0 and below the first decay "
                f"fraction, {warmup_end}. Received: {self.warmup_fraction}"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(
                f"max_steps must be >= 1 or None. Received: {self.max_steps}"
            )


@dataclasses.dataclass
class TrainResult:
    """The result of `fit`.

    Attributes:
        history: per-epoch lists keyed by "epoch", "step",
            "learning_rate", "train_error", "heldout_error",
            "running_error", "train_loss", "heldout_loss",
            "running_loss" and "seconds". Errors are fractions in [0, 1].
        steps: optimizer steps run, read from `optimizer.iterations`.
        data_order_sha256: SHA-256 of the example order of all epochs.
        seconds: wall time of `fit`, in seconds.
        initial_epoch: epochs restored from a backup before this run; the
            history starts after them.
    """

    history: dict
    steps: int
    data_order_sha256: str
    seconds: float
    initial_epoch: int = 0


def steps_per_epoch(train_size, batch_size):
    """Return the batches of an epoch; the last one may be smaller."""
    return math.ceil(train_size / batch_size)


def epoch_orders(train_size, epochs, seed):
    """Return an (epochs, train_size) int32 array: one permutation per epoch.

    The permutations depend only on `seed`, so every model trained with the
    same seed on the same data is fed the same examples in the same order.
    """
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.permutation(train_size).astype(np.int32) for _ in range(epochs)]
    )


def order_digest(orders):
    """Return the SHA-256 hex digest of an `epoch_orders` array."""
    return hashlib.sha256(
        np.ascontiguousarray(orders, dtype="<i4").tobytes()
    ).hexdigest()


def weights_digest(model):
    """Return the SHA-256 hex digest of a model's weights, in layer order."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight, dtype="<f4").tobytes())
    return digest.hexdigest()


def channel_statistics(images):
    """Return per-channel (mean, std) of NHWC images as float32 arrays."""
    images = images.astype(np.float64)
    mean = images.mean(axis=(0, 1, 2))
    std = np.maximum(images.std(axis=(0, 1, 2)), 1e-6)
    return mean.astype(np.float32), std.astype(np.float32)


def shard_by_data(dataset):
    """Set `dataset` to be split by elements across workers.

    Under MultiWorkerMirroredStrategy, `model.fit` passes the data set to
    `strategy.experimental_distribute_dataset`, which splits each global
    batch into one slice per replica and gives each worker the slices of
    its replicas. The default policy, AUTO, first tries to give each
    worker its own files. In-memory data sets have no files, so DATA is
    set here, which avoids that attempt and its warning.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def make_train_dataset(
    x, y, orders, batch_size, statistics, augment, seed, first_epoch=0
):
    """Return a `tf.data.Dataset` of every training batch of every epoch.

    Epoch e feeds the examples `x[orders[e]]` in batches of `batch_size`;
    no batch spans two epochs. The stream starts at epoch `first_epoch`,
    where a run resumed from a backup goes on. Images are standardized
    with the per-channel `statistics` (mean, std). With `augment`, each
    image is zero-padded by `CROP_PADDING` pixels, randomly cropped back
    and randomly flipped. Stateless random ops seeded by `seed` and the
    example's position in the stream of all epochs draw the crop and the
    flip, so the augmentation is the same for every model, like the
    order, and the same after a resume.
    """
    epochs, train_size = orders.shape
    height, width, channels = x.shape[1:]
    images = tf.constant(x)
    labels = tf.constant(y, dtype=tf.int32)
    mean, std = (tf.constant(value, tf.float32) for value in statistics)
    positions = np.arange(epochs * train_size, dtype=np.int64).reshape(
        orders.shape
    )

    def load(position, index):
        image = (tf.cast(tf.gather(images, index), tf.float32) - mean) / std
        if augment:
            image = tf.pad(
                image,
                [[CROP_PADDING, CROP_PADDING], [CROP_PADDING, CROP_PADDING]]
                + [[0, 0]],
            )
            crop_seed = tf.stack([tf.constant(seed, tf.int64), 2 * position])
            image = tf.image.stateless_random_crop(
                image, (height, width, channels), seed=crop_seed
            )
            image = tf.image.stateless_random_flip_left_right(
                image, seed=crop_seed + [0, 1]
            )
        return image, tf.gather(labels, index)

    def epoch_batches(epoch_positions, epoch_order):
        return (
            tf.data.Dataset.from_tensor_slices((epoch_positions, epoch_order))
            .map(load, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
        )

    dataset = (
        tf.data.Dataset.from_tensor_slices(
            (positions[first_epoch:], orders[first_epoch:])
        )
        .flat_map(epoch_batches)
        .prefetch(tf.data.AUTOTUNE)
    )
    return shard_by_data(dataset)


def make_eval_dataset(x, y, statistics, batch_size=EVAL_BATCH_SIZE):
    """Return a batched `tf.data.Dataset` of standardized, unaugmented data."""
    mean, std = (tf.constant(value, tf.float32) for value in statistics)

    def standardize(image, label):
        return (tf.cast(image, tf.float32) - mean) / std, label

    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
        .batch(batch_size)
        .map(standardize, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    return shard_by_data(dataset)


def add_weight_decay(model, weight_decay):
    """Put an L2 regularizer on every convolution and Dense kernel.

    Keras' L2(l2) adds 2 * l2 * w to the gradient, so l2 is half of
    `weight_decay`. Call before `compile`.
    """
    if weight_decay <= 0:
        return 0
    regularizer = keras.regularizers.L2(weight_decay / 2)
    kernels = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and kernel.trainable:
            kernel.regularizer = regularizer
            kernels += 1
    return kernels


def build_compiled_model(build, recipe, total_steps, seed):
    """Seed the initializers, build a model with `build()` and compile it.

    Run this inside `strategy.scope()` to place the variables with a
    `tf.distribute` strategy. Under a strategy of more than one replica,
    BatchNormalization layers normalize with the statistics of the whole
    global batch; see `distribute.synchronize_batch_norm`. Models built
    with the same `seed` by builders that create the same weighted layers
    in the same order get the same initial weights.

    Args:
        build: a callable taking no arguments and returning an uncompiled
            `keras.Model` with softmax outputs.
        recipe: the `Recipe`.
        total_steps: steps the run will take, for the learning rate
            schedule; see `Recipe.total_steps`.
        seed: seed of Keras, TensorFlow, NumPy and Python's random.

    Returns:
        The compiled model.
    """
    recipe.validate()
    keras.utils.set_random_seed(seed)
    model = build()
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        distribute.synchronize_batch_norm(model)
    add_weight_decay(model, recipe.weight_decay)
    optimizer = keras.optimizers.SGD(
        learning_rate=recipe.learning_rate_schedule(total_steps),
        momentum=recipe.momentum,
    )
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


class ErrorEvaluation(keras.callbacks.Callback):
    """Evaluate training and held-out error at each epoch's end.

    Writes into the epoch's logs, so the progress bar and the History
    callback show them: `train_error` and `heldout_error` (inference
    mode, no augmentation), `running_error` (1 - fit's running
    accuracy), the matching losses, `step` and `learning_rate`. Place it
    before other callbacks that read those keys.
    """

    def __init__(self, train_dataset, heldout_dataset):
        super().__init__()
        self.datasets = {"train": train_dataset, "heldout": heldout_dataset}
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["running_error"] = 1.0 - float(logs.get("accuracy", np.nan))
        logs["running_loss"] = float(logs.get("loss", np.nan))
        for name, dataset in self.datasets.items():
            results = self.model.evaluate(dataset, verbose=0, return_dict=True)
            logs[f"{name}_error"] = 1.0 - float(results["accuracy"])
            logs[f"{name}_loss"] = float(results["loss"])
        optimizer = self.model.optimizer
        logs["step"] = int(optimizer.iterations.numpy())
        logs["learning_rate"] = float(np.asarray(optimizer.learning_rate))
        logs["seconds"] = time.perf_counter() - self.start


class StopAtStep(keras.callbacks.Callback):
    """Stop training once the optimizer has run `max_steps` steps."""

    def __init__(self, max_steps):
        super().__init__()
        self.max_steps = max_steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.max_steps:
            self.model.stop_training = True


HISTORY_KEYS = (
    "epoch",
    "step",
    "learning_rate",
    "train_error",
    "heldout_error",
    "running_error",
    "train_loss",
    "heldout_loss",
    "running_loss",
    "seconds",
)


def restore_backup(model, backup, epoch_steps):
    """Load the state that `backup` saved, if any; return its epochs.

    `BackupAndRestore` restores the weights, the optimizer state and the
    epoch count only once `fit` begins, after `fit` has taken the data
    set. Calling its `on_train_begin` before `fit` gives the restored
    epoch, where the data stream must start, and `fit` then loads the same
    files again.

    Args:
        model: the compiled model.
        backup: a `keras.callbacks.BackupAndRestore` that saves once per
            epoch.
        epoch_steps: optimizer steps of one epoch.

    Returns:
        The epochs that the backup had completed; 0 when there is none.
    """
    backup.set_model(model)
    with model.distribute_strategy.scope():
        backup.on_train_begin()
    steps = int(model.optimizer.iterations.numpy())
    distribute.check_backups_agree(model.distribute_strategy, steps)
    # Backups are taken at epoch ends, so `steps` is a whole number of
    # epochs, unless the backup is of the last epoch cut short by
    # max_steps, after which training stops anyway.
    return math.ceil(steps / epoch_steps)


def fit(model, data, recipe, seed, verbose=1, callbacks=(), backup_dir=None):
    """Train a compiled model on `data` with `model.fit`.

    Args:
        model: a model from `build_compiled_model`.
        data: a `keras_resnet.data.ImageData`.
        recipe: the `Recipe` the model was compiled with.
        seed: seed of the data order and of the augmentation.
        verbose: `model.fit` verbosity: 1 for progress bars, 2 for one
            line per epoch, 0 for none.
        callbacks: further Keras callbacks; they see the keys that
            `ErrorEvaluation` adds to the epoch logs.
        backup_dir: directory of a `keras.callbacks.BackupAndRestore`
            that saves the training state at each epoch's end, or None
            for no backup. A backup found there is restored and training
            goes on from the epoch after it, with that epoch's data order
            and augmentation. The directory is deleted when training
            completes.

    Returns:
        A `TrainResult`.
    """
    recipe.validate()
    train_size = len(data.x_train)
    epoch_steps = steps_per_epoch(train_size, recipe.batch_size)
    all_callbacks = []
    initial_epoch = 0
    if backup_dir is not None:
        backup = keras.callbacks.BackupAndRestore(
            str(backup_dir), save_freq="epoch"
        )
        initial_epoch = restore_backup(model, backup, epoch_steps)
        if initial_epoch:
            logger.warning(
                "resumed %s from the backup in %s after epoch %d, step %d",
                model.name,
                backup_dir,
                initial_epoch,
                int(model.optimizer.iterations.numpy()),
            )

    statistics = channel_statistics(data.x_train)
    orders = epoch_orders(train_size, recipe.epochs, seed)
    train_dataset = make_train_dataset(
        data.x_train,
        data.y_train,
        orders,
        recipe.batch_size,
        statistics,
        recipe.augment,
        seed,
        first_epoch=min(initial_epoch, recipe.epochs),
    )
    evaluation = ErrorEvaluation(
        make_eval_dataset(data.x_train, data.y_train, statistics),
        make_eval_dataset(data.x_heldout, data.y_heldout, statistics),
    )
    all_callbacks.append(evaluation)
    if recipe.max_steps is not None:
        all_callbacks.append(StopAtStep(recipe.max_steps))
    all_callbacks.extend(callbacks)
    # Last, so that the backup of an epoch follows every other callback.
    if backup_dir is not None:
        all_callbacks.append(backup)

    logger.info(
        "training %s for %d steps of batch %d",
        model.name,
        recipe.total_steps(train_size),
        recipe.batch_size,
    )
    start = time.perf_counter()
    history = model.fit(
        train_dataset,
        epochs=recipe.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=epoch_steps,
        callbacks=all_callbacks,
        shuffle=False,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    epochs_run = len(history.history.get("train_error", ()))
    table = {
        "epoch": list(range(initial_epoch + 1, initial_epoch + epochs_run + 1))
    }
    # Six significant digits keep the CSV readable.
    for key in HISTORY_KEYS[1:]:
        values = history.history.get(key, ())
        table[key] = [float(f"{value:.6g}") for value in values]
    table["step"] = [int(step) for step in table["step"]]
    return TrainResult(
        history=table,
        steps=int(model.optimizer.iterations.numpy()),
        data_order_sha256=order_digest(orders),
        seconds=seconds,
        initial_epoch=initial_epoch,
    )


# Recipes per data source; the command-line options override fields.
RECIPES = {
    # He et al. (2015), section 4.2: SGD with momentum 0.9, weight decay
    # 1e-4, batch 128, rate 0.1 divided by 10 at 32k and 48k iterations,
    # stopped at 64k, 4-pixel padding, random 32 x 32 crops and flips.
    # 164 epochs of 391 steps pass 64,000 steps, where training stops.
    "cifar10": Recipe(
        epochs=164,
        max_steps=64_000,
        decay_at=(0.5, 0.75),
        augment=True,
    ),
    # The same, scaled to 20 epochs of 12 steps, with the first 10% (24
    # steps) at 0.01. At 0.1 from the first step ResNet-56 diverged with
    # seed 1: its clean training loss was 2e8 after one epoch and its
    # training error 26% at the end.
    "digits": Recipe(epochs=20, warmup_fraction=0.1),
    "folder": Recipe(epochs=30, augment=True),
}


def recipe_for(data_source, **overrides):
    """Return the `RECIPES` entry with the fields in `overrides` replaced.

    An `epochs` override drops `max_steps`, so the run takes every step of
    those epochs and the decays scale with it.
    """
    recipe = RECIPES[data_source]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in overrides:
        overrides.setdefault("max_steps", None)
    return dataclasses.replace(recipe, **overrides)


def data_source(args):
    """Return the `RECIPES` key for parsed data options."""
    return "folder" if args.data_dir is not None else args.dataset


def add_recipe_arguments(parser):
    """Add --epochs, --batch-size and --learning-rate to a parser."""
    parser.add_argument(
        "--epochs",
        type=int,
        help=(
            "passes over the training set; the learning rate still drops "
            "after 50%% and 75%% of the steps (default: "
            f"{RECIPES['digits'].epochs} for digits, "
            f"{RECIPES['folder'].epochs} for --data-dir, "
            f"{RECIPES['cifar10'].max_steps:,} steps for cifar10)"
        ),
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="global batch size (default: 128)",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        metavar="RATE",
        help="base learning rate of SGD (default: 0.1)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        metavar="FRACTION",
        dest="warmup_fraction",
        help=(
            "share of the steps at --warmup-learning-rate before the base "
            f"rate (default: {RECIPES['digits'].warmup_fraction} for "
            f"digits, {RECIPES['cifar10'].warmup_fraction} for cifar10 and "
            "--data-dir)"
        ),
    )
    parser.add_argument(
        "--warmup-learning-rate",
        type=float,
        metavar="RATE",
        help="learning rate of the warm-up (default: 0.01)",
    )


def write_history_csv(path, rows, columns):
    """Write dict rows to a CSV file with the given column order."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def history_rows(history):
    """Return `TrainResult.history` as a list of one dict per epoch."""
    return [
        {key: history[key][index] for key in HISTORY_KEYS}
        for index in range(len(history["epoch"]))
    ]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m keras_resnet.train",
        description="Train one CIFAR-family network, plain or residual.",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=20,
        help="weighted layers, 6n + 2 (default: 20)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="train the plain twin, without shortcuts",
    )
    image_data.add_data_arguments(parser)
    add_recipe_arguments(parser)
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=(
            "write history.csv and model.keras to this directory; with "
            "several workers only the chief writes there"
        ),
    )
    parser.add_argument(
        "--export",
        action="store_true",
        help=(
            "export the trained model to OUT/export as SavedModel, TFLite "
            "and ONNX and check each against it on the held-out images "
            "(needs --out)"
        ),
    )
    parser.add_argument(
        "--strategy",
        choices=distribute.STRATEGIES,
        default="default",
        help=(
            "tf.distribute strategy: default (one device), mirrored "
            "(MirroredStrategy over all local devices) or multi-worker "
            "(MultiWorkerMirroredStrategy over the processes that the "
            "TF_CONFIG environment variable lists; start the same command "
            "in each) (default: default)"
        ),
    )
    parser.add_argument(
        "--backup-dir",
        type=Path,
        metavar="DIR",
        help=(
            "back up the training state to DIR/TASK-INDEX, such as "
            "DIR/worker-0, at each epoch's end and resume from there after "
            "a restart; deleted when training completes (default: "
            "OUT/backup with --out, else no backup)"
        ),
    )
    args = parser.parse_args(argv)
    if args.export and args.out is None:
        parser.error("--export needs --out DIR")
    if args.export:
        # Checked before training, which takes minutes and replaces
        # model.keras, because export_model keeps a non-empty directory
        # and the run would otherwise end in a FileExistsError.
        export_dir = args.out / "export"
        if export_dir.exists() and any(export_dir.iterdir()):
            parser.error(
                f"--export writes {export_dir}, which already exists and "
                "is not empty; delete it or pass another --out"
            )
    return args


def backup_directory(args, role):
    """Return this worker's backup directory and its parent, or Nones.

    Every worker backs up to its own directory, because Keras'
    BackupAndRestore writes fixed file names and two workers sharing one
    directory would overwrite each other's files.
    """
    root = args.backup_dir
    if root is None and args.out is not None:
        root = args.out / "backup"
    if root is None:
        return None, None
    return root / role.name, root


def preprocessing_metadata(dataset, statistics):
    """Return the `export.metadata` preprocessing of the training inputs.

    Training standardizes images with the per-channel `statistics`.
    Float images (digits) are in [0, 1] and uint8 images (CIFAR-10,
    folders) in 0..255, so an 8-bit pixel p becomes (p * scale - mean) /
    std with scale 1 / 255 or 1.
    """
    height, width, channels = dataset.image_shape
    mean, std = statistics
    return {
        "height": height,
        "width": width,
        "channels": channels,
        "scale": 1.0 if dataset.x_train.dtype == np.uint8 else 1 / 255,
        "mean": [float(value) for value in mean],
        "std": [float(value) for value in std],
    }


def export_trained_model(model_path, out_dir, dataset):
    """Export the saved model with `export.export_model`; return the report.

    The `.keras` file is loaded again outside any strategy scope, so the
    converters see ordinary variables and run no collective operation.
    The other workers therefore need not take part. The held-out images,
    standardized as in training, are the parity inputs.
    """
    import export

    model = keras.models.load_model(model_path)
    statistics = channel_statistics(dataset.x_train)
    mean, std = statistics
    inputs = ((dataset.x_heldout.astype(np.float32) - mean) / std).astype(
        np.float32
    )
    return export.export_model(
        model,
        out_dir,
        inputs=inputs,
        labels=dataset.y_heldout,
        class_labels=list(dataset.class_names),
        preprocessing=preprocessing_metadata(dataset, statistics),
    )


def save_outputs(model, dataset, result, args, role):
    """Write model.keras, history.csv and the exports; return the exit code.

    Every worker calls `model.save`: the chief into `args.out`, the
    others into a temporary directory that they delete. Reading a
    variable that is synchronized on read, such as a metric's, runs an
    all-reduce that needs every worker, so a save by the chief alone
    could wait forever. The `.keras` files of these models contain only
    layer and optimizer variables, which are mirrored and read locally,
    so for them the other workers' saves are a safeguard.
    """
    if not role.is_chief:
        scratch = Path(tempfile.mkdtemp(prefix=f"keras_resnet_{role.name}_"))
        try:
            model.save(scratch / "model.keras")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    write_history_csv(
        args.out / "history.csv",
        history_rows(result.history),
        HISTORY_KEYS,
    )
    model.save(args.out / "model.keras")
    print(f"wrote {args.out}/history.csv and {args.out}/model.keras")
    if not args.export:
        return 0

    report = export_trained_model(
        args.out / "model.keras", args.out / "export", dataset
    )
    if not report["passed"]:
        print(
            f"error: the export to {args.out}/export failed its parity "
            f"check; see {args.out}/export/report.json",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {args.out}/export; every format passed its parity check")
    return 0


def describe_result(model, result):
    """Return the one-line summary of a training run."""
    if not result.history["epoch"]:
        return (
            f"{model.name}: the backup had already completed all "
            f"{result.initial_epoch} epochs ({result.steps} steps)"
        )
    resumed = (
        f", resumed after epoch {result.initial_epoch}"
        if result.initial_epoch
        else ""
    )
    return (
        f"{model.name}: training error {result.history['train_error'][-1]:.2%}"
        f", held-out error {result.history['heldout_error'][-1]:.2%} after "
        f"{result.steps} steps in {result.seconds:.0f} s{resumed}"
    )


def main(argv=None):
    """Train one network from the command line; return the exit code."""
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    try:
        # MultiWorkerMirroredStrategy must be created before any other
        # TensorFlow operation, and loading the data runs some.
        strategy = distribute.make_strategy(args.strategy)
    except distribute.StrategyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    role = distribute.worker_role(strategy)
    try:
        blocks_per_stage(args.depth)
        dataset = image_data.load_from_args(args, args.seed)
        recipe = recipe_for(
            data_source(args),
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_fraction=args.warmup_fraction,
            warmup_learning_rate=args.warmup_learning_rate,
        )
        recipe.validate()
    except (image_data.DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(dataset.describe(), file=sys.stderr)
    print(
        f"strategy {args.strategy}: {strategy.num_replicas_in_sync} "
        f"replica(s) in {role.workers} worker(s); this is {role.name}"
        f"{', the chief' if role.is_chief else ''}",
        file=sys.stderr,
    )

    builder = plain if args.plain else resnet
    with strategy.scope():
        model = build_compiled_model(
            lambda: builder(
                args.depth,
                input_shape=dataset.image_shape,
                classes=dataset.classes,
            ),
            recipe,
            recipe.total_steps(len(dataset.x_train)),
            args.seed,
        )
    backup_dir, backup_root = backup_directory(args, role)
    try:
        result = fit(model, dataset, recipe, args.seed, backup_dir=backup_dir)
    except tf.errors.UnavailableError as error:
        # A worker that stops (killed, preempted, crashed) stops sending
        # heartbeats, and TensorFlow's coordination service then aborts
        # the collective operations of every other worker with this
        # error. MultiWorkerMirroredStrategy cannot take a new process in
        # the place of a running one, so the whole cluster restarts.
        if role.workers == 1:
            raise
        reason = " ".join(error.message.splitlines()[:2])
        resume = (
            f"from its backup in {backup_root}"
            if backup_root is not None
            else "from epoch 0, because --out and --backup-dir are unset"
        )
        print(
            f"error: {role.name} stopped because another worker failed: "
            f"{reason} Restart every worker with the same command; each "
            f"resumes {resume}.",
            file=sys.stderr,
        )
        return 1
    print(describe_result(model, result))
    # Equal on every worker after synchronous training.
    print(f"{model.name}: weights sha256 {weights_digest(model)}")

    code = 0
    if args.out is not None:
        code = save_outputs(model, dataset, result, args, role)
    if args.backup_dir is None and backup_root is not None:
        # BackupAndRestore deleted this worker's directory; the default
        # parent goes once every worker's is gone.
        try:
            backup_root.rmdir()
        except OSError:
            pass
    return code


if __name__ == "__main__":
    sys.exit(main())
