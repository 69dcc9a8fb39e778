"""One rank of TensorFlow/Keras data-parallel training: tf.distribute.MultiWorkerMirroredStrategy, one worker
per process, in a custom loop (Keras 3's fit() under this strategy does not run).

The cluster comes from TF_CONFIG, tf.distribute's own resolver; without it, from the ranks' environment
(RANK, WORLD_SIZE and the ports in TWINCNN_RANK_PORTS on MASTER_ADDR). Each worker's loss is the sum over its
equal slice divided by the global batch, and Keras's optimizer sums the gradients over the workers: together
the gradient of the mean over the global batch (dividing by the slice instead would count it R times).
"""

from __future__ import annotations

import json
import os

import numpy as np

from . import tensorflow as twin

tf, keras = twin.tf, twin.keras

# Keras's BatchNormalization(synchronized=True) under the strategy: statistics over the global batch.
SYNCHRONIZED_BATCHNORM = True
ENGINE = "tf.distribute MultiWorkerMirroredStrategy"


def process_group_backend() -> str:
    return "NCCL" if tf.config.list_physical_devices("GPU") else "RING"


def cluster_config() -> dict:
    """TF_CONFIG as given, or built from the launcher's environment."""
    if "TF_CONFIG" in os.environ:
        return json.loads(os.environ["TF_CONFIG"])
    ports = os.environ["TWINCNN_RANK_PORTS"].split(",")
    workers = [f"{os.environ['MASTER_ADDR']}:{port}" for port in ports]
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": int(os.environ["RANK"])}}


def train(spec, weights: dict, x: np.ndarray, y: np.ndarray, batches: np.ndarray, lr: float, threads: int,
          adam: str = "keras") -> tuple[int, dict]:
    """(this rank, its final canonical weights) after one step per global batch."""
    twin.configure(threads)
    config = cluster_config()
    os.environ["TF_CONFIG"] = json.dumps(config)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rank, world = config["task"]["index"], len(config["cluster"]["worker"])
    with strategy.scope():
        model = twin.build(spec)
        twin.set_weights(model, spec, weights)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True  # read at each call
        optimizer = twin.make_optimizer(model, lr, adam)
    variables = model.trainable_variables
    global_batch = batches.shape[1]

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            per_example = keras.losses.sparse_categorical_crossentropy(yb, model(xb, training=True),
                                                                       from_logits=True)
            loss = tf.reduce_sum(per_example) / global_batch
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    @tf.function
    def step(xb, yb):
        strategy.run(replica_step, args=(xb, yb))

    for batch in batches:
        rows = np.array_split(batch, world)[rank]
        step(tf.constant(x[rows]), tf.constant(y[rows], tf.int64))
    return rank, twin.get_weights(model, spec)
