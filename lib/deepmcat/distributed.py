"""Training on several processes with ``torch.distributed`` (launched by ``torchrun``).

Each rank extracts the features of its shard of the units (every ``world``-th unit); the features are
gathered, rank 0 fits PCA + k-means and broadcasts the result; the network trains as DistributedDataParallel
with every rank taking its slice of each global batch (the same uniform-over-clusters order on all ranks,
drawn from the same seed); rank 0 writes checkpoints and publishes the model. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place: ``rank`` of ``world`` (1 = not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> np.ndarray:
        """Indices of the units this rank handles: every ``world``-th, starting at ``rank``."""
        return np.arange(self.rank, n, self.world)

    def split(self, batch: np.ndarray) -> np.ndarray:
        """This rank's part of a global batch."""
        return batch[self.rank :: self.world]

    def gather_rows(self, local: np.ndarray, n: int) -> np.ndarray:
        """Reassemble (n, d) rows from every rank's :meth:`shard` rows, in unit order, on every rank."""
        if not self.active:
            return local
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, local)
        full = np.empty((n, local.shape[1]), dtype=local.dtype)
        for r, part in enumerate(parts):
            full[np.arange(r, n, self.world)] = part
        return full

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, obj)
        return parts

    def broadcast(self, obj: Any) -> Any:
        """``obj`` of rank 0, on every rank."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_from_env(device: str) -> tuple[Ranks, str]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Returns the ranks and the device this rank uses: ``cuda:<local rank>`` when CUDA is asked for (or
    ``auto`` finds GPUs), else the CPU with the gloo backend.
    """
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        raise ValueError("--distributed needs torchrun (or RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set): "
                         "torchrun --nproc_per_node N -m deepmcat.cli train --distributed ...")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    else:
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
