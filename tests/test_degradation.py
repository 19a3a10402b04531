"""The training loop and the plain-against-residual degradation experiment."""

import csv
import json
import math
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from keras_resnet import data, train
from keras_resnet.experiments import degradation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

REQUIRED_COLUMNS = (
    "model",
    "depth",
    "residual",
    "epoch",
    "train_error",
    "heldout_error",
)

FAST_DEPTHS = (8, 14)
FAST_EPOCHS = 2
FAST_TRAIN_SIZE = 300
FAST_BATCH = 128


def run_experiment(cwd, *args, timeout=300, env=None):
    """Run the experiment's command in a fresh interpreter from `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "keras_resnet.experiments.degradation"]
        + [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ if env is None else env, TF_CPP_MIN_LOG_LEVEL="2"),
    )


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, list(reader)


# TensorFlow's C++ runtime logs to stderr as it loads, in absl's format
# ("I0000 00:00:1796370113.05 24982 port.cc:153] ..."), and with TensorFlow
# 2.21 TF_CPP_MIN_LOG_LEVEL=2 does not always silence it. Those lines are
# not the command's output.
TENSORFLOW_LOG = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d\d"
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|To enable the following instructions: )"
)


def command_lines(stderr):
    """Return the non-empty stderr lines that are not TensorFlow's logs."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not TENSORFLOW_LOG.match(line)
    ]


# The fast run: two epochs of Plain/ResNet-8 and -14 on 300 digits.


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("degradation")
    result = run_experiment(
        cwd,
        "--depths",
        *FAST_DEPTHS,
        "--epochs",
        FAST_EPOCHS,
        "--image-size",
        8,
        "--train-size",
        FAST_TRAIN_SIZE,
        "--quiet",
        "--out",
        "out",
    )
    return result, cwd / "out"


def test_fast_run_exits_zero(fast_run):
    result, _ = fast_run
    assert result.returncode == 0, result.stderr


def test_fast_run_csv_columns(fast_run):
    _, out = fast_run
    columns, _ = read_csv(out / "history.csv")
    for column in REQUIRED_COLUMNS:
        assert column in columns


def test_fast_run_csv_rows(fast_run):
    _, out = fast_run
    _, rows = read_csv(out / "history.csv")
    expected = {
        (f"{name}-{depth}", str(depth), str(name == "ResNet"), str(epoch))
        for depth in FAST_DEPTHS
        for name in ("Plain", "ResNet")
        for epoch in range(1, FAST_EPOCHS + 1)
    }
    found = [
        (row["model"], row["depth"], row["residual"], row["epoch"])
        for row in rows
    ]
    assert len(found) == len(expected)
    assert set(found) == expected


def test_fast_run_errors_are_fractions(fast_run):
    _, out = fast_run
    _, rows = read_csv(out / "history.csv")
    for row in rows:
        for column in ("train_error", "heldout_error", "running_error"):
            assert 0.0 <= float(row[column]) <= 1.0, row


def test_fast_run_png_signature(fast_run):
    _, out = fast_run
    assert (out / "degradation.png").read_bytes()[:8] == PNG_SIGNATURE


def test_fast_run_png_reads(fast_run):
    _, out = fast_run
    with Image.open(out / "degradation.png") as image:
        image.verify()
    with Image.open(out / "degradation.png") as image:
        width, height = image.size
    assert width > height >= 300


def test_fast_run_png_reads_in_matplotlib(fast_run):
    from matplotlib import image as mpimg

    _, out = fast_run
    pixels = mpimg.imread(out / "degradation.png")
    assert pixels.ndim == 3
    assert pixels.shape[0] >= 300
    # A blank canvas would be a single colour.
    assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.05


def test_fast_run_twins_share_data_order(fast_run):
    _, out = fast_run
    runs = json.loads((out / "runs.json").read_text())["runs"]
    for depth in FAST_DEPTHS:
        digests = {
            run["data_order_sha256"] for run in runs if run["depth"] == depth
        }
        assert len(digests) == 1, runs


def test_fast_run_data_order_is_seeded(fast_run):
    _, out = fast_run
    runs = json.loads((out / "runs.json").read_text())["runs"]
    orders = train.epoch_orders(FAST_TRAIN_SIZE, FAST_EPOCHS, seed=0)
    expected = train.order_digest(orders)
    assert {run["data_order_sha256"] for run in runs} == {expected}


def test_fast_run_twins_share_steps(fast_run):
    _, out = fast_run
    runs = json.loads((out / "runs.json").read_text())["runs"]
    steps = FAST_EPOCHS * math.ceil(FAST_TRAIN_SIZE / FAST_BATCH)
    assert [run["steps"] for run in runs] == [steps] * len(runs)


def test_fast_run_twins_share_initial_weights(fast_run):
    _, out = fast_run
    runs = json.loads((out / "runs.json").read_text())["runs"]
    for depth in FAST_DEPTHS:
        digests = {
            run["initial_weights_sha256"]
            for run in runs
            if run["depth"] == depth
        }
        assert len(digests) == 1, runs


def test_fast_run_csv_steps_match(fast_run):
    _, out = fast_run
    _, rows = read_csv(out / "history.csv")
    per_epoch = math.ceil(FAST_TRAIN_SIZE / FAST_BATCH)
    for row in rows:
        assert int(row["step"]) == int(row["epoch"]) * per_epoch, row


def test_fast_run_prints_table(fast_run):
    result, _ = fast_run
    for depth in FAST_DEPTHS:
        for name in ("Plain", "ResNet"):
            rows = [
                line
                for line in result.stdout.splitlines()
                if line.startswith(f"{name}-{depth} ")
            ]
            assert len(rows) == 1, result.stdout


# A folder of PNG images, one sub-folder per class.


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """Write 12 digits per class as 8 x 8 grayscale PNG files."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digit_pngs") / "digits"
    digits = load_digits()
    for label in range(10):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        indices = np.flatnonzero(digits.target == label)[:12]
        for index in indices:
            pixels = (digits.images[index] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def test_image_folder_loads(digit_folder):
    dataset = data.load_image_folder(digit_folder, image_size=8, seed=0)
    assert dataset.class_names == tuple(f"class_{i}" for i in range(10))
    assert dataset.x_train.shape == (96, 8, 8, 3)
    assert dataset.x_heldout.shape == (24, 8, 8, 3)
    assert sorted(np.bincount(dataset.y_heldout)) == [2] * 6 + [3] * 4


def test_image_folder_keeps_pixels(digit_folder):
    dataset = data.load_image_folder(digit_folder, image_size=8, seed=0)
    assert dataset.x_train.dtype == np.uint8
    assert dataset.x_train.max() == 255


def test_data_dir_run(digit_folder, tmp_path):
    result = run_experiment(
        tmp_path,
        "--data-dir",
        digit_folder,
        "--depths",
        8,
        "--epochs",
        1,
        "--image-size",
        8,
        "--quiet",
        "--out",
        "out",
    )
    assert result.returncode == 0, result.stderr
    _, rows = read_csv(tmp_path / "out" / "history.csv")
    assert [row["model"] for row in rows] == ["Plain-8", "ResNet-8"]
    document = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert document["dataset"]["train_size"] == 96
    assert document["dataset"]["image_shape"] == [8, 8, 3]


def test_data_dir_missing_exits_two(tmp_path):
    result = run_experiment(
        tmp_path, "--data-dir", tmp_path / "missing", "--out", "out"
    )
    assert result.returncode == 2, result.stderr
    assert command_lines(result.stderr) == [
        f"error: --data-dir {tmp_path / 'missing'} is not a directory. Pass "
        "a folder with one sub-folder of images per class."
    ]
    assert not (tmp_path / "out").exists()


# CIFAR-10 without network: load_data() fails and the command reports it.


def closed_local_port():
    """Return a loopback port that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cifar10_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cifar10")
    # An empty KERAS_HOME has no cached archive, and a proxy on a closed
    # loopback port refuses the download at once on any network, so the
    # run neither succeeds from a cache nor waits on a real connection.
    proxy = f"http://127.0.0.1:{closed_local_port()}"
    env = dict(
        os.environ,
        KERAS_HOME=str(cwd / "keras_home"),
        http_proxy=proxy,
        https_proxy=proxy,
        HTTP_PROXY=proxy,
        HTTPS_PROXY=proxy,
    )
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    start = time.perf_counter()
    result = run_experiment(
        cwd, "--dataset", "cifar10", "--out", "out", timeout=120, env=env
    )
    return result, time.perf_counter() - start, cwd


def test_cifar10_failure_exits_two(cifar10_run):
    result, _, _ = cifar10_run
    assert result.returncode == 2, result.stderr


def test_cifar10_failure_one_line(cifar10_run):
    result, _, _ = cifar10_run
    lines = command_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "error: keras.datasets.cifar10.load_data() failed: "
    )
    assert "--data-dir" in lines[0]


def test_cifar10_failure_no_traceback(cifar10_run):
    result, _, _ = cifar10_run
    assert "Traceback" not in result.stderr


def test_cifar10_failure_is_fast(cifar10_run):
    _, seconds, _ = cifar10_run
    assert seconds < 60


def test_cifar10_failure_writes_nothing(cifar10_run):
    _, _, cwd = cifar10_run
    assert not (cwd / "out").exists()


# The training loop's pieces, without training.


def test_epoch_orders_are_permutations():
    orders = train.epoch_orders(10, 3, seed=0)
    assert orders.shape == (3, 10)
    for order in orders:
        assert sorted(order) == list(range(10))


def test_epoch_orders_depend_on_seed():
    first = train.order_digest(train.epoch_orders(50, 2, seed=0))
    again = train.order_digest(train.epoch_orders(50, 2, seed=0))
    other = train.order_digest(train.epoch_orders(50, 2, seed=1))
    assert first == again
    assert first != other


def test_train_dataset_follows_order():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    y = np.arange(10, dtype=np.int32)
    orders = train.epoch_orders(10, 2, seed=3)
    dataset = train.make_train_dataset(
        x, y, orders, 4, (np.zeros(1), np.ones(1)), False, seed=3
    )
    batches = [labels for _, labels in dataset.as_numpy_iterator()]
    # 10 examples in batches of 4: 3 batches per epoch, the last of 2.
    assert [len(batch) for batch in batches] == [4, 4, 2] * 2
    assert np.concatenate(batches).tolist() == orders.reshape(-1).tolist()


def test_train_dataset_augmentation_repeats():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    y = np.zeros(6, dtype=np.int32)
    orders = train.epoch_orders(6, 1, seed=0)
    statistics = train.channel_statistics(x)

    def images():
        dataset = train.make_train_dataset(
            x, y, orders, 6, statistics, True, seed=0
        )
        return next(dataset.as_numpy_iterator())[0]

    first, second = images(), images()
    unaugmented = (x[orders[0]] - statistics[0]) / statistics[1]
    np.testing.assert_array_equal(first, second)
    assert first.shape == (6, 8, 8, 3)
    assert not np.allclose(first, unaugmented)


def test_schedule_decays_at_fractions():
    recipe = train.Recipe(epochs=1, learning_rate=0.1)
    schedule = recipe.learning_rate_schedule(total_steps=100)
    rates = [float(schedule(step)) for step in (0, 49, 50, 74, 75, 99)]
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_schedule_warmup():
    recipe = train.Recipe(epochs=1, warmup_fraction=0.1)
    schedule = recipe.learning_rate_schedule(total_steps=100)
    rates = [float(schedule(step)) for step in (0, 9, 10)]
    np.testing.assert_allclose(rates, [0.01, 0.01, 0.1])


def test_schedule_short_run_skips_empty_phase():
    recipe = train.Recipe(epochs=1, learning_rate=0.1)
    schedule = recipe.learning_rate_schedule(total_steps=1)
    # Both decays land after round(0.5) = 0 and round(0.75) = 1 steps.
    np.testing.assert_allclose(float(schedule(0)), 0.01)


def test_recipe_rejects_warmup_past_decay():
    recipe = train.Recipe(epochs=1, warmup_fraction=0.6)
    with pytest.raises(ValueError, match="Received: 0.6"):
        recipe.validate()


def test_digits_recipe_warms_up_24_steps():
    recipe = train.RECIPES["digits"]
    steps = recipe.total_steps(1437)
    schedule = recipe.learning_rate_schedule(steps)
    rates = [float(schedule(step)) for step in (0, 23, 24, 119, 120)]
    assert steps == 240
    np.testing.assert_allclose(rates, [0.01, 0.01, 0.1, 0.1, 0.01])


def test_recipe_rejects_unsorted_decays():
    recipe = train.Recipe(epochs=1, decay_at=(0.75, 0.5))
    with pytest.raises(ValueError, match="increasing fractions"):
        recipe.validate()


def test_cifar10_recipe_is_the_papers():
    recipe = train.RECIPES["cifar10"]
    steps = recipe.total_steps(50_000)
    schedule = recipe.learning_rate_schedule(steps)
    assert steps == 64_000
    assert recipe.batch_size == 128
    # optimizer.iterations counts the steps already run, so step 32,001
    # reads 32,000 and is the first at the divided rate.
    assert float(schedule(31_999)) == pytest.approx(0.1)
    assert float(schedule(32_000)) == pytest.approx(0.01)
    assert float(schedule(47_999)) == pytest.approx(0.01)
    assert float(schedule(48_000)) == pytest.approx(0.001)


def test_epochs_override_drops_max_steps():
    recipe = train.recipe_for("cifar10", epochs=2)
    assert recipe.total_steps(50_000) == 2 * 391


def test_twin_mismatch_reported():
    runs = [
        {
            "depth": 8,
            "data_order_sha256": "a",
            "steps": 4,
            "initial_weights_sha256": "w",
        },
        {
            "depth": 8,
            "data_order_sha256": "b",
            "steps": 4,
            "initial_weights_sha256": "w",
        },
    ]
    assert degradation.twin_mismatches(runs) == [
        "depth 8: plain and residual differ in data_order_sha256: ['a', 'b']"
    ]
