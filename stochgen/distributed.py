"""Small helpers for multi-process data parallel training with ``torch.distributed``.

``stochgen.fit`` calls :func:`setup` and, when the launcher (``torchrun``) set
``WORLD_SIZE`` > 1, joins the process group (gloo on CPU, NCCL on CUDA). Gradients are
averaged by one flattened all-reduce per step (:func:`average_gradients`), which is
what ``DistributedDataParallel`` computes, without wrapping the model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Context", "setup", "teardown", "available", "average_gradients", "broadcast_module", "all_mean",
           "barrier"]


def available() -> bool:
    return dist.is_available()


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we called init_process_group, so we destroy it
    device: str = "cpu"       # where collective tensors live (NCCL needs CUDA tensors)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | torch.device = "cpu") -> Context:
    """Join the process group described by the launcher's environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        if world > 1:
            raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this PyTorch build")
        return Context(device=str(device))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    return Context(rank=dist.get_rank(), world=dist.get_world_size(),
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")), owns_group=owns,
                   device=str(device) if dist.get_backend() == "nccl" else "cpu")


def teardown(ctx: Context) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params, ctx: Context) -> None:
    """Replace each parameter's gradient by its mean over the ranks (one all-reduce)."""
    if not ctx.enabled:
        return
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world
    off = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[off:off + n].view_as(p).clone()
        off += n


def broadcast_module(module: torch.nn.Module, ctx: Context, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def all_mean(value: float | torch.Tensor, ctx: Context) -> float:
    """Mean of a scalar over the ranks."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().reshape(1).clone().to(ctx.device)
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ctx.world
    return float(t)


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()
