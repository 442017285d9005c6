"""Process-group setup for `torchrun` (PyTorch DDP). A plain `janus train` is a world of one.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we read them, pick NCCL on GPU and gloo on CPU, and
give every collective a timeout so that a dead rank fails the job instead of hanging it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from janusgen.errors import JanusError
from janusgen.hardware import pick_device


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_preference: str = "auto", timeout_s: float = 600.0) -> DistributedContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # device_id binds the NCCL communicator to this rank's GPU at once (no guess from the rank)
        options = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **options)
    return DistributedContext(rank, world_size, local_rank, device)


def on_main_rank(ctx: DistributedContext, job: Callable[[], None]) -> None:
    """Run `job` on rank 0 only (e.g. hashing files every rank would read the same), then let every rank
    raise the JanusError it raised, so that all ranks stop together with the same message."""
    error = None
    if ctx.is_main:
        try:
            job()
        except JanusError as e:
            error = str(e)
    if ctx.enabled:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise JanusError(error)


def all_reduce_sum(ctx: DistributedContext, values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (no-op in a world of one)."""
    if ctx.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_float(ctx: DistributedContext, value: float) -> float:
    """Rank 0's value (e.g. its clock), so that every rank takes the same time-based decisions."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.broadcast(t, src=0)
    return float(t.item())


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistributedContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
