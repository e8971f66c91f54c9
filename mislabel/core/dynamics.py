"""A run folder's dynamics files, in one place: what they hold, and how they are read, checked
and written. The recorder, the Runner, compare, the detector and the API all go through here.

``training_dynamics.npz`` (one row per recorded training sample, rows in ``indices`` order):

    td       float16 [N, E, C]  probabilities per epoch; channel 0 = the assigned label, the other
                                channels sorted by their mean probability over epochs, descending
    labels   int64   [N, C]     which class each channel holds (labels[:, 0] = assigned label)
    margin   float16 [N, E]     assigned logit minus the largest other logit (AUM's margin)
    pred     int16   [N, E]     argmax class per epoch
    indices  int64   [N]        the dataset index of each row, each once
    num_classes int64 []        the classifier's class count (files from before it existed lack it)

``metadata.pth`` (plain tensors, loads with ``weights_only=True``), indexed by *dataset* index:
``train_indices``, ``valid_indices``, ``assigned_targets`` (-1 where not recorded), and when the
true labels are known ``true_targets`` and ``label_flipped``.

``summary.json`` marks a finished run (its results); ``mislabel.reports.summary`` writes it.

Every reader validates (shapes, dtypes, finite values in range, class ids below the class count,
unique indices), so a damaged or foreign file is refused with one line instead of ranked at random
or allowed to size an allocation; every writer is atomic.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from mislabel.core.files import atomic_torch_save, atomic_write, torch_load
from mislabel.core.streaming import write_npz
from mislabel.core.user_input import UserError, require_folder

if TYPE_CHECKING:
    import torch

__all__ = ["TD_FILE", "METADATA_FILE", "SUMMARY_FILE", "MAX_CLASSES", "Dynamics", "save_dynamics", "write_td_file",
           "load_dynamics", "load_metadata", "write_metadata", "first_epochs", "subset_dynamics", "validate_dynamics"]

TD_FILE = "training_dynamics.npz"
METADATA_FILE = "metadata.pth"
SUMMARY_FILE = "summary.json"
# pred is stored as int16, so no file of this format holds a larger class id; the bound also keeps a
# damaged id from sizing an allocation when a file does not say its class count.
MAX_CLASSES = 2**15
REGENERATE = "the file is damaged or not from this tool; regenerate it with generate_td"


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
    num_classes: int | None = None  # the classifier's class count, when known (class ids lie below it)

    @property
    def assigned(self) -> np.ndarray:
        return self.labels[:, 0]

    @property
    def num_samples(self) -> int:
        return self.td.shape[0]

    @property
    def num_epochs(self) -> int:
        return self.td.shape[1]


def write_td_file(path: str | os.PathLike, count: int, epochs: int, channels: int,
                  td: Iterable[np.ndarray], labels: Iterable[np.ndarray], margin: Iterable[np.ndarray],
                  pred: Iterable[np.ndarray], indices: np.ndarray, num_classes: int | None = None) -> Path:
    """Write ``training_dynamics.npz`` atomically from row chunks of each array (each entry is
    streamed, so a recorder larger than RAM writes one chunk at a time); dtypes are the format's."""
    entries = [("td", (count, epochs, channels), np.float16, td), ("labels", (count, channels), np.int64, labels),
               ("margin", (count, epochs), np.float16, margin), ("pred", (count, epochs), np.int16, pred),
               ("indices", (count,), np.int64, [np.asarray(indices)])]
    if num_classes is not None:
        entries.append(("num_classes", (), np.int64, [np.asarray(num_classes)]))
    atomic_write(path, lambda tmp: write_npz(tmp, entries))
    return Path(path)


def save_dynamics(folder: str | os.PathLike, dyn: Dynamics) -> Path:
    """Write an in-memory ``Dynamics`` as a run folder's ``training_dynamics.npz``."""
    count, epochs, channels = dyn.td.shape
    return write_td_file(Path(folder) / TD_FILE, count, epochs, channels, [dyn.td], [dyn.labels], [dyn.margin],
                         [dyn.pred], dyn.indices, dyn.num_classes)


def write_metadata(folder: str | os.PathLike, train_indices: np.ndarray, valid_indices: np.ndarray,
                   assigned_targets: np.ndarray, true_targets: np.ndarray | None = None) -> None:
    """Write ``metadata.pth``; the targets are indexed by dataset index (-1 where unknown), and
    ``label_flipped`` is derived from them where both labels are known."""
    import torch

    meta = {"train_indices": torch.as_tensor(np.asarray(train_indices), dtype=torch.int64),
            "valid_indices": torch.as_tensor(np.asarray(valid_indices), dtype=torch.int64),
            "assigned_targets": torch.as_tensor(np.asarray(assigned_targets), dtype=torch.int64)}
    if true_targets is not None:
        true = torch.as_tensor(np.asarray(true_targets), dtype=torch.int64)
        meta.update(true_targets=true, label_flipped=(true != meta["assigned_targets"]) & (true >= 0))
    atomic_torch_save(meta, Path(folder) / METADATA_FILE)


def load_metadata(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise UserError(f"no {METADATA_FILE} in {folder}; run generate_td for that folder first")
    try:
        meta = torch_load(path)
    except Exception as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}); regenerate it with generate_td") from err
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
                        f"[{', '.join(map(str, shape))}]; {REGENERATE}")


def _value_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of a float array, NaN when it holds one: torch's reduction, about 40x faster than
    numpy's on float16 and without a mask as large as ``values``."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a read-only array (a memory-mapped file) is only read here
        try:
            low, high = torch.aminmax(torch.from_numpy(values))
        except (TypeError, ValueError, RuntimeError):  # a dtype, byte order or negative stride torch does not take
            return float(values.min()), float(values.max())
    return float(low), float(high)


def _first_nonfinite_row(values: np.ndarray) -> int:
    """Only on the error path: the mask is as large as ``values``."""
    return int(np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))[0])


def subset_dynamics(dyn: Dynamics, rows: np.ndarray) -> Dynamics:
    """The same run restricted to ``rows`` (positions), every per-sample array alike."""
    return Dynamics(td=dyn.td[rows], labels=dyn.labels[rows], margin=dyn.margin[rows], pred=dyn.pred[rows],
                    indices=dyn.indices[rows], flipped=None if dyn.flipped is None else dyn.flipped[rows],
                    true_labels=None if dyn.true_labels is None else dyn.true_labels[rows],
                    num_classes=dyn.num_classes)


def first_epochs(dyn: Dynamics, epochs: int) -> Dynamics:
    """The same run as if it had stopped after ``epochs`` epochs (views, no copy)."""
    return Dynamics(td=dyn.td[:, :epochs], labels=dyn.labels, margin=dyn.margin[:, :epochs], pred=dyn.pred[:, :epochs],
                    indices=dyn.indices, flipped=dyn.flipped, true_labels=dyn.true_labels, num_classes=dyn.num_classes)


def validate_dynamics(dyn: Dynamics, source: str | os.PathLike) -> Dynamics:
    """Check every array of ``dyn`` once, where dynamics enter from a file or a caller, so no scorer
    meets a 2-D ``td``, misaligned rows or NaN (which sklearn rejects and a ranking sorts at random).

    td float [N, E, C] in [0, 1] (float16 slack allowed); labels integer [N, C] and pred integer [N, E],
    class ids in [0, num_classes) (at most ``MAX_CLASSES``); margin float [N, E] finite; indices
    integer [N], >= 0 and unique; flipped/true_labels [N] when set.
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
    low, high = _value_range(td)
    if not (np.isfinite(low) and np.isfinite(high)):
        row = _first_nonfinite_row(td)
        raise UserError(f"{source}: td holds NaN or infinite probabilities (first at row {row}); the training "
                        "diverged or the file is damaged: regenerate it (a lower --lr if it diverged)")
    if low < -PROBABILITY_SLACK or high > 1 + PROBABILITY_SLACK:
        raise UserError(f"{source}: td holds values in [{low:g}, {high:g}], but probabilities lie in [0, 1]; "
                        f"{REGENERATE}")
    if dyn.margin is not None:
        margin = np.asarray(dyn.margin)
        if not all(np.isfinite(_value_range(margin))):
            row = _first_nonfinite_row(margin)
            raise UserError(f"{source}: margin holds NaN or infinite values (first at row {row}); the training "
                            "diverged or the file is damaged: regenerate it (a lower --lr if it diverged)")
    _check_class_ids(dyn, source)
    _check_indices(np.asarray(dyn.indices), source)
    return dyn


def _check_class_ids(dyn: Dynamics, source: str) -> None:
    """labels and pred hold class ids in [0, the class count): from ``dyn.num_classes`` when known, else
    at most ``MAX_CLASSES``, so a damaged id is refused instead of ranked or sized into an allocation."""
    classes = dyn.num_classes
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, (int, np.integer))
                                or not 1 <= classes <= MAX_CLASSES):
        raise UserError(f"{source}: num_classes is {classes!r}, expected a whole number in [1, {MAX_CLASSES}]")
    bound = MAX_CLASSES if classes is None else int(classes)
    where = (f"the run has {bound} classes (ids 0-{bound - 1})" if classes is not None
             else f"class ids stop at {MAX_CLASSES - 1} (pred is stored as int16)")
    for name in ("labels", "pred"):
        values = np.asarray(getattr(dyn, name))
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= bound:
            raise UserError(f"{source}: {name} holds class {low if low < 0 else high}, but {where}; {REGENERATE}")
    # each labels row names the classes of td's channels: a class twice would be scored as two classes
    ordered = np.sort(np.asarray(dyn.labels), axis=1)
    repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    if len(repeated):
        raise UserError(f"{source}: labels row {int(repeated[0])} names a class twice ({len(repeated)} such rows), but "
                        f"each row names every stored channel's class once; {REGENERATE}")


def _check_indices(indices: np.ndarray, source: str) -> None:
    """Each row is one dataset sample: indices non-negative and unique (a repeat would score one sample twice)."""
    if indices.min() < 0:
        raise UserError(f"{source}: indices holds {int(indices.min())}, but dataset indices are >= 0; {REGENERATE}")
    ordered = np.sort(indices)
    repeated = np.flatnonzero(ordered[1:] == ordered[:-1])
    if len(repeated):
        raise UserError(f"{source}: indices holds {int(ordered[repeated[0]])} more than once ({len(repeated)} "
                        f"repeats), but each row must be a different sample; {REGENERATE}")


def _stored_class_count(arrays: dict[str, np.ndarray], path: Path) -> int | None:
    """The npz's ``num_classes`` entry (a 0-d integer), or None in files written before it existed."""
    if "num_classes" not in arrays:
        return None
    value = arrays["num_classes"]
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise UserError(f"{path}: num_classes is {value.dtype} {list(value.shape)}, expected one integer; {REGENERATE}")
    return int(value)


def load_dynamics(folder: str | os.PathLike) -> Dynamics:
    """Read and validate a run folder's dynamics, attaching true labels and flips from metadata.pth when known."""
    folder = require_folder(folder, "run folder", "pass the folder generate_td wrote")
    path = folder / TD_FILE
    if not path.is_file():
        raise UserError(f"no {TD_FILE} in {folder}; run generate_td for that folder first")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}: {err}); regenerate it with generate_td") from err
    missing = {"td", "labels", "margin", "pred", "indices"} - arrays.keys()
    if missing:
        raise UserError(f"{path} lacks {sorted(missing)}; regenerate it with generate_td")
    dyn = validate_dynamics(Dynamics(**{key: arrays[key] for key in ("td", "labels", "margin", "pred", "indices")},
                                     num_classes=_stored_class_count(arrays, path)), path)
    if (folder / METADATA_FILE).is_file():
        import torch

        meta = load_metadata(folder)
        rows = torch.as_tensor(dyn.indices)
        for key in ("assigned_targets", "label_flipped", "true_targets"):
            if key in meta and int(rows.max()) >= len(meta[key]):
                raise UserError(f"{path} indexes samples up to {int(rows.max())} but {folder / METADATA_FILE}'s "
                                f"{key} holds {len(meta[key])}; the two files come from different runs, "
                                "regenerate them")
        recorded = meta["assigned_targets"][rows].numpy()
        differ = np.flatnonzero((recorded >= 0) & (recorded != dyn.assigned))
        if len(differ):  # the flips below would be another run's
            raise UserError(f"{folder / METADATA_FILE} gives {len(differ)} samples other labels than {path} (the "
                            f"first: index {int(dyn.indices[differ[0]])}); the two files come from different runs, "
                            "regenerate them")
        if "label_flipped" in meta:
            dyn.flipped = meta["label_flipped"][rows].numpy().astype(bool)
        if "true_targets" in meta:
            dyn.true_labels = meta["true_targets"][rows].numpy().astype(np.int64)
    return dyn
