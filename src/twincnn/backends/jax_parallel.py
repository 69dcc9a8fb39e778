"""One rank of JAX data-parallel training: jax.distributed (gloo collectives on the CPU) and the global batch
sharded over a one-axis device mesh, the step jitted over it.

The coordinator is MASTER_ADDR:MASTER_PORT and the process is RANK of WORLD_SIZE, as torchrun sets them;
without them jax.distributed's own cluster detection (SLURM, Open MPI, TPU) decides. Each process gives its
equal slice of every global batch; the jitted step is the single-process step on the whole global batch,
so XLA inserts the all-reduces, and BatchNorm's batch statistics are those of the global batch.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import jax as twin

# The step is the single-process step on the sharded global batch: BatchNorm's statistics are global.
SYNCHRONIZED_BATCHNORM = True
ENGINE = "jax.distributed, a sharded jit"


def process_group_backend() -> str:
    return "nccl" if any(d.platform == "gpu" for d in jax.local_devices()) else "gloo"


def _initialize() -> None:
    timeout = int(float(os.environ.get("TWINCNN_RENDEZVOUS_TIMEOUT_S", 60)))
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if "MASTER_ADDR" in os.environ:
        jax.distributed.initialize(f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
                                   int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"]),
                                   initialization_timeout=timeout)
    else:
        jax.distributed.initialize(initialization_timeout=timeout)


def _replicated(tree, sharding):
    """``tree``, the same on every process, as global arrays held whole by every device of ``sharding``."""
    def one(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):  # the dropout stream: its raw key data
            return jax.random.wrap_key_data(one(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))
    return jax.tree.map(one, tree)


def train(spec, weights: dict, x: np.ndarray, y: np.ndarray, batches: np.ndarray, lr: float, threads: int,
          adam: str = "keras") -> tuple[int, dict]:
    """(this rank, its final canonical weights) after one step per global batch."""
    _initialize()  # before anything starts JAX's runtime
    try:
        twin.configure(threads)
        rank, world = jax.process_index(), jax.process_count()
        mesh = Mesh(np.array(jax.devices()), ("batch",))
        split, whole = NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())
        model = twin.build(spec)
        twin.set_weights(model, spec, weights)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        tx = twin.make_optimizer(lr, adam)
        state = _replicated((params, tx.init(params), rest), whole)
        step = jax.jit(twin.pure_batch_step(graphdef, tx), out_shardings=whole)
        x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
        for batch in batches:
            rows = np.array_split(batch, world)[rank]
            xb = jax.make_array_from_process_local_data(split, x[rows])
            yb = jax.make_array_from_process_local_data(split, y[rows])
            *state, _ = step(*state, xb, yb)
        local = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), (state[0], state[2]))
        nnx.update(model, *local)
        return rank, twin.get_weights(model, spec)
    finally:
        jax.distributed.shutdown()
