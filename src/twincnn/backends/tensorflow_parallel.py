"""TensorFlow/Keras's data-parallel twin: tf.distribute.MultiWorkerMirroredStrategy, one worker per process, in
a custom loop (Keras 3's fit() under this strategy does not run).

The cluster comes from TF_CONFIG, tf.distribute's own resolver; without it, from the ranks' environment
(RANK, WORLD_SIZE and the ports in TWINCNN_RANK_PORTS on MASTER_ADDR). Each worker's loss is the sum over its
equal slice divided by the global batch, and Keras's optimizer sums the gradients over the workers: together
the gradient of the mean over the global batch (dividing by the slice instead would count it R times).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import UserError
from . import tensorflow as twin
from .base import BaseTrainer
from .data_parallel import global_steps, rank_slice

tf, keras = twin.tf, twin.keras

# Keras's BatchNormalization(synchronized=True) under the strategy: statistics over the global batch.
SYNCHRONIZED_BATCHNORM = True
ENGINE = "tf.distribute MultiWorkerMirroredStrategy"
_STRATEGY = []  # the one strategy of this process


def cluster_config() -> dict:
    """TF_CONFIG as given (one per process: tf.distribute's cluster spec), SLURM's allocation read by
    tf.distribute's own resolver, or built from the local launcher's environment."""
    if "TF_CONFIG" in os.environ and "TWINCNN_RANK_PORTS" not in os.environ:  # twincnn's own launcher wins
        return json.loads(os.environ["TF_CONFIG"])
    if "SLURM_PROCID" in os.environ and "TWINCNN_RANK_PORTS" not in os.environ:
        resolver = slurm_resolver()
        return {"cluster": resolver.cluster_spec().as_dict(),
                "task": {"type": resolver.task_type, "index": resolver.task_id}}
    if "TWINCNN_RANK_PORTS" not in os.environ:
        raise UserError("TensorFlow's workers each need their own address: set TF_CONFIG in every process "
                        "(docs/parallel.md), run under SLURM, or let twincnn start the ranks")
    ports = os.environ["TWINCNN_RANK_PORTS"].split(",")
    workers = [f"{os.environ['MASTER_ADDR']}:{port}" for port in ports]
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": int(os.environ["RANK"])}}


def slurm_resolver():
    """tf.distribute's SlurmClusterResolver. It places a node's tasks only beside that node's GPUs (none: no
    task; it asks nvidia-smi, which a CPU node lacks), so on a CPU node each task gets a nominal slot and
    CUDA_VISIBLE_DEVICES is left alone."""
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import expand_tasks_per_node

    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    slots = max(expand_tasks_per_node(os.environ["SLURM_STEP_TASKS_PER_NODE"]))
    return tf.distribute.cluster_resolver.SlurmClusterResolver(gpus_per_node=slots, gpus_per_task=1,
                                                               auto_set_gpu=False)


def initialize(threads: int | None) -> dict:
    """Start this worker's strategy; {rank, world, backend}."""
    twin.configure(threads)
    config = cluster_config()
    os.environ["TF_CONFIG"] = json.dumps(config)
    timeout = float(os.environ.get("TWINCNN_RENDEZVOUS_TIMEOUT_S", 60))
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    _STRATEGY.append(tf.distribute.MultiWorkerMirroredStrategy(communication_options=options))
    backend = "NCCL" if tf.config.list_physical_devices("GPU") else "RING"
    return {"rank": config["task"]["index"], "world": len(config["cluster"]["worker"]), "backend": backend}


def shutdown(completed: bool = False) -> None:
    """Drop the strategy (``completed``: every rank reached the end; nothing more to wait for here)."""
    _STRATEGY.clear()


def build(spec, seed=None, device="cpu"):
    """The twin, its variables mirrored by the strategy, its BatchNorm synchronised."""
    with _STRATEGY[0].scope():
        model = twin.build(spec, seed, device)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True  # read at each call
    return model


class Trainer(twin.Trainer):
    """A custom loop: strategy.run on this worker's slice of each global batch."""

    def __init__(self, model, spec, config, metrics=()):
        self.strategy = _STRATEGY[0]
        with self.strategy.scope():
            super().__init__(model, spec, config, metrics)
        cluster = json.loads(os.environ["TF_CONFIG"])
        self.rank, self.world = cluster["task"]["index"], len(cluster["cluster"]["worker"])

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x_np, self.y_np = np.asarray(x, np.float32), np.asarray(y, np.int64)
        model, optimizer, variables = self.model, self.optimizer, self.model.trainable_variables

        def replica_step(xb, yb, global_batch):
            with tf.GradientTape() as tape:
                per_example = keras.losses.sparse_categorical_crossentropy(yb, model(xb, training=True),
                                                                           from_logits=True)
                loss = tf.reduce_sum(per_example) / tf.cast(global_batch, tf.float32)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        @tf.function
        def step(xb, yb, global_batch):
            per_worker = self.strategy.run(replica_step, args=(xb, yb, global_batch))
            # the global batch's mean loss, as Keras's own distributed step reduces what it reports
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_worker, axis=None)

        self._step = step

    def step(self, idx):
        rows = rank_slice(idx, self.world, self.rank)
        return self._step(tf.constant(self.x_np[rows]), tf.constant(self.y_np[rows]), tf.constant(len(idx)))

    def train_epoch(self, order, batch_size, on_step=None, validation=None) -> float:
        losses = global_steps(self, order, batch_size, on_step)
        return float(tf.add_n(losses)) / len(losses)

    def run(self, epochs, batch_size, order_for_epoch, hooks, validation=None) -> None:
        BaseTrainer.run(self, epochs, batch_size, order_for_epoch, hooks, validation)


make_trainer = Trainer.from_options
