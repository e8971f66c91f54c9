"""Multi-process training under torchrun (PyTorch DDP): process-group setup and rank helpers.

``torchrun`` (what ``NPROC=<n> ./run.sh ...`` starts) sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` in every process; ``start`` turns them into a process group (NCCL on CUDA, gloo on
CPU). Without them, or with one process, nothing is initialised and every helper here answers
as a single process would, so the usual one-process run takes no path of its own.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from util import UserError

__all__ = ["start", "stop", "rank", "world_size", "is_main", "barrier", "wrap"]


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text) if text else default
    except ValueError:
        raise UserError(f"{name}={text!r} is not a whole number; launch multi-process runs with torchrun "
                        "(NPROC=<n> ./run.sh ...)") from None


def start(device: torch.device) -> torch.device:
    """Join the process group torchrun describes, if any; returns this process's device (its own
    GPU, ``cuda:LOCAL_RANK``, when running on CUDA)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1 or dist.is_initialized():
        return device
    local_rank = _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                            "lower NPROC to the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes files: rank 0, or the only process."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank got here (rank 0 prepared the run folder, say); no-op in one process."""
    if world_size() > 1:
        dist.barrier()


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module to train: ``model`` itself in one process, a DistributedDataParallel around it
    otherwise. State dicts, evaluation and checkpoints keep using ``model`` (no ``module.`` prefix,
    and no collective calls that only some ranks would make)."""
    if world_size() <= 1:
        return model
    device = next(model.parameters()).device
    # gradients as views of DDP's buckets: no copy per step, and no stride warning for 1-channel convs
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                                     gradient_as_bucket_view=True)
