"""PyTorch's data-parallel twin: torch.distributed (gloo, the ranks on the CPU) and DistributedDataParallel.

The rank, world size and rendezvous come from the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT), read by torch.distributed's own ``env://`` resolver. Each rank takes its equal slice of every
global batch; the loss is the mean over the slice and DDP averages the gradients over ranks, which is the
gradient of the mean over the global batch.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from . import torch as twin
from .data_parallel import global_steps, rank_slice

# The twin's BatchNorm follows Keras's momentum, so SyncBatchNorm (CUDA only) cannot stand in for it: each
# rank normalises with its own slice's statistics.
SYNCHRONIZED_BATCHNORM = False
ENGINE = "torch.distributed DistributedDataParallel"


def initialize(threads: int | None) -> dict:
    """Join the process group; {rank, world, backend}."""
    twin.configure(threads)
    timeout = datetime.timedelta(seconds=float(os.environ.get("TWINCNN_RENDEZVOUS_TIMEOUT_S", 60)))
    dist.init_process_group("gloo", init_method="env://", timeout=timeout)  # the ranks train on the CPU
    return {"rank": dist.get_rank(), "world": dist.get_world_size(), "backend": dist.get_backend()}


def shutdown(completed: bool = False) -> None:
    """Leave the process group. ``completed``: every rank reached the end, so all wait for each other first:
    gloo's teardown while a peer still closes its connections can abort the process (std::terminate)."""
    if completed:
        dist.barrier()
    dist.destroy_process_group()


build = twin.build


class Trainer(twin.Trainer):
    """The twin's trainer with DDP around its model; step() takes a global batch and trains on this rank's slice."""

    def __init__(self, model, spec, config, metrics=()):
        super().__init__(model, spec, config, metrics)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.forward = DistributedDataParallel(self.model)  # its backward averages the gradients over ranks

    def step(self, idx):
        return self._eager_step(torch.as_tensor(rank_slice(idx, self.world, self.rank), device=self.device))

    def train_epoch(self, order, batch_size, on_step=None, validation=None) -> float:
        self.model.train()
        losses = global_steps(self, order, batch_size, on_step)
        total = torch.stack(losses).sum()
        dist.all_reduce(total)  # once an epoch: each rank's loss is its slice's mean
        return float(total) / (len(losses) * self.world)


make_trainer = Trainer.from_options
