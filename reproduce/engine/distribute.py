"""Where training runs: devices, the tf.distribute strategy, and what workers must agree on.

`setup(config)` does all of it once and returns a `Placement`: the strategy, this worker's index
and the number of workers, the replicas, whether this is the chief, and `agree`.

- `configure_devices`: before TensorFlow starts, split the CPU into N logical devices
  (config.cpu_replicas: how tests and users try `--distribute mirrored` without GPUs), let GPU
  memory grow instead of taking every visible GPU's memory (so several runs can share a host),
  and turn on op determinism with one inter-op thread (config.deterministic).
- `make_strategy`: none = no strategy; mirrored = all local GPUs, else all logical CPUs (on one
  device it trains bit for bit like `none`: the data do not depend on how often Keras opens the
  dataset); multiworker = $TF_CONFIG.
- `agree`: every worker of a multi-worker run reports how far its run folder is; they must be
  equal (a shared run folder), else all of them stop with one line instead of hanging.
"""
from __future__ import annotations

import dataclasses
import os

import tensorflow as tf
# TF 2.21 exports enable_op_determinism only; its counterpart lives beside it, unexported.
from tensorflow.python.framework import config as tf_framework_config

from reproduce.engine import backend


class DistributeError(RuntimeError):
    """A device or cluster setting that cannot be honoured; one-line message."""


def configure_devices(config) -> None:
    """Logical CPUs, GPU memory growth and op determinism, as `config` asks (idempotent). On a
    Keras backend other than TensorFlow, first refuse what needs tf.distribute (reproduce.engine.backend)."""
    backend.check_supported(config)
    backend.prepare(config)
    if config.cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * config.cpu_replicas)
        except RuntimeError:  # TensorFlow already started in this process
            have = len(tf.config.list_logical_devices("CPU"))
            if have != config.cpu_replicas:
                raise DistributeError(f"cpu_replicas={config.cpu_replicas}, but TensorFlow already "
                                      f"started with {have} logical CPU(s) in this process") from None
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already started: whatever was set first stays
            pass
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
        _one_op_at_a_time()
    else:  # off again after a deterministic run in the same process (tests run several)
        tf_framework_config.disable_op_determinism()


def _one_op_at_a_time() -> None:
    """Op determinism alone does not make a CPU run repeat itself bit for bit; one inter-op
    thread (ops one at a time, each still using every core) does (measured, with its cost:
    docs/exactness.md, "After a crash"). TensorFlow fixes its thread pools when it starts: in a
    process where it already started with more (tests), the run goes on as it is."""
    if tf.config.threading.get_inter_op_parallelism_threads() == 1:
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def local_devices() -> list[str]:
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


def make_strategy(name: str):
    """The strategy for `config.distribute` (see the module docstring)."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=local_devices())
    if "TF_CONFIG" not in os.environ:
        raise DistributeError("--distribute multiworker needs TF_CONFIG (cluster and this task) set")
    return _MultiWorkerStrategy()


class _MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with a reduce() that Keras 3.15's fit can call.

    Two Keras bugs, both in keras/src/backend/tensorflow/trainer.py, fixed here per tensor:
    _maybe_symbolic_build reduces a whole (images, labels) tuple, which the collective strategy
    cannot ("Attempt to convert a value (PerReplica…)"), and reduce_per_replica reduces the
    scalar logs with axis=0 ("Invalid reduction dimension 0 for input with 0 dimensions").
    A scalar has no batch axis, so axis=None is the mean over replicas Keras means. A uint8
    image batch (the first batch Keras reduces only to learn shapes and dtypes) cannot go
    through a collective at all; the local one serves. Every worker makes the same calls (the
    choice depends on the dtype only), so the collectives still match."""

    def reduce(self, reduce_op, value, axis):
        def one(v):
            local = self.experimental_local_results(v)[0]
            if getattr(local, "dtype", None) == tf.uint8:
                return local
            scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
            return super(_MultiWorkerStrategy, self).reduce(reduce_op, v, None if scalar else axis)

        return tf.nest.map_structure(one, value)


def workers(strategy) -> tuple[int, int]:
    """(this worker's index, number of workers); (0, 1) unless multi-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return 0, 1
    order = [(kind, i) for kind in ("chief", "worker") for i in range(len(cluster.get(kind, [])))]
    return order.index((resolver.task_type, resolver.task_id)), len(order)


def agree(strategy, value: int, what: str) -> int:
    """`value` when every worker has the same one; else DistributeError on every worker (they
    all see the gathered values, so all stop instead of hanging in the next collective)."""
    if workers(strategy)[1] == 1:
        return value
    local = strategy.run(lambda: tf.constant([value], tf.int64))
    values = [int(v) for v in strategy.gather(local, axis=0).numpy()]
    if len(set(values)) != 1:
        raise DistributeError(f"workers disagree on {what}: {values} (each reads its own --out; "
                              "give every worker the same shared run folder)")
    return value


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run trains: the strategy, this worker of `workers`, the replicas in sync."""

    strategy: object
    worker: int
    workers: int

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def chief(self) -> bool:
        """True unless this is a non-chief worker of a multi-worker cluster (only the chief writes)."""
        return self.worker == 0

    def agree(self, value: int, what: str) -> int:
        return agree(self.strategy, value, what)


def setup(config) -> Placement:
    """Devices as `config` asks (before anything starts TensorFlow's runtime), then the strategy
    (a multi-worker one before any other TensorFlow op), and this worker's place in it."""
    configure_devices(config)
    strategy = make_strategy(config.distribute)
    worker, n_workers = workers(strategy)
    return Placement(strategy, worker, n_workers)
