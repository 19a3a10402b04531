"""Choose a `tf.distribute` strategy and this process's role in it.

`keras_resnet.train --strategy` names one of `STRATEGIES`:

- "default": TensorFlow's default strategy, one device of one process.
- "mirrored": `tf.distribute.MirroredStrategy` over all local devices.
- "multi-worker": `tf.distribute.MultiWorkerMirroredStrategy`, one
  process per machine, each configured by the `TF_CONFIG` environment
  variable. TensorFlow requires this strategy to be created before any
  other TensorFlow operation runs in the process, so `make_strategy` is
  the first TensorFlow call of the command.

All three train synchronously: each replica computes gradients on its part
of the global batch, the gradients are summed across replicas and every
replica applies the same update.
"""

import dataclasses
import json
import os

import keras
import tensorflow as tf
from keras import tree

from keras_resnet.layers import walk_layers

STRATEGIES = ("default", "mirrored", "multi-worker")

TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


# Jobs that TF_CONFIG may list for MultiWorkerMirroredStrategy. Only
# "chief" and "worker" tasks train. An "evaluator" task is outside the
# training cluster, so workers may list it, but it cannot run this command.
CLUSTER_JOBS = ("chief", "worker", "evaluator")


def _is_address(address):
    if not isinstance(address, str):
        return False
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


class StrategyError(ValueError):
    """A strategy that cannot be created; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's task in the cluster.

    Attributes:
        task_type: the `TF_CONFIG` job name, "worker" or "chief"; "worker"
            for a single process.
        task_id: index of the task in its job; 0 for a single process.
        is_chief: whether this task writes the outputs. That is the
            "chief" task, or worker 0 in a cluster without a "chief" job.
        workers: processes in the cluster; 1 for a single process.
    """

    task_type: str
    task_id: int
    is_chief: bool
    workers: int

    @property
    def name(self):
        """`{task_type}-{task_id}`, such as "worker-1"."""
        return f"{self.task_type}-{self.task_id}"


def _tf_config_error(problem, raw):
    received = "" if raw is None else f" Received: TF_CONFIG={raw!r}."
    return StrategyError(
        f"--strategy multi-worker needs TF_CONFIG: {problem}.{received} Set "
        "it to the cluster's addresses and this process's task, such as "
        f"TF_CONFIG='{TF_CONFIG_EXAMPLE}'."
    )


def read_tf_config(environ=None):
    """Parse and validate `TF_CONFIG` for MultiWorkerMirroredStrategy.

    Args:
        environ: the environment to read; defaults to `os.environ`.

    Returns:
        The parsed `TF_CONFIG` dict.

    Raises:
        StrategyError: when it is missing or not JSON, or lacks a cluster
            of "host:port" addresses or a task inside that cluster. Also
            when the cluster has a job other than "chief", "worker" and
            "evaluator", more than one chief or an address twice, and when
            the task is an evaluator, which does not train.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG")
    if raw is None or not raw.strip():
        problem = "it is not set" if raw is None else "it is empty"
        raise _tf_config_error(problem, raw)
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise _tf_config_error(f"it is not valid JSON ({error})", raw) from None
    if not isinstance(config, dict):
        raise _tf_config_error("it must be a JSON object", raw)

    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise _tf_config_error(
            '"cluster" must map job names to lists of addresses', raw
        )
    for job, addresses in cluster.items():
        if job not in CLUSTER_JOBS:
            raise _tf_config_error(
                f'cluster job "{job}" is not one of {", ".join(CLUSTER_JOBS)}'
                ", the jobs of MultiWorkerMirroredStrategy, which has no "
                "parameter servers",
                raw,
            )
        valid = isinstance(addresses, list) and addresses
        if valid:
            valid = all(_is_address(address) for address in addresses)
        if not valid:
            raise _tf_config_error(
                f'cluster job "{job}" must be a non-empty list of '
                '"host:port" addresses with ports 1..65535',
                raw,
            )
    listed = [address for job in cluster.values() for address in job]
    repeated = sorted({a for a in listed if listed.count(a) > 1})
    if repeated:
        # Two tasks cannot listen on one address. The second one fails to
        # start its gRPC server and the first waits for it forever.
        raise _tf_config_error(
            f"address {repeated[0]} is listed more than once in "
            '"cluster"; give each task its own port',
            raw,
        )
    if len(cluster.get("chief", ())) > 1:
        raise _tf_config_error('cluster job "chief" must have one address', raw)

    task = config.get("task")
    if not isinstance(task, dict):
        raise _tf_config_error(
            '"task" must give this process\'s "type" and "index"', raw
        )
    task_type, index = task.get("type"), task.get("index")
    if task_type == "evaluator":
        raise _tf_config_error(
            'task type "evaluator" runs side-car evaluation, which this '
            'command does not implement; give it a "worker" or "chief" task',
            raw,
        )
    if task_type not in cluster:
        raise _tf_config_error(
            f'task type {task_type!r} is not a job of "cluster" '
            f"({sorted(cluster)})",
            raw,
        )
    if (
        isinstance(index, bool)
        or not isinstance(index, int)
        or not 0 <= index < len(cluster[task_type])
    ):
        raise _tf_config_error(
            f"task index {index!r} is not in 0..{len(cluster[task_type]) - 1} "
            f'for job "{task_type}"',
            raw,
        )
    return config


def make_strategy(name, environ=None):
    """Create the strategy `name`, one of `STRATEGIES`.

    Raises:
        StrategyError: on an unknown name or, for "multi-worker", an
            invalid `TF_CONFIG`; see `read_tf_config`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        read_tf_config(environ)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if in_multi_worker_mode(strategy):
            patch_keras_for_multi_worker()
        return strategy
    raise StrategyError(
        f"--strategy must be one of {', '.join(STRATEGIES)}. Received: {name}"
    )


def in_multi_worker_mode(strategy):
    """Return whether `strategy` spans more than one process."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return cluster_size(strategy.cluster_resolver.cluster_spec()) > 1


def cluster_size(cluster_spec):
    """Return the processes that train: the "chief" and "worker" tasks."""
    cluster = cluster_spec.as_dict()
    return sum(len(cluster.get(job, ())) for job in ("chief", "worker"))


def worker_role(strategy):
    """Return this process's `WorkerRole` under `strategy`."""
    if not in_multi_worker_mode(strategy):
        return WorkerRole("worker", 0, is_chief=True, workers=1)
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    task_type, task_id = resolver.task_type, int(resolver.task_id)
    if "chief" in cluster:
        is_chief = task_type == "chief"
    else:
        is_chief = task_type == "worker" and task_id == 0
    workers = cluster_size(resolver.cluster_spec())
    return WorkerRole(task_type, task_id, is_chief, workers)


def synchronize_batch_norm(model):
    """Make every BatchNormalization layer use global batch statistics.

    With `synchronized=True` the batch mean and variance are all-reduced
    over the replicas, so each replica normalizes with the statistics of
    the whole global batch, as one device would, and applies the same
    update to the moving statistics. Without it every replica updates its
    copy of the moving mean and variance from its own part of the batch,
    and the copies drift apart. Call before the first training step.

    Returns:
        The number of layers changed.
    """
    changed = 0
    for layer in walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            changed += 1
    return changed


_keras_patched = False


def patch_keras_for_multi_worker():
    """Work around two Keras 3 bugs that stop `fit` across processes.

    NOTE: in Keras 3.15.1, and in `keras/src/backend/tensorflow/
    trainer.py` of Keras' master branch at commit 3422977a (version
    3.16.0), `fit` and `evaluate` fail under MultiWorkerMirroredStrategy
    with more than one worker:

    1. `TensorFlowTrainer._maybe_symbolic_build` passes the whole (x, y)
       batch to `strategy.reduce`, which accepts one value and not a
       nested structure, and fails with "Attempt to convert a value
       (PerReplica...) to a Tensor".
    2. `reduce_per_replica` averages each step's scalar metric results
       with `strategy.reduce("MEAN", value, axis=0)`, which fails with
       "Invalid reduction dimension 0 for input with 0 dimensions";
       TensorFlow's tracker of this is tensorflow/tensorflow#72388.

    The replacement for 1 builds the model from the first local replica's
    batch, which gives the same shapes and dtypes. The one for 2 averages
    across replicas with `axis=None`. Both leave every other strategy to
    the original code. Remove this once Keras fixes them.
    """
    global _keras_patched
    if _keras_patched:
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = tf_trainer.reduce_per_replica
    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    # Keras' own test for the multi-worker code paths.
    multi_worker = tf_trainer._collective_all_reduce_multi_worker

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and multi_worker(strategy):
            return tree.map_structure(
                lambda value: strategy.reduce("MEAN", value, axis=None),
                values,
            )
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self.distribute_strategy
        if (
            self._distribute_strategy is None
            or iterator is None
            or not multi_worker(strategy)
        ):
            return original_build(
                self, iterator=iterator, data_batch=data_batch
            )
        for _, _, batches in iterator:
            batch = next(batches)
            break
        first_replica = tree.map_structure(
            lambda value: strategy.experimental_local_results(value)[0], batch
        )
        return original_build(self, data_batch=first_replica)

    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    _keras_patched = True


def check_backups_agree(strategy, restored_steps):
    """Raise StrategyError unless every worker restored the same step.

    Each worker restores its own backup. A worker killed after the other
    workers wrote their end-of-epoch backup, but before it wrote its own,
    has a backup one epoch behind theirs, and training on from both would
    mix two states. This runs one all-gather across the workers, so every
    worker must call it.
    """
    if not in_multi_worker_mode(strategy):
        return
    steps = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant([restored_steps], tf.int64)
    )
    gathered = strategy.gather(steps, axis=0).numpy().tolist()
    if len(set(gathered)) > 1:
        raise StrategyError(
            f"the workers' backups are at different steps: {gathered}. "
            "Copy the chief's backup directory over every worker's, or "
            "delete all of them to start again from epoch 0."
        )
