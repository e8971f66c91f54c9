"""Multi-process training under torchrun (PyTorch DDP): process-group setup and rank helpers.

``torchrun`` (what ``NPROC=<n> ./run.sh ...`` starts) sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` in every process; ``start`` turns them into a process group (NCCL on CUDA, gloo on
CPU). Without them, or with one process, nothing is initialised and every helper here answers
as a single process would, so the usual one-process run takes no path of its own.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist

from mislabel.core.user_input import UserError

__all__ = ["start", "stop", "stopped_after", "rank", "world_size", "is_main", "barrier", "wrap", "on_main",
           "block_bounds", "gather_lists", "share_blocks"]

T = TypeVar("T")
# Rows of a uint8 image tensor staged on the GPU per NCCL broadcast: bounded, so sharing a large
# in-memory dataset never needs a second full copy on the device.
SHARE_CHUNK_BYTES = 64 * 2**20


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
    if world <= 1:
        return device
    local_rank = _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                            "lower NPROC to the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():  # find_issues starts the group before the Runner starts it again
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def stopped_after() -> Iterator[None]:
    """Run a command's block, then leave the process group. On success every rank first waits for the
    others: a rank that tore its gloo connections down while rank 0 was still reducing into it or
    writing files was aborted now and then (``terminate called without an active exception``). On an
    error the rank leaves at once; torchrun stops the others."""
    try:
        yield
    except BaseException:
        stop()
        raise
    barrier()
    stop()


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
    # Gradients as views of DDP's buckets: no copy per step. A 1-channel conv's weight gradient still
    # differs from its bucket view in the stride of the size-1 axis, the same memory layout, and DDP
    # warns of it once per process; the warning says nothing a user can act on.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                                     gradient_as_bucket_view=True)


def on_main(decide: Callable[[], T]) -> T:
    """``decide()`` on rank 0 alone, its result given to every rank: for choices that read or write
    files (a cache, a stored plan, a timing) which the ranks must agree on and only one may write.
    A UserError it raises is raised on every rank, so all of them stop with the same line."""
    if world_size() <= 1:
        return decide()
    shared: list = [None]
    if is_main():
        try:
            shared[0] = ("ok", decide())
        except UserError as err:
            shared[0] = ("error", str(err))
    dist.broadcast_object_list(shared, src=0)
    status, value = shared[0]
    if status == "error":
        raise UserError(value)
    return value


def block_bounds(count: int, of_rank: int | None = None) -> tuple[int, int]:
    """The contiguous block ``[start, stop)`` of ``count`` items that this rank (or ``of_rank``)
    handles; the whole range in one process. Blocks, not strides, so a rank's share of a tensor is
    one contiguous slice."""
    world, me = world_size(), rank() if of_rank is None else of_rank
    return count * me // world, count * (me + 1) // world


def gather_lists(mine: list) -> list:
    """Every rank's ``mine`` (its ``block_bounds`` share of some items), joined in rank order on
    every rank: the whole list, as one process would have made it."""
    if world_size() <= 1:
        return mine
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, mine)
    return [item for part in parts for item in part]


def share_blocks(tensor: torch.Tensor, bounds: Callable[[int], tuple[int, int]] | None = None) -> None:
    """Fill ``tensor`` (on the host) on every rank from the blocks the ranks filled: rank ``r`` wrote
    rows ``block_bounds`` gives it (or ``bounds(r)``, contiguous blocks in rank order), and afterwards
    every rank holds all rows. With NCCL the rows pass through this rank's GPU a bounded chunk at a time."""
    world = world_size()
    if world <= 1:
        return
    row_bytes = max(1, tensor[:1].numel() * tensor.element_size())
    chunk = max(1, SHARE_CHUNK_BYTES // row_bytes)
    staged_on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    for source in range(world):
        start, stop = block_bounds(len(tensor), source) if bounds is None else bounds(source)
        for piece in tensor[start:stop].split(chunk):
            if staged_on is None:
                dist.broadcast(piece, src=source)  # a row range of a contiguous tensor: filled in place
                continue
            staged = piece.to(staged_on)
            dist.broadcast(staged, src=source)
            piece.copy_(staged.cpu())
