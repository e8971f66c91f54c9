"""Files that are never torn, checkpoints that never unpickle, and run-wide helpers.

Every result file is written through ``atomic_write`` (temp file beside it, then rename), so a
killed or out-of-space command leaves the old file, never half a new one. torch is imported
inside the few functions that use it, so importing this module never loads it.
"""
from __future__ import annotations

import csv
import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from mislabel.core.user_input import UserError, is_no_space, no_space_message

if TYPE_CHECKING:
    import torch

__all__ = ["atomic_write", "atomic_write_all", "atomic_write_csv", "atomic_torch_save", "torch_load", "seed_everything",
           "pick_device", "AverageMeter"]


def _current_umask() -> int:
    """The process umask (only readable by setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; results are chmodded to what a plain open() would give, so
# collaborators on a shared machine can read them (0644 under the usual umask 022).
_FILE_MODE = 0o666 & ~_current_umask()


def _temp_beside(path: Path) -> str:
    """A fresh temporary file in ``path``'s folder (so the final rename stays on one filesystem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    return tmp


def atomic_write_all(writes: dict[str | os.PathLike, Callable[[str], None]]) -> None:
    """Write a set of files all or nothing: each ``write(tmp_path)`` first, then every rename.

    Any failure (a full disk included) removes the temporary files and leaves the old set as it
    was, so a folder never mixes new and old outputs of one command. A full disk becomes a
    UserError naming the file.
    """
    temps: dict[Path, str] = {}
    current = None
    try:
        for current, write in ((Path(p), w) for p, w in writes.items()):
            temps[current] = _temp_beside(current)
            write(temps[current])
        for current, tmp in temps.items():
            os.replace(tmp, current)
    except Exception as err:
        if is_no_space(err):
            raise UserError(no_space_message(current)) from err
        raise
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so a killed run never leaves a torn file."""
    atomic_write_all({path: write})


def atomic_write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str]) -> None:
    """Rewrite a whole CSV log atomically (logs are rewritten each epoch, so a kill never tears them)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as handle:
            out = csv.DictWriter(handle, fieldnames=fieldnames)
            out.writeheader()
            out.writerows(rows)

    atomic_write(path, write)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """torch.save through a Python file, whose failed writes raise OSError with an errno (writing to
    a path, torch reports a full disk as an anonymous RuntimeError)."""
    import torch

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    atomic_write(path, write)


def torch_load(path: str | os.PathLike) -> object:
    """``torch.load(weights_only=True)`` onto the CPU, quietly: on a foreign file (a raw pickle) torch
    warns before it fails, and those warnings would precede the one error line the caller prints."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)



def seed_everything(seed: int) -> None:
    """Seed every generator we use; CPU runs are then bit-for-bit repeatable."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU; an explicit CUDA request without a GPU is an error."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested} was asked for but no CUDA GPU is visible; use --device cpu")
    try:
        return torch.device(requested)
    except RuntimeError as err:
        raise UserError(f"unknown --device {requested!r}; use auto, cpu or cuda[:N]") from err


class AverageMeter:
    """Running weighted mean of a scalar (loss, error) over batches.

    A tensor value is summed where it lives, in float64: reading it with ``float()`` every batch
    would make the host wait for the GPU each step. The sum is the same float64 arithmetic as
    for Python floats, so the mean is bit-identical either way; ``avg`` reads it once.
    """

    def __init__(self) -> None:
        self.total: float | torch.Tensor = 0.0
        self.count = 0

    def update(self, value: float | torch.Tensor, n: int = 1) -> None:
        import torch  # already loaded by whoever made the tensor: a dictionary lookup

        if isinstance(value, torch.Tensor):
            self.total = self.total + value.detach().double() * n
        else:
            self.total += float(value) * n
        self.count += n

    @property
    def avg(self) -> float:
        return float(self.total) / max(self.count, 1)
