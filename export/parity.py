"""Compare each artifact's outputs with the Keras model's on the same inputs."""

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """A bound on every output element: |artifact - keras| <= atol + rtol * m.

    `m` is the largest |keras| of that output over the batch, the output's
    scale. Rounding errors grow with the size of the activations they pass
    through, not with each element's own value, so an element near zero in
    an output of scale 600 may differ by 600 times more than in an output
    of scale 1.
    """

    name: str
    atol: float
    rtol: float

    def to_dict(self):
        return asdict(self)


# A float32 artifact runs the same arithmetic as Keras through other
# kernels (XNNPACK in LiteRT, MLAS in onnxruntime) that sum in another
# order, so each layer differs by a few units in the last place. Over 100+
# layers that stayed below 1e-5 of the output's scale on the networks in the
# tests; 1e-4 leaves a margin, while a wrong layer (a changed
# BatchNormalization epsilon, a dropped shortcut) errs by 1e-2 or more.
FLOAT32 = Tolerance("float32", atol=1e-4, rtol=1e-4)


@dataclass(frozen=True)
class QuantizedTolerance:
    """The accuracy a quantized artifact may give up against Keras.

    With labels, the artifact's accuracy may fall at most
    `max_accuracy_drop` (a fraction, 0.01 is one point) below the Keras
    model's. Without labels, at least `min_top1_agreement` of its top-1
    predictions must agree with the Keras model's.
    """

    name: str
    max_accuracy_drop: float
    min_top1_agreement: float

    def to_dict(self):
        return asdict(self)


# One point of accuracy, and 90% top-1 agreement where no labels give the
# right class. On random inputs a random-init network's top two classes are
# often close, so quantization noise flips more of them than on real data.
QUANTIZED = QuantizedTolerance(
    "quantized", max_accuracy_drop=0.01, min_top1_agreement=0.9
)

# Default inputs when the caller passes none: batch 7, so that a batch other
# than 1 runs, and batch 1 is checked on the first sample.
DEFAULT_BATCH = 7
DEFAULT_SEED = 0


class InputError(ValueError):
    """Inputs for the parity check that do not fit the model."""


def _random_array(info, batch, rng):
    shape = (batch, *info.shape[1:])
    dtype = np.dtype(info.dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        high = min(256, np.iinfo(dtype).max + 1)
        return rng.integers(0, high, shape).astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    raise InputError(
        f"Cannot make random inputs of dtype {info.dtype} for input "
        f"{info.name!r}; pass inputs explicitly."
    )


def make_inputs(inputs, batch=DEFAULT_BATCH, seed=DEFAULT_SEED):
    """Return random named inputs that fit the model's input signature.

    Float inputs are standard normal, which exercises negative values and
    both sides of every ReLU.

    Raises:
        InputError: when an input has a dynamic dimension besides the batch,
            so that no size can be chosen for it.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for info in inputs:
        if any(dim is None for dim in info.shape[1:]):
            raise InputError(
                f"Input {info.name!r} has shape {info.shape} with dynamic "
                "dimensions besides the batch; pass inputs of a chosen size "
                "(inputs=... or --inputs FILE.npy)."
            )
        feeds[info.name] = _random_array(info, batch, rng)
    return feeds


def _check_array(info, array, finite=True):
    array = np.asarray(array)
    if array.ndim != len(info.shape):
        raise InputError(
            f"Input {info.name!r} needs {len(info.shape)} dimensions with "
            f"shape {info.shape}; received shape {array.shape}."
        )
    for expected, actual in zip(info.shape[1:], array.shape[1:], strict=True):
        if expected is not None and expected != actual:
            raise InputError(
                f"Input {info.name!r} needs shape {info.shape}; received "
                f"shape {array.shape}."
            )
    if array.shape[0] < 1:
        raise InputError(f"Input {info.name!r} has an empty batch.")
    if not np.can_cast(array.dtype, info.dtype, casting="same_kind"):
        raise InputError(
            f"Input {info.name!r} needs dtype {info.dtype}; received "
            f"{array.dtype}, which does not cast to it safely."
        )
    array = array.astype(info.dtype)
    floating = np.issubdtype(array.dtype, np.floating)
    if finite and floating and not np.isfinite(array).all():
        raise InputError(
            f"Input {info.name!r} contains NaN or infinity; parity needs "
            "finite inputs."
        )
    return array


def prepare_inputs(inputs, given, finite=True):
    """Return named inputs checked against the signature `inputs`.

    Args:
        inputs: list of `TensorInfo` for the model's inputs.
        given: None for random inputs, an array for a single-input model,
            or a dict from input name to array.
        finite: reject NaN and infinity.

    Raises:
        InputError: on missing or unknown names, wrong rank, shape or dtype,
            non-finite values, or batch sizes that differ between inputs.
    """
    if given is None:
        return make_inputs(inputs)
    if not isinstance(given, dict):
        if len(inputs) != 1:
            names = [info.name for info in inputs]
            raise InputError(
                f"The model has {len(inputs)} inputs {names}; pass a dict "
                "from input name to array (an .npz file on the command line)."
            )
        given = {inputs[0].name: given}

    expected = {info.name for info in inputs}
    if set(given) != expected:
        raise InputError(
            f"Inputs must be named {sorted(expected)}; received "
            f"{sorted(given)}."
        )
    feeds = {
        info.name: _check_array(info, given[info.name], finite)
        for info in inputs
    }
    batches = {array.shape[0] for array in feeds.values()}
    if len(batches) > 1:
        raise InputError(f"Inputs have different batch sizes {batches}.")
    return feeds


def _top1_agreement(reference, candidate):
    if reference.ndim < 2 or reference.shape[-1] < 2:
        return None
    agree = np.argmax(reference, axis=-1) == np.argmax(candidate, axis=-1)
    return float(agree.mean())


@dataclass
class FormatParity:
    """Agreement of one artifact with the Keras model.

    Attributes:
        max_abs_error: the largest |artifact - keras| over all outputs and
            batch sizes.
        top1_agreement: fraction of samples whose argmax over the last axis
            agrees, over the largest batch; None for outputs that are not
            class scores.
        passed: every element within the tolerance.
        batch_sizes: the batch sizes that ran.
    """

    max_abs_error: float
    top1_agreement: float | None
    passed: bool
    batch_sizes: list

    def to_dict(self):
        return asdict(self)


def _batches(feeds):
    batch = next(iter(feeds.values())).shape[0]
    sizes = [1] if batch == 1 else [1, batch]
    return [
        {name: array[:size] for name, array in feeds.items()} for size in sizes
    ]


def compare(reference_runtime, runtime, feeds, tolerance):
    """Run both runtimes on batch 1 and the full batch of `feeds`.

    Returns:
        A `FormatParity`, whose `passed` records whether every element was
        within `tolerance`, and the artifact's outputs on the full batch.
    """
    max_error, passed, top1 = 0.0, True, None
    batches = _batches(feeds)
    for batch in batches:
        expected = reference_runtime(batch)
        actual = runtime(batch)
        outputs = actual
        if set(actual) != set(expected):
            raise ValueError(
                f"Artifact outputs {sorted(actual)} do not match the Keras "
                f"outputs {sorted(expected)}."
            )
        agreements = []
        for name, want in expected.items():
            got = np.asarray(actual[name])
            if got.shape != want.shape:
                raise ValueError(
                    f"Output {name!r} has shape {got.shape} in the artifact "
                    f"and {want.shape} in Keras."
                )
            error = np.abs(got.astype(np.float64) - want.astype(np.float64))
            if error.size:
                max_error = max(max_error, float(error.max()))
            scale = float(np.abs(want).max()) if want.size else 0.0
            bound = tolerance.atol + tolerance.rtol * scale
            passed = passed and bool(np.all(error <= bound))
            agreement = _top1_agreement(want, got)
            if agreement is not None:
                agreements.append(agreement)
        if agreements:
            top1 = min(agreements)
    parity = FormatParity(
        max_abs_error=max_error,
        top1_agreement=top1,
        passed=passed,
        batch_sizes=[next(iter(b.values())).shape[0] for b in batches],
    )
    return parity, outputs


def accuracy(outputs, labels):
    """Return the fraction of rows of `outputs` whose argmax is the label."""
    return float(np.mean(np.argmax(outputs, axis=-1) == labels))


def check_labels(labels, batch, output_infos):
    """Return `labels` as an int array of one class index per input sample.

    Raises:
        InputError: when the labels do not fit the inputs or the model has
            no single class-score output.
    """
    if labels is None:
        return None
    if len(output_infos) != 1 or len(output_infos[0].shape) != 2:
        raise InputError(
            "labels need a model with one output of class scores, shape "
            f"(batch, classes); the outputs are {output_infos}."
        )
    labels = np.asarray(labels)
    classes = output_infos[0].shape[1]
    if labels.shape != (batch,) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"labels must be {batch} integer class indices, one per input "
            f"sample; received dtype {labels.dtype} and shape {labels.shape}."
        )
    if labels.min() < 0 or (classes is not None and labels.max() >= classes):
        raise InputError(
            f"labels must be class indices in [0, {classes}); received values "
            f"from {labels.min()} to {labels.max()}."
        )
    return labels
