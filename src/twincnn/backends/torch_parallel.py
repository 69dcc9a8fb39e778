"""One rank of PyTorch data-parallel training: torch.distributed (gloo on the CPU) and DistributedDataParallel.

The rank, world size and rendezvous come from the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT), read by torch.distributed's own ``env://`` resolver. Each rank takes its equal slice of every
global batch; the loss is the mean over the slice and DDP averages the gradients over ranks, which is the
gradient of the mean over the global batch.
"""

from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import torch as twin

# The twin's BatchNorm follows Keras's momentum, so SyncBatchNorm (CUDA only) cannot stand in for it: each
# rank normalises with its own slice's statistics.
SYNCHRONIZED_BATCHNORM = False
ENGINE = "torch.distributed DistributedDataParallel"


def process_group_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def train(spec, weights: dict, x: np.ndarray, y: np.ndarray, batches: np.ndarray, lr: float, threads: int,
          adam: str = "keras") -> tuple[int, dict]:
    """(this rank, its final canonical weights) after one step per global batch."""
    twin.configure(threads)
    timeout = datetime.timedelta(seconds=float(os.environ.get("TWINCNN_RENDEZVOUS_TIMEOUT_S", 60)))
    dist.init_process_group(process_group_backend(), init_method="env://", timeout=timeout)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        model = twin.build(spec)
        twin.set_weights(model, spec, weights)
        parallel = DistributedDataParallel(model)
        optimizer = twin.make_optimizer(model, lr, adam)
        inputs, labels = twin.to_input(x), torch.as_tensor(np.asarray(y), dtype=torch.long)
        for batch in batches:
            rows = torch.as_tensor(np.array_split(batch, world)[rank])
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(parallel(inputs[rows]), labels[rows])
            loss.backward()  # DDP's all-reduce averages the gradients over the ranks here
            optimizer.step()
        return rank, twin.get_weights(model, spec)
    finally:
        dist.destroy_process_group()
