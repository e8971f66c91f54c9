"""Label repair ("data debugging", the seed's Chapter 4.3): fix the labels the detector suspects most.

    ./run.sh repair <run_folder> <detector_file> <repair_ratio> [--overwrite]   (mislabel.commands.repair)

The detector ranks the run's recorded training samples (``get_order`` on the run's dynamics); the
top ``repair_ratio`` of them get a new label:

* ``true_label``: the ground truth from the run's metadata.pth (``true_targets``), known when the
  run's noise was synthetic, as for CUB in the paper;
* ``last_epoch_prediction``: otherwise (real-world noise, as for WebVision), the class the
  phase-1 classifier predicted for the sample in the last recorded epoch (``pred[:, -1]`` of
  training_dynamics.npz). We read it from the dynamics rather than re-running model.pth, so a
  repair needs neither the images nor a GPU.

Files written into the run folder (``{ratio}`` is the ratio in shortest form: 0.05, 0.1):

``repair{ratio}.json``
    A JSON list of ints, one label per training sample of the *dataset*, position = dataset index
    (the index space of metadata.pth's ``train_indices``/``valid_indices``; its length is
    ``len(assigned_targets)``). Unrepaired samples, including the held-out validation samples the
    detector never saw, keep their assigned (noisy) label.
``repair{ratio}.meta.json``
    ``format``, ``rule``, ``repair_ratio``, ``run_folder``, ``detector_file``, ``num_ranked``,
    ``num_selected``, ``selected_indices`` (dataset indices of the repaired samples, most
    suspicious first), ``changed_indices`` (sorted; those whose label actually changed),
    ``num_changed``, ``flipped_share_of_selected`` and ``detection`` (AUC, mAP, ...; null without
    known flips).

The meta file is written first and the list last, so an existing list means a finished repair.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mislabel.scoring.scores import top_suspects
from mislabel.core.user_input import UserError
from mislabel.core.files import atomic_write, read_record
from mislabel.core.dynamics import load_dynamics, load_metadata

__all__ = ["REPAIR_FORMAT", "Repair", "parse_ratio", "repair_paths", "build_repair", "write_repair",
           "read_repair", "ensure_repair"]

REPAIR_FORMAT = "mislabel-repair/1"


@dataclass
class Repair:
    labels: np.ndarray   # int64 [num_train]: the repaired label of every dataset index
    meta: dict


def parse_ratio(text: str | float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"repair_ratio {text!r} is not a number; pass a fraction such as 0.05") from None
    if not 0.0 <= value <= 1.0:
        raise UserError(f"repair_ratio {text} is outside [0, 1]; pass a fraction such as 0.05 for the top 5%")
    return value


def repair_paths(run_folder: str | Path, ratio: float) -> tuple[Path, Path]:
    stem = f"repair{ratio:g}"
    return Path(run_folder) / f"{stem}.json", Path(run_folder) / f"{stem}.meta.json"


def build_repair(run_folder: str | Path, detector_file: str | Path, ratio: float,
                 device: torch.device | str = "cpu") -> Repair:
    """Rank the run with the detector and relabel its top ``ratio`` (see the module docstring)."""
    dyn = load_dynamics(run_folder)
    meta = load_metadata(run_folder)
    assigned = meta["assigned_targets"].numpy().astype(np.int64)
    if not np.array_equal(assigned[dyn.indices], dyn.assigned):
        raise UserError(f"{run_folder}: metadata.pth and training_dynamics.npz disagree on the labels; "
                        "regenerate the run with generate_td")
    suspects = top_suspects(detector_file, dyn, ratio, device)
    selected = dyn.indices[suspects.rows]
    if dyn.true_labels is not None:
        rule, new_labels = "true_label", dyn.true_labels[suspects.rows]
    else:
        rule, new_labels = "last_epoch_prediction", dyn.pred[suspects.rows, -1].astype(np.int64)
    labels = assigned.copy()
    labels[selected] = new_labels
    changed = np.flatnonzero(labels != assigned)
    info = {"format": REPAIR_FORMAT, "rule": rule, "repair_ratio": ratio, "run_folder": str(run_folder),
            "detector_file": str(Path(detector_file).resolve()), "num_ranked": int(dyn.num_samples),
            "num_selected": int(len(selected)), "selected_indices": selected.tolist(),
            "changed_indices": changed.tolist(), "num_changed": int(len(changed)),
            "flipped_share_of_selected": suspects.flipped_share, "detection": suspects.ranking.metrics}
    return Repair(labels=labels, meta=info)


def write_repair(run_folder: str | Path, repair: Repair, overwrite: bool = False) -> Path:
    labels_path, meta_path = repair_paths(run_folder, repair.meta["repair_ratio"])
    if labels_path.exists() and not overwrite:
        raise UserError(f"{labels_path} already exists; pass --overwrite to rebuild it or use it as it is")
    meta_text = json.dumps(repair.meta, indent=2) + "\n"
    atomic_write(meta_path, lambda tmp: Path(tmp).write_text(meta_text))
    labels_text = json.dumps(repair.labels.tolist()) + "\n"
    atomic_write(labels_path, lambda tmp: Path(tmp).write_text(labels_text))
    return labels_path


def read_repair(path: str | Path, num_train: int, num_classes: int) -> Repair:
    """Read a repair list (and its sidecar when present), checking it fits the dataset."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"repair file {path} does not exist; build one with repair or pass --repair_ratio")
    try:
        labels = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"repair file {path} is not valid JSON ({err.__class__.__name__}); rebuild it") from None
    if not isinstance(labels, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in labels):
        raise UserError(f"repair file {path} must be a JSON list of integer labels; rebuild it with repair")
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != num_train:
        raise UserError(f"repair file {path} has {len(labels)} labels but the dataset has {num_train} training "
                        "samples; use the repair file of a run on this dataset")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"repair file {path} has labels outside 0..{num_classes - 1}; use one built for this dataset")
    meta_path = path.with_name(path.name[:-len(".json")] + ".meta.json") if path.name.endswith(".json") else None
    meta = (read_record(meta_path, "rebuild the repair with repair --overwrite") if meta_path is not None else None)
    return Repair(labels=labels, meta=meta or {})


def ensure_repair(run_folder: str | Path, detector_file: str | Path, ratio: float, device: torch.device,
                  overwrite: bool = False) -> Path:
    """The trainers' ``--repair_ratio``: reuse the run's repair file from the same detector, else build it."""
    labels_path, meta_path = repair_paths(run_folder, ratio)
    if labels_path.exists() and not overwrite:
        previous = (read_record(meta_path, "pass --overwrite to rebuild the repair") or {}).get("detector_file")
        if previous != str(Path(detector_file).resolve()):
            raise UserError(f"{labels_path} exists but was built with detector {previous}; pass --overwrite to "
                            "rebuild it with this detector, or --repair_file to use it as it is")
        print(f"using the existing {labels_path}")
        return labels_path
    return write_repair(run_folder, build_repair(run_folder, detector_file, ratio, device), overwrite=True)
