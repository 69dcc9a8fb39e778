"""JAX's data-parallel twin: jax.distributed (gloo collectives on the CPU) and the global batch sharded over
a one-axis device mesh, the step jitted over it.

The coordinator is MASTER_ADDR:MASTER_PORT and the process is RANK of WORLD_SIZE, as torchrun sets them;
without them jax.distributed's own cluster detection (SLURM, Open MPI, TPU) decides. Each process gives its
equal slice of every global batch; the jitted step is the single-process step on the whole global batch,
so XLA inserts the all-reduces.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import jax as twin
from .base import BaseTrainer
from .data_parallel import global_steps, rank_slice

# The step is the single-process step on the sharded global batch: BatchNorm's statistics are global.
SYNCHRONIZED_BATCHNORM = True
ENGINE = "jax.distributed, a sharded jit"


def initialize(threads: int | None) -> dict:
    """Join the coordinator, before anything starts JAX's runtime; {rank, world, backend}."""
    timeout = int(float(os.environ.get("TWINCNN_RENDEZVOUS_TIMEOUT_S", 60)))
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # twincnn's own launcher (TWINCNN_RANK_PORTS) wins over cluster variables inherited from the shell;
    # JAX_COORDINATOR_ADDRESS names the coordinator where another launcher holds MASTER_PORT (torchrun's
    # own store); RANK and WORLD_SIZE are the launcher's; without either, JAX detects SLURM or Open MPI.
    own = "TWINCNN_RANK_PORTS" in os.environ
    coordinator = (f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}" if own
                   else os.environ.get("JAX_COORDINATOR_ADDRESS") or (
                       f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}" if "MASTER_ADDR" in os.environ
                       else None))
    if coordinator and "RANK" in os.environ:
        jax.distributed.initialize(coordinator, int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"]),
                                   initialization_timeout=timeout)
    else:
        jax.distributed.initialize(initialization_timeout=timeout)
    if threads:
        take_cpu_share(threads, local_rank())
    twin.configure(threads)
    gpu = any(device.platform == "gpu" for device in jax.local_devices())
    return {"rank": jax.process_index(), "world": jax.process_count(), "backend": "nccl" if gpu else "gloo"}


def local_rank() -> int:
    """This process's place among the ranks on its machine, as torchrun, SLURM or Open MPI numbers it."""
    for name in ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def take_cpu_share(threads: int, local_rank: int) -> None:
    """Pin this process to its own ``threads`` CPUs (local rank k: the k-th share of the allowed ones, wrapping
    round where there are too few): configure() sizes XLA's pool from the CPUs a process may run on, so
    without this every rank on a machine would share the first ones."""
    allowed = sorted(os.sched_getaffinity(0))
    start = (local_rank * threads) % len(allowed)
    os.sched_setaffinity(0, (allowed[start:] + allowed[:start])[:threads])


def shutdown(completed: bool = False) -> None:
    """Leave the distributed runtime (``completed``: every rank reached the end; its shutdown waits for all)."""
    jax.distributed.shutdown()


build = twin.build


def _replicated(tree, sharding):
    """``tree``, the same on every process, as global arrays held whole by every device of ``sharding``."""
    return jax.tree.map(_through_key_data(lambda leaf: jax.make_array_from_process_local_data(
        sharding, np.asarray(leaf))), tree)


def _through_key_data(convert):
    """``convert`` for one array; a key array (the dropout stream) goes through its raw key data."""
    def one(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(convert(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        return convert(leaf)
    return one


# This process's copy of a replicated global array.
_local_copy = _through_key_data(lambda leaf: np.asarray(leaf.addressable_data(0)))


class Trainer(BaseTrainer):
    """The pure step jitted over the mesh; the model's variables are brought up to date by sync()."""

    predict_logits = staticmethod(twin.predict)

    def __init__(self, model, spec, config, metrics=()):
        super().__init__(model, spec, config, metrics)
        self.rank, self.world = jax.process_index(), jax.process_count()
        mesh = Mesh(np.array(jax.devices()), ("batch",))
        self.split, whole = NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())
        model.use_tuned_plan(self.variant == "tuned")  # for the step's graph only, as the one-process twin
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        model.use_tuned_plan(False)
        tx = twin.make_optimizer(config.lr, config.adam, config.eps)
        self.state = _replicated((params, tx.init(params), rest), whole)
        self._step = jax.jit(twin.pure_batch_step(graphdef, tx), out_shardings=whole)

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = np.asarray(x, np.float32), np.asarray(y, np.int32)

    def step(self, idx):
        rows = rank_slice(idx, self.world, self.rank)
        xb = jax.make_array_from_process_local_data(self.split, self.x[rows])
        yb = jax.make_array_from_process_local_data(self.split, self.y[rows])
        *self.state, loss = self._step(*self.state, xb, yb)
        return loss

    def train_epoch(self, order, batch_size, on_step=None, validation=None) -> float:
        losses = global_steps(self, order, batch_size, on_step)
        self.sync()
        return float(np.mean([np.asarray(loss.addressable_data(0)) for loss in losses]))

    def sync(self) -> None:
        """Wait for the queued steps and give the model this process's copy of the replicated variables."""
        params, _, rest = self.state
        nnx.update(self.model, *jax.tree.map(_local_copy, (params, rest)))


make_trainer = Trainer.from_options
