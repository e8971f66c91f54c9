"""Small shared utilities: user-facing errors, atomic file writes, seeding, running means.

Everything here is dependency-light so every module (and every test) can import it: torch is
imported inside the few functions that use it, so importing ``util`` (for ``UserError``, say)
never loads it. The command-line pieces live in ``mislabel.user_input`` and are re-exported.
"""
from __future__ import annotations

import csv
import os
import random
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from mislabel.user_input import (SEED_LIMIT, OneLineParser, UserError, check_output_folder, exit_on_user_error,
                                 is_no_space, no_space_message, require_file, require_folder, seed_value,
                                 single_path_component)

if TYPE_CHECKING:
    import torch

__all__ = [
    "UserError",
    "exit_on_user_error",
    "OneLineParser",
    "atomic_write",
    "atomic_write_all",
    "atomic_write_csv",
    "is_no_space",
    "no_space_message",
    "require_folder",
    "require_file",
    "check_output_folder",
    "single_path_component",
    "seed_value",
    "SEED_LIMIT",
    "atomic_torch_save",
    "torch_load",
    "seed_everything",
    "pick_device",
    "AverageMeter",
    "Dynamics",
    "save_dynamics",
    "load_dynamics",
    "load_metadata",
    "validate_dynamics",
]


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
        meta = torch_load(path)
    except Exception as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}); regenerate it with `./run.sh generate_td`") from err
    if not isinstance(meta, dict) or "assigned_targets" not in meta:
        raise UserError(f"{path} is not a metadata file written by generate_td (no assigned_targets)")
    return meta


PROBABILITY_SLACK = 2e-3  # float16 rounds a probability of 1 within a few 1e-4 of it


def _check_array(source: str, name: str, array: np.ndarray, kind: str, shape: tuple[int | str, ...]) -> None:
    """One array's dtype family ("f" float, "i" integer) and shape (a str names a size not yet known)."""
    family = "f" if np.issubdtype(array.dtype, np.floating) else "i" if np.issubdtype(array.dtype, np.integer) else "?"
    fits = array.ndim == len(shape) and all(isinstance(s, str) or s == a for s, a in zip(shape, array.shape))
    if family != kind or not fits:
        expected = {"f": "float", "i": "integer"}[kind]
        raise UserError(f"{source}: {name} is {array.dtype} {list(array.shape)}, expected {expected} "
                        f"[{', '.join(map(str, shape))}]; the file is damaged or not from this tool, regenerate it "
                        "with `./run.sh generate_td`")


def _first_nonfinite_row(values: np.ndarray) -> int:
    """Only on the error path: the mask is as large as ``values``."""
    return int(np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))[0])


def validate_dynamics(dyn: Dynamics, source: str | os.PathLike) -> Dynamics:
    """Check every array of ``dyn`` once, where dynamics enter from a file or a caller, so no scorer
    meets a 2-D ``td``, misaligned rows or NaN (which sklearn rejects and a ranking sorts at random).

    td float [N, E, C] in [0, 1] (float16 slack allowed); labels integer [N, C] >= 0; margin float
    [N, E] finite; pred integer [N, E]; indices integer [N] >= 0; flipped/true_labels [N] when set.
    """
    source = str(source)
    td = np.asarray(dyn.td)
    _check_array(source, "td", td, "f", ("samples", "epochs", "channels"))
    count, epochs, channels = td.shape
    if min(td.shape) == 0:
        raise UserError(f"{source}: td is empty ({list(td.shape)}); record at least one epoch of one sample")
    _check_array(source, "labels", np.asarray(dyn.labels), "i", (count, channels))
    _check_array(source, "pred", np.asarray(dyn.pred), "i", (count, epochs))
    _check_array(source, "indices", np.asarray(dyn.indices), "i", (count,))
    if dyn.margin is not None:
        _check_array(source, "margin", np.asarray(dyn.margin), "f", (count, epochs))
    for name in ("flipped", "true_labels"):
        value = getattr(dyn, name)
        if value is not None and np.shape(value) != (count,):
            raise UserError(f"{source}: {name} has shape {list(np.shape(value))}, expected [{count}]")
    # min/max propagate NaN and see inf, without a mask as large as td
    low, high = float(td.min()), float(td.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        row = _first_nonfinite_row(td)
        raise UserError(f"{source}: td holds NaN or infinite probabilities (first at row {row}); the training "
                        "diverged or the file is damaged: regenerate it (a lower --lr if it diverged)")
    if low < -PROBABILITY_SLACK or high > 1 + PROBABILITY_SLACK:
        raise UserError(f"{source}: td holds values in [{low:g}, {high:g}], but probabilities lie in [0, 1]; "
                        "regenerate the file with `./run.sh generate_td`")
    if dyn.margin is not None:
        margin = np.asarray(dyn.margin)
        if not (np.isfinite(float(margin.min())) and np.isfinite(float(margin.max()))):
            row = _first_nonfinite_row(margin)
            raise UserError(f"{source}: margin holds NaN or infinite values (first at row {row}); the training "
                            "diverged or the file is damaged: regenerate it (a lower --lr if it diverged)")
    for name in ("labels", "pred", "indices"):
        if np.asarray(getattr(dyn, name)).min() < 0:
            raise UserError(f"{source}: {name} holds negative class ids or indices; regenerate the file")
    return dyn


def load_dynamics(folder: str | os.PathLike) -> Dynamics:
    """Read and validate a run folder's dynamics, attaching true labels and flips from metadata.pth when known."""
    folder = require_folder(folder, "run folder", "pass the folder generate_td wrote")
    path = folder / TD_FILE
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
    dyn = validate_dynamics(Dynamics(**{key: arrays[key] for key in ("td", "labels", "margin", "pred", "indices")}),
                            path)
    if (folder / METADATA_FILE).is_file():
        import torch

        meta = load_metadata(folder)
        rows = torch.as_tensor(dyn.indices)
        for key in ("label_flipped", "true_targets"):
            if key in meta and int(rows.max()) >= len(meta[key]):
                raise UserError(f"{path} indexes samples up to {int(rows.max())} but {folder / METADATA_FILE}'s "
                                f"{key} holds {len(meta[key])}; the two files come from different runs, regenerate them")
        if "label_flipped" in meta:
            dyn.flipped = meta["label_flipped"][rows].numpy().astype(bool)
        if "true_targets" in meta:
            dyn.true_labels = meta["true_targets"][rows].numpy().astype(np.int64)
    return dyn
