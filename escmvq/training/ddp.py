"""DDP helpers: ``torchrun --nproc-per-node K escmvq train ...`` trains with PyTorch
DistributedDataParallel (gloo on CPU). Every rank sees a disjoint slice of each epoch's
permutation (the permutation generator is seeded identically on all ranks); gradients are
averaged by DDP; dead-codeword decisions use all-reduced usage counts and rank 0's
replacement vectors (broadcast); only rank 0 evaluates, logs and writes checkpoints.
"""
from __future__ import annotations

import os

import torch.distributed as dist

__all__ = ["world_from_env", "local_rank", "setup", "teardown", "rank_world"]


def world_from_env() -> tuple[int, int]:
    """``(rank, world_size)`` as set by torchrun (``(0, 1)`` otherwise)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's GPU index on its node under torchrun (``LOCAL_RANK``); 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0")) if world_from_env()[1] > 1 else 0


def setup(backend: str = "gloo") -> tuple[int, int]:
    rank, world = world_from_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend)
    return rank, world


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
