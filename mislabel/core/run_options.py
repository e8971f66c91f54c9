"""The choices a run is made of, as plain values with their checks: where the data lives, the
training recipe, how dynamics are recorded and stored, and the cross-validation fold count.

Torch-free, so ``runner.py`` and ``find_issues`` check these flags before torch loads; the modules
that act on them (``data``, ``training``, ``recorder``, ``crossval``) import them from here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from mislabel.core.user_input import UserError, require_folder

__all__ = ["Recipe", "SCHEDULES", "TD_MODES", "STORES", "LOSS_TYPES", "check_weighted_loss", "DEFAULT_FOLDS",
           "EMBEDDED_DATASETS", "LARGE_DATASETS", "check_datadir", "MAX_EPOCHS", "MAX_BATCH_SIZE"]

EMBEDDED_DATASETS = ("digits",)  # shipped inside a package (sklearn's digits): no --datadir
LARGE_DATASETS = ("webvision50", "clothing100k")  # real-world noise: no synthetic noise added

TD_MODES = ("train", "eval")
STORES = ("auto", "ram", "memmap")
LOSS_TYPES = ("cross_entropy", "reed_soft", "reed_hard")  # losses.LOSSES holds their functions


def check_weighted_loss(loss_type: str) -> None:
    """Per-sample loss weights (``denoise --action downweight``) scale cross-entropy only: the other
    ``--loss_type`` losses (Reed's bootstrapping) return a batch mean, with no per-sample values to weight."""
    if loss_type != "cross_entropy":
        raise UserError(f"down-weighting samples needs --loss_type cross_entropy, not {loss_type}; "
                        "pass --loss_type cross_entropy or another --action")
DEFAULT_FOLDS = 4  # each model sees 75% of the rows: close to phase 1's model at a 4x training bill
MAX_EPOCHS = 10_000     # 50x the seed's 200; the dynamics grow with the epochs (samples x epochs x classes)
MAX_BATCH_SIZE = 65_536  # beyond any accelerator's memory for the networks here


# step: the seed's step decay; onecycle: a short fine-tune's warm-up and cosine annealing (--mode finetune)
SCHEDULES = ("step", "onecycle")


@dataclass
class Recipe:
    """The seed's phase-1 recipe (ResNet-32 on CIFAR); every value is a command-line flag."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9          # Nesterov momentum 0.9, the CIFAR ResNet standard
    weight_decay: float = 1e-4
    lr_milestones: tuple[float, ...] = (0.5, 0.75)   # fractions of the epochs where lr drops
    lr_gamma: float = 0.1
    loss_type: str = "cross_entropy"
    schedule: str = "step"         # step: x lr_gamma at lr_milestones; onecycle: warm up then anneal, per step

    def validate(self) -> None:
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise UserError(f"--num_epochs {self.epochs} is outside 1..{MAX_EPOCHS}; pass e.g. --num_epochs 30")
        if not 2 <= self.batch_size <= MAX_BATCH_SIZE:
            raise UserError(f"--batch_size {self.batch_size} is outside 2..{MAX_BATCH_SIZE} (BatchNorm needs two "
                            "samples); pass e.g. --batch_size 128")
        for flag, value in (("--lr", self.lr), ("--momentum", self.momentum), ("--wd", self.weight_decay)):
            if not math.isfinite(value):  # NaN passes every comparison below, then trains garbage
                raise UserError(f"{flag} {value} is not a finite number; pass e.g. {flag} "
                                f"{getattr(Recipe, _FIELD[flag])}")
        if self.lr <= 0:
            raise UserError(f"--lr {self.lr} must be positive")
        if not 0 <= self.momentum < 1:
            raise UserError(f"--momentum {self.momentum} is outside [0, 1); pass e.g. 0.9")
        if self.weight_decay < 0:
            raise UserError(f"--wd {self.weight_decay} is negative; pass e.g. 1e-4, or 0 for none")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; one of {SCHEDULES}")
        if self.loss_type not in LOSS_TYPES:
            raise UserError(f"unknown --loss_type {self.loss_type!r}; choose one of: {', '.join(LOSS_TYPES)}")


_FIELD = {"--lr": "lr", "--momentum": "momentum", "--wd": "weight_decay"}  # a flag's Recipe field, for its hint


def check_datadir(dataset: str, datadir: str | None) -> None:
    """A dataset read from disk needs ``datadir``, an existing folder (an embedded one ignores it)."""
    if dataset in EMBEDDED_DATASETS:
        return
    if datadir is None:
        raise UserError(f"{dataset} is read from disk; pass --datadir, the folder that holds {dataset}/ (see README)")
    require_folder(datadir, "datadir", "pass the folder that holds <dataset>/ (see README)")
