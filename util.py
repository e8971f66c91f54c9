"""Small shared utilities: user-facing errors, atomic file writes, seeding, running means.

Everything here is dependency-light so every module (and every test) can import it.
"""
from __future__ import annotations

import argparse
import csv
import functools
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

__all__ = [
    "UserError",
    "exit_on_user_error",
    "OneLineParser",
    "atomic_write",
    "atomic_write_csv",
    "atomic_torch_save",
    "seed_everything",
    "pick_device",
    "AverageMeter",
    "Dynamics",
    "save_dynamics",
    "load_dynamics",
    "load_metadata",
]


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, no traceback."""


F = TypeVar("F", bound=Callable[..., object])


def exit_on_user_error(main: F) -> F:
    """Wrap a command-line entry point so bad input ends in one line on stderr and exit 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapped  # type: ignore[return-value]


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line UserErrors (exit 2, no usage dump), like every other bad input.

    The error ends with a ``-h`` hint; ``launcher`` is what the user types before ``prog`` to run the
    command (``"python "`` for a script, ``"./"`` when ``prog`` names run.sh without its path).
    """

    def __init__(self, *args, launcher: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.launcher = launcher

    def error(self, message: str):
        raise UserError(f"{message}; see `{self.launcher}{self.prog} -h`")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so a killed run never leaves a torn file.

    The temporary file lives in the destination folder so the rename stays on one filesystem.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str]) -> None:
    """Rewrite a whole CSV log atomically (logs are rewritten each epoch, so a kill never tears them)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as handle:
            out = csv.DictWriter(handle, fieldnames=fieldnames)
            out.writeheader()
            out.writerows(rows)

    atomic_write(path, write)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def seed_everything(seed: int) -> None:
    """Seed every generator we use; CPU runs are then bit-for-bit repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU; an explicit CUDA request without a GPU is an error."""
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
        if isinstance(value, torch.Tensor):
            self.total = self.total + value.detach().double() * n
        else:
            self.total += float(value) * n
        self.count += n

    @property
    def avg(self) -> float:
        return float(self.total) / max(self.count, 1)


# ----------------------------------------------------------------------------------------------
# Training-dynamics files
#
# training_dynamics.npz (one row per recorded training sample, rows in `indices` order):
#   td      float16 [N, E, C]  probabilities per epoch; channel 0 = the assigned label, the other
#                              channels sorted by their mean probability over epochs, descending
#   labels  int64   [N, C]     which class each channel holds (labels[:, 0] = assigned label)
#   margin  float16 [N, E]     assigned logit minus the largest other logit (AUM's margin)
#   pred    int16   [N, E]     argmax class per epoch
#   indices int64   [N]        the dataset index of each row
# metadata.pth (plain tensors, loads with weights_only=True), indexed by *dataset* index:
#   train_indices, valid_indices, assigned_targets, and when known true_targets, label_flipped
# ----------------------------------------------------------------------------------------------

TD_FILE = "training_dynamics.npz"
METADATA_FILE = "metadata.pth"


@dataclass
class Dynamics:
    """One run's dynamics with every per-sample array aligned to the rows of ``td``."""

    td: np.ndarray
    labels: np.ndarray
    margin: np.ndarray
    pred: np.ndarray
    indices: np.ndarray
    flipped: np.ndarray | None = None
    true_labels: np.ndarray | None = None

    @property
    def assigned(self) -> np.ndarray:
        return self.labels[:, 0]

    @property
    def num_samples(self) -> int:
        return self.td.shape[0]

    @property
    def num_epochs(self) -> int:
        return self.td.shape[1]


def save_dynamics(folder: str | os.PathLike, dyn: Dynamics) -> Path:
    """Write ``training_dynamics.npz`` atomically (temp file + rename)."""
    path = Path(folder) / TD_FILE
    arrays = dict(
        td=dyn.td.astype(np.float16, copy=False),
        labels=dyn.labels.astype(np.int64, copy=False),
        margin=dyn.margin.astype(np.float16, copy=False),
        pred=dyn.pred.astype(np.int16, copy=False),
        indices=dyn.indices.astype(np.int64, copy=False),
    )

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    atomic_write(path, write)
    return path


def load_metadata(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise UserError(f"no {METADATA_FILE} in {folder}; run `./run.sh generate_td` for that folder first")
    try:
        meta = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}); regenerate it with `./run.sh generate_td`") from err
    if not isinstance(meta, dict) or "assigned_targets" not in meta:
        raise UserError(f"{path} is not a metadata file written by generate_td (no assigned_targets)")
    return meta


def load_dynamics(folder: str | os.PathLike) -> Dynamics:
    """Read a run folder's dynamics, attaching true labels and flips from metadata.pth when known."""
    folder = Path(folder)
    path = folder / TD_FILE
    if not folder.is_dir():
        raise UserError(f"run folder {folder} does not exist; pass the folder generate_td wrote")
    if not path.is_file():
        raise UserError(f"no {TD_FILE} in {folder}; run `./run.sh generate_td` for that folder first")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}: {err}); regenerate it with `./run.sh generate_td`") from err
    missing = {"td", "labels", "margin", "pred", "indices"} - arrays.keys()
    if missing:
        raise UserError(f"{path} lacks {sorted(missing)}; regenerate it with `./run.sh generate_td`")
    dyn = Dynamics(**{key: arrays[key] for key in ("td", "labels", "margin", "pred", "indices")})
    if (folder / METADATA_FILE).is_file():
        meta = load_metadata(folder)
        rows = torch.as_tensor(dyn.indices)
        if "label_flipped" in meta:
            dyn.flipped = meta["label_flipped"][rows].numpy().astype(bool)
        if "true_targets" in meta:
            dyn.true_labels = meta["true_targets"][rows].numpy().astype(np.int64)
    return dyn
