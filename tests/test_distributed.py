"""Training across processes with MultiWorkerMirroredStrategy.

The cluster tests start two `python -m keras_resnet.train --strategy
multi-worker` processes on 127.0.0.1, each with its own `TF_CONFIG`, and
train ResNet-20 on scikit-learn's digits at 8 x 8 with a global batch of
256: 6 steps per epoch, 2 epochs.
"""

import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_resnet import distribute, train

EPOCHS = 2
BATCH_SIZE = 256
# 1,437 training digits in batches of 256.
EPOCH_STEPS = 6
TRAIN_ARGS = (
    "--strategy",
    "multi-worker",
    "--depth",
    "20",
    "--image-size",
    "8",
    "--batch-size",
    str(BATCH_SIZE),
    "--epochs",
    str(EPOCHS),
)

# Seconds that a whole cluster run may take before the test fails. Two
# workers took 30-50 s on 2 shared CPU cores.
RUN_TIMEOUT = 240
# Seconds that the surviving worker may take to notice a killed peer.
# TensorFlow 2.21 took about 12 s.
SURVIVOR_TIMEOUT = 120

DIGEST = re.compile(r"weights sha256 ([0-9a-f]{64})")


def free_ports(count):
    """Return `count` distinct loopback ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def tf_config(ports, index):
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


class Cluster:
    """Worker processes of one run, with their output files.

    Output goes to files rather than pipes, so that a worker never blocks
    on a full pipe while the test waits on another one.
    """

    def __init__(self, cwd, name, extra_args=(), workers=2):
        self.cwd = cwd
        self.scratch = cwd / f"{name}_tmp"
        self.scratch.mkdir()
        ports = free_ports(workers)
        self.processes = []
        self.logs = []
        for index in range(workers):
            stdout = open(cwd / f"{name}_{index}.out", "w+")
            stderr = open(cwd / f"{name}_{index}.err", "w+")
            env = dict(
                os.environ,
                TF_CONFIG=tf_config(ports, index),
                TF_CPP_MIN_LOG_LEVEL="2",
                # Where a worker other than the chief saves its copy.
                TMPDIR=str(self.scratch),
            )
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "keras_resnet.train"]
                    + list(TRAIN_ARGS)
                    + ["--out", "out"]
                    + list(extra_args),
                    cwd=cwd,
                    env=env,
                    stdout=stdout,
                    stderr=stderr,
                )
            )
            self.logs.append((stdout, stderr))

    def wait(self, index, timeout):
        """Return worker `index`'s exit code; fail the test on a timeout."""
        try:
            return self.processes[index].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"worker {index} did not exit within {timeout} s:\n"
                + self.stderr(index)[-3000:]
            )

    def wait_all(self, timeout):
        deadline = time.monotonic() + timeout
        return [
            self.wait(index, max(1.0, deadline - time.monotonic()))
            for index in range(len(self.processes))
        ]

    def stdout(self, index):
        return Path(self.logs[index][0].name).read_text()

    def stderr(self, index):
        return Path(self.logs[index][1].name).read_text()

    def kill(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    def close(self):
        self.kill()
        for stdout, stderr in self.logs:
            stdout.close()
            stderr.close()


def digests(cluster):
    """Return the final weights digest that each worker printed."""
    found = []
    for index in range(len(cluster.processes)):
        match = DIGEST.search(cluster.stdout(index))
        found.append(match.group(1) if match else None)
    return found


def read_history(out):
    with open(out / "history.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def wait_for_backup(path, timeout):
    """Return the JSON in `path` once it exists and parses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.1)
    pytest.fail(f"{path} did not appear within {timeout} s")


# Two workers train without interruption and the chief exports.


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cluster")
    cluster = Cluster(cwd, "run", extra_args=["--export"])
    try:
        start = time.perf_counter()
        codes = cluster.wait_all(RUN_TIMEOUT)
        seconds = time.perf_counter() - start
        yield {
            "codes": codes,
            "cluster": cluster,
            "out": cwd / "out",
            "seconds": seconds,
        }
    finally:
        cluster.close()


@pytest.mark.heavy
def test_cluster_workers_exit_zero(cluster_run):
    cluster = cluster_run["cluster"]
    for index, code in enumerate(cluster_run["codes"]):
        assert code == 0, cluster.stderr(index)[-3000:]


@pytest.mark.heavy
def test_cluster_roles(cluster_run):
    cluster = cluster_run["cluster"]
    assert "this is worker-0, the chief" in cluster.stderr(0)
    assert "this is worker-1\n" in cluster.stderr(1)
    assert "2 replica(s) in 2 worker(s)" in cluster.stderr(1)


@pytest.mark.heavy
def test_cluster_weights_equal(cluster_run):
    chief, worker = digests(cluster_run["cluster"])
    assert chief is not None
    assert worker is not None
    assert chief == worker


@pytest.mark.heavy
def test_cluster_saved_model_matches(cluster_run):
    import keras

    chief, _ = digests(cluster_run["cluster"])
    model = keras.models.load_model(cluster_run["out"] / "model.keras")
    assert train.weights_digest(model) == chief


@pytest.mark.heavy
def test_cluster_export_parity(cluster_run):
    export_dir = cluster_run["out"] / "export"
    report = json.loads((export_dir / "report.json").read_text())
    assert report["passed"] is True
    for artifact in ("saved_model", "model.tflite", "model.onnx"):
        assert (export_dir / artifact).exists(), artifact


@pytest.mark.heavy
def test_cluster_only_chief_writes(cluster_run):
    out = cluster_run["out"]
    assert sorted(path.name for path in out.iterdir()) == [
        "export",
        "history.csv",
        "model.keras",
    ]
    # The other worker saves its copy of the model into a directory of
    # this prefix under TMPDIR and deletes it.
    leftovers = [
        path.name
        for path in cluster_run["cluster"].scratch.iterdir()
        if path.name.startswith("keras_resnet_")
    ]
    assert leftovers == []
    assert "wrote out/model.keras" not in cluster_run["cluster"].stdout(1)


@pytest.mark.heavy
def test_cluster_history(cluster_run):
    rows = read_history(cluster_run["out"])
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert [int(row["step"]) for row in rows] == [EPOCH_STEPS, 2 * EPOCH_STEPS]


# One worker is killed in the second epoch. The survivor fails on its next
# collective operation, both are started again with the same command and
# go on from their end-of-epoch backups.


@pytest.fixture(scope="module")
def restarted_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("restart")
    first = Cluster(cwd, "first")
    second = None
    try:
        metadata = wait_for_backup(
            cwd / "out" / "backup" / "worker-1" / "training_metadata.json",
            RUN_TIMEOUT,
        )
        # The second epoch's 6 steps take 2-4 s; this kill lands in them.
        time.sleep(1.0)
        killed_while_running = first.processes[1].poll() is None
        first.processes[1].kill()
        killed_code = first.wait(1, 30)
        start = time.perf_counter()
        survivor_code = first.wait(0, SURVIVOR_TIMEOUT)
        survivor_seconds = time.perf_counter() - start
        backups = sorted(
            path.name for path in (cwd / "out" / "backup").iterdir()
        )

        second = Cluster(cwd, "second")
        codes = second.wait_all(RUN_TIMEOUT)
        yield {
            "metadata": metadata,
            "killed_while_running": killed_while_running,
            "killed_code": killed_code,
            "survivor_code": survivor_code,
            "survivor_seconds": survivor_seconds,
            "backups": backups,
            "first": first,
            "second": second,
            "codes": codes,
            "out": cwd / "out",
        }
    finally:
        first.close()
        if second is not None:
            second.close()


@pytest.mark.heavy
def test_restart_kill_lands_mid_run(restarted_run):
    assert restarted_run["metadata"]["epoch"] == 1
    assert restarted_run["killed_while_running"]
    assert restarted_run["killed_code"] == -9
    assert DIGEST.search(restarted_run["first"].stdout(0)) is None


@pytest.mark.heavy
def test_restart_survivor_fails_clearly(restarted_run):
    first = restarted_run["first"]
    assert restarted_run["survivor_code"] == 1, first.stderr(0)[-3000:]
    errors = [
        line
        for line in first.stderr(0).splitlines()
        if line.startswith("error: ")
    ]
    assert len(errors) == 1, first.stderr(0)[-3000:]
    assert "worker-0 stopped because another worker failed" in errors[0]
    assert "Restart every worker with the same command" in errors[0]
    assert "Traceback" not in first.stderr(0)


@pytest.mark.heavy
def test_restart_keeps_backups(restarted_run):
    assert restarted_run["backups"] == ["worker-0", "worker-1"]


@pytest.mark.heavy
def test_restart_completes(restarted_run):
    second = restarted_run["second"]
    for index, code in enumerate(restarted_run["codes"]):
        assert code == 0, second.stderr(index)[-3000:]
    for index in range(2):
        assert "resumed after epoch 1" in second.stdout(index)
    assert not (restarted_run["out"] / "backup").exists()


@pytest.mark.heavy
def test_restart_history_starts_after_backup(restarted_run):
    rows = read_history(restarted_run["out"])
    assert [int(row["epoch"]) for row in rows] == [2]
    assert [int(row["step"]) for row in rows] == [2 * EPOCH_STEPS]


@pytest.mark.heavy
def test_restart_matches_uninterrupted(restarted_run, cluster_run):
    # The resumed run restores weights, optimizer state and step count,
    # and feeds the second epoch's own data order, so it ends where the
    # run without a kill ended, bit for bit.
    resumed = digests(restarted_run["second"])
    uninterrupted = digests(cluster_run["cluster"])
    assert resumed[0] is not None
    assert resumed == uninterrupted


# Invalid options: rejected before any training or file. `main` runs in
# this process, which is safe because it returns before creating a
# strategy.


def error_lines(stderr):
    return [line for line in stderr.splitlines() if "error:" in line]


def test_strategy_bogus_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        train.main(["--strategy", "bogus", "--out", str(tmp_path / "out")])
    assert raised.value.code == 2
    stderr = capsys.readouterr().err
    assert "argument --strategy: invalid choice: 'bogus'" in stderr
    assert not (tmp_path / "out").exists()


def test_tf_config_missing_rejected(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = train.main(
        ["--strategy", "multi-worker", "--out", str(tmp_path / "out")]
    )
    assert code == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith(
        "error: --strategy multi-worker needs TF_CONFIG: it is not set. "
        "Set it to "
    )
    assert not (tmp_path / "out").exists()


def test_tf_config_malformed_rejected(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": ')
    code = train.main(
        ["--strategy", "multi-worker", "--out", str(tmp_path / "out")]
    )
    assert code == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "it is not valid JSON" in lines[0]
    assert "Received: TF_CONFIG='{\"cluster\": '" in lines[0]
    assert not (tmp_path / "out").exists()


def test_export_needs_out(capsys):
    with pytest.raises(SystemExit) as raised:
        train.main(["--export"])
    assert raised.value.code == 2
    assert "--export needs --out DIR" in capsys.readouterr().err


def test_export_existing_dir_rejected(tmp_path, capsys):
    # A second run into the same --out stops before it trains, instead of
    # replacing model.keras and then failing in export_model.
    out = tmp_path / "run"
    (out / "export").mkdir(parents=True)
    (out / "export" / "report.json").write_text("{}")
    (out / "model.keras").write_text("earlier run")
    with pytest.raises(SystemExit) as raised:
        train.main(["--out", str(out), "--export", "--epochs", "1"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert f"--export writes {out / 'export'}, which already exists" in err
    assert (out / "model.keras").read_text() == "earlier run"
    assert sorted(p.name for p in out.iterdir()) == ["export", "model.keras"]


VALID_CLUSTER = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}


@pytest.mark.parametrize(
    "config, problem",
    [
        ("", "it is empty"),
        ("[1, 2]", "it must be a JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', '"cluster" must map'),
        (
            {"cluster": {"worker": ["10.0.0.1"]}, "task": {}},
            'cluster job "worker" must be a non-empty list of "host:port"',
        ),
        (
            {"cluster": {"worker": []}, "task": {}},
            'cluster job "worker" must be a non-empty list',
        ),
        ({"cluster": VALID_CLUSTER}, '"task" must give'),
        (
            {"cluster": VALID_CLUSTER, "task": {"type": "ps", "index": 0}},
            "task type 'ps' is not a job of \"cluster\" (['worker'])",
        ),
        (
            {
                "cluster": {**VALID_CLUSTER, "ps": ["10.0.0.3:2222"]},
                "task": {"type": "ps", "index": 0},
            },
            'cluster job "ps" is not one of chief, worker, evaluator',
        ),
        (
            {
                "cluster": {"chief": ["10.0.0.1:2222", "10.0.0.2:2222"]},
                "task": {"type": "chief", "index": 0},
            },
            'cluster job "chief" must have one address',
        ),
        (
            {
                "cluster": {**VALID_CLUSTER, "evaluator": ["10.0.0.3:2222"]},
                "task": {"type": "evaluator", "index": 0},
            },
            'task type "evaluator" runs side-car evaluation',
        ),
        (
            {"cluster": {"worker": ["10.0.0.1:99999"]}, "task": {}},
            "with ports 1..65535",
        ),
        (
            {
                "cluster": {
                    "chief": ["10.0.0.1:2222"],
                    "worker": ["10.0.0.2:2222", "10.0.0.1:2222"],
                },
                "task": {"type": "chief", "index": 0},
            },
            'address 10.0.0.1:2222 is listed more than once in "cluster"',
        ),
        (
            {"cluster": {"worker": [":2222"]}, "task": {}},
            'must be a non-empty list of "host:port"',
        ),
        (
            {"cluster": VALID_CLUSTER, "task": {"type": "worker", "index": 2}},
            'task index 2 is not in 0..1 for job "worker"',
        ),
        (
            {
                "cluster": VALID_CLUSTER,
                "task": {"type": "worker", "index": "0"},
            },
            "task index '0' is not in 0..1",
        ),
    ],
)
def test_read_tf_config_rejects(config, problem):
    raw = config if isinstance(config, str) else json.dumps(config)
    with pytest.raises(distribute.StrategyError) as raised:
        distribute.read_tf_config({"TF_CONFIG": raw})
    message = str(raised.value)
    assert problem in message
    assert "Set it to the cluster's addresses" in message


def test_read_tf_config_accepts_chief_job():
    config = {
        "cluster": {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222"]},
        "task": {"type": "chief", "index": 0},
    }
    parsed = distribute.read_tf_config({"TF_CONFIG": json.dumps(config)})
    assert parsed == config


def test_read_tf_config_accepts_evaluator_job():
    # Workers may list a side-car evaluator, which does not train.
    config = {
        "cluster": {**VALID_CLUSTER, "evaluator": ["10.0.0.3:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    parsed = distribute.read_tf_config({"TF_CONFIG": json.dumps(config)})
    assert parsed == config


def test_default_strategy_single_role():
    strategy = distribute.make_strategy("default")
    role = distribute.worker_role(strategy)
    assert role == distribute.WorkerRole("worker", 0, True, 1)
    assert role.name == "worker-0"
