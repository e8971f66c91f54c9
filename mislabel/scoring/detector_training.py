"""Phase 2: train the LSTM noise detector on training dynamics, supervised by synthetic flips.

    from mislabel.scoring.detector_training import DetectorRecipe, train_detector

    trained = train_detector(["runs/a", "runs/b"], DetectorRecipe(epochs=8), out="mine.pth.tar")
    trained.metrics["auc"]          # held-out AUC of the epoch kept

Several runs can be pooled, of any lengths: by default every run is resampled to 32 epochs and the
detector is the variant bench/detection.py measured best in transfer (``DetectorRecipe``'s
defaults). A stratified 90/10 split of the pooled samples (``HOLDOUT``) holds out data for choosing
the best epoch by AUC; its metrics are returned and stored in the detector file. ``resume``
fine-tunes an existing detector (its architecture and resampling win over the recipe's).
``train_detector.py`` is the command line over this module.

Torch-free at import (torch, sklearn and the detector module load inside ``train_detector``), so the
command checks its flags with ``check_detector_job`` in a fraction of a second.
"""
from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mislabel.core.dynamics import load_dynamics
from mislabel.core.user_input import UserError, check_output_folder, check_seed, require_file, require_folder
from mislabel.scoring.features import build_features, check_features

if TYPE_CHECKING:
    from mislabel.scoring.lstm import LSTMDetector

__all__ = ["DetectorRecipe", "TrainedDetector", "train_detector", "check_detector_job", "HOLDOUT",
           "MIN_PER_CLASS", "READOUT_CHOICES"]

# Share of the pooled samples held out (stratified by flipped/clean) to pick the best epoch by AUC.
HOLDOUT = 0.1
# The stratified split gives the held-out part about HOLDOUT * n of a class of n samples, rounded:
# at least one (an AUC needs both classes there) from n > 0.5 / HOLDOUT on, so 6 at 10%.
MIN_PER_CLASS = int(0.5 / HOLDOUT) + 1
MAX_GATE_FOLDS = 20  # each fold trains one more LSTM; beyond a few folds the gate's fit no longer changes
# mislabel.scoring.lstm.READOUTS, spelled out so a recipe is checked before torch loads
# (tests/test_startup.py checks that the two agree)
READOUT_CHOICES = ("last", "pool")

PathLike = str | os.PathLike


@dataclass(frozen=True)
class DetectorRecipe:
    """How a detector is built and trained; every field is a ``train_detector.py`` flag of the same name.

    The defaults are the detector the transfer benchmark favours (BENCHMARKS.md, bench/detection.py):
    correctness, the per-epoch percentiles of probability and margin (scale-free, so a detector
    trained on an easy dataset reads a hard one alike) and the run's class context (confusion,
    class_error: how many of the label's class the model puts where this sample goes, so structured
    noise shows), a one-layer bidirectional LSTM pooled over epochs (small enough to score 1,000,000
    samples in about a minute on 2 CPU cores), runs resampled to 32 points so one detector serves
    runs of any length. The paper's variant is ``DetectorRecipe(features=("prob",), readout="last",
    bidirectional=False, seq_len=0, hidden_size=64, num_layers=2)``.

    ``gate_folds`` > 0 fits the gate that weighs the LSTM against AUM by how concentrated a run's
    mistakes are (``mislabel.scoring.gate``) on out-of-fold LSTM scores: folds of runs when there are
    at least that many runs, else of samples; it trains ``gate_folds`` more LSTMs. 0 gives the LSTM's
    own probability, as the paper's detector and the earlier ``context`` default.

    Adam at 2e-3 with batch 256: on a corpus of 20-30 source runs (tens of thousands of sequences)
    held-out AUC stops moving after a handful of epochs; longer training fits the source datasets,
    not the noise (bench/detection.py measures transfer, which is what counts).
    """

    features: tuple[str, ...] = ("correct", "prob_rank", "margin_rank", "confusion", "class_error")
    readout: str = "pool"          # the head reads the last time step (paper) or mean+max over epochs
    bidirectional: bool = True     # the LSTM runs both ways along the epoch axis (paper: one way)
    seq_len: int = 32              # every run resampled to this many epochs; 0 = as recorded (paper)
    hidden_size: int = 32
    num_layers: int = 1
    epochs: int = 8
    batch_size: int = 256
    lr: float = 2e-3
    max_per_run: int = 0           # at most this many samples of each run (seeded draw); 0 = all
    seed: int = 0
    gate_folds: int = 3            # cross-fitting folds of the gated score (mislabel.scoring.gate); 0 = the LSTM alone

    def __post_init__(self) -> None:
        """``features`` may be given as the command line spells it, a comma list."""
        if isinstance(self.features, str):
            object.__setattr__(self, "features", tuple(n.strip() for n in self.features.split(",") if n.strip()))
        else:
            object.__setattr__(self, "features", tuple(self.features))

    def validate(self) -> None:
        check_features(self.features)
        if self.readout not in READOUT_CHOICES:
            raise UserError(f"unknown --readout {self.readout!r}; choose one of: {', '.join(READOUT_CHOICES)}")
        for name in ("epochs", "batch_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} {getattr(self, name)} must be at least 1")
        if self.seq_len < 0 or self.seq_len == 1:
            raise UserError(f"--seq_len {self.seq_len} must be at least 2, or 0 to keep the recorded epochs")
        if not (math.isfinite(self.lr) and self.lr > 0):  # inf would train NaN weights
            raise UserError(f"--lr {self.lr} must be a positive finite number; pass e.g. --lr {DetectorRecipe.lr}")
        if self.max_per_run < 0:
            raise UserError(f"--max_per_run {self.max_per_run} must be 0 (all samples) or a positive count")
        if not (self.gate_folds == 0 or 2 <= self.gate_folds <= MAX_GATE_FOLDS):
            raise UserError(f"--gate_folds {self.gate_folds} must be 0 (the LSTM alone) or in 2..{MAX_GATE_FOLDS} "
                            f"(each fold trains one more LSTM); pass e.g. --gate_folds {DetectorRecipe.gate_folds}")
        check_seed(self.seed)


@dataclass
class TrainedDetector:
    """The detector of the best held-out epoch, its config (what ``save_detector`` stores and
    ``build_detector`` rebuilds from) and that epoch's held-out metrics."""

    model: LSTMDetector
    config: dict
    metrics: dict


def check_detector_job(run_folders: Sequence[PathLike], recipe: DetectorRecipe, *, out: PathLike | None = None,
                       resume: PathLike | None = None, control_out: PathLike | None = None,
                       overwrite: bool = False) -> None:
    """Refuse a bad recipe, missing inputs and outputs that would be replaced unasked; reads no run."""
    recipe.validate()
    if not run_folders:
        raise UserError("no run folder given; pass the folder(s) generate_td wrote (--files_path)")
    for folder in run_folders:
        require_folder(folder, "run folder", "pass the folder generate_td wrote")
    if resume is not None:
        require_file(resume, "detector file", "train one with train_detector.py or pass the path of an existing "
                     ".pth.tar")
    for flag, path in (("--out", out), ("--control_out", control_out)):
        if path is None:
            continue
        if Path(path).is_dir():
            raise UserError(f"{flag} {path} is a folder, expected a file; pass a file name such as detector.pth.tar")
        if Path(path).exists() and not overwrite:
            raise UserError(f"{path} already exists; pass --overwrite to replace it or another file name")
        # before training, so neither file is written when the other cannot be
        check_output_folder(Path(path).parent, f"{flag}'s folder", f"pass {flag} a file in a folder you can write")
    if out is not None and control_out is not None and Path(out).resolve() == Path(control_out).resolve():
        raise UserError(f"--out and --control_out are both {out}; pass two different files")


@dataclass
class _TrainingSet:
    """Every run's sequences and flips pooled; per run its recorded epochs, its share of the rows and,
    for the gate, its base scores on those rows (``gate.DEFAULT_BASE``) and its ``concentration``."""

    sequences: np.ndarray
    targets: np.ndarray
    lengths: list[int]
    run_of_row: np.ndarray
    evidence: list[tuple[np.ndarray, float]]


def _training_set(folders: Sequence[PathLike], features: Sequence[str], seq_len: int | None,
                  max_per_run: int, seed: int, with_evidence: bool) -> _TrainingSet:
    """Pool sequences and flip labels from every run folder, with each run's recorded epoch count.

    Without ``seq_len`` all runs must share the epoch count; with it each is resampled to ``seq_len``.
    ``max_per_run`` keeps a seeded random share of each larger run, so a broad corpus of runs weighs
    each run alike instead of by its size (features are built on the whole run first: percentiles
    and class context describe the run, not the sample drawn from it).
    """
    from mislabel.scoring.metrics import has_ground_truth  # sklearn: loaded to train, not to check flags
    from mislabel.scoring.gate import DEFAULT_BASE, GATE_BASES
    from mislabel.scoring.summary import summarize

    rng = np.random.default_rng(seed)
    sequences, targets, lengths, evidence = [], [], [], []
    for folder in folders:
        dyn = load_dynamics(folder)
        if not has_ground_truth(dyn.flipped):
            raise UserError(f"{folder} has no known flipped labels (or all/none flipped); the detector needs a "
                            "run with synthetic noise, e.g. generate_td with noise_ratio 0.2")
        if not seq_len and lengths and dyn.num_epochs != lengths[0]:
            raise UserError(f"{folder} has {dyn.num_epochs} epochs but {folders[0]} has {lengths[0]}; "
                            "pool runs of the same length or pass --seq_len to resample them all")
        rows = np.arange(dyn.num_samples)
        if max_per_run and dyn.num_samples > max_per_run:
            rows = np.sort(rng.permutation(dyn.num_samples)[:max_per_run])
        sequences.append(build_features(dyn, features, seq_len)[rows])
        targets.append(dyn.flipped[rows].astype(np.float32))
        lengths.append(dyn.num_epochs)
        if with_evidence:
            summary = summarize(dyn)   # a whole run, as the corpus runs learn without memorising
            evidence.append((GATE_BASES[DEFAULT_BASE](summary)[rows], summary.concentration))
    run_of_row = np.repeat(np.arange(len(targets)), [len(t) for t in targets])
    return _TrainingSet(np.concatenate(sequences), np.concatenate(targets), lengths, run_of_row, evidence)


def _require_both_classes(targets: np.ndarray) -> None:
    """The held-out split must hold flipped and clean samples, or no epoch can be chosen by AUC."""
    flipped = int(targets.sum())
    clean = len(targets) - flipped
    if min(flipped, clean) < MIN_PER_CLASS:
        raise UserError(f"the runs hold {flipped} flipped and {clean} clean samples; training a detector needs "
                        f"at least {MIN_PER_CLASS} of each, because the best epoch is chosen by AUC on a "
                        f"stratified {HOLDOUT:.0%} validation split that must hold both; pool more runs or "
                        "use runs with more synthetic noise")


def _fit(model: LSTMDetector, x, targets: np.ndarray, rows: np.ndarray, recipe: DetectorRecipe, desc: str) -> dict:
    """Train ``model`` on ``rows`` of the pooled sequences ``x``; a stratified ``HOLDOUT`` share of them
    picks the epoch by AUC, whose weights ``model`` ends with; returns that epoch's held-out metrics."""
    import torch
    import torch.nn.functional as F
    from sklearn.model_selection import train_test_split

    from mislabel.core.progress import bar
    from mislabel.scoring.metrics import DETECTOR_THRESHOLD, detection_metrics
    from mislabel.scoring.predict import sequence_scores

    device = x.device
    fit_rows, held_rows = train_test_split(rows, test_size=HOLDOUT, stratify=targets[rows], random_state=recipe.seed)
    y = torch.from_numpy(targets).to(device)
    held_x = x[torch.from_numpy(held_rows).to(device)]
    positive_share = float(targets[fit_rows].mean())
    pos_weight = torch.tensor((1 - positive_share) / positive_share, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    generator = torch.Generator().manual_seed(recipe.seed)
    best_auc, best_state, best_metrics = -1.0, None, None
    epochs = bar(range(recipe.epochs), desc=desc, unit="epoch")
    for _ in epochs:
        model.train()
        order = torch.from_numpy(fit_rows)[torch.randperm(len(fit_rows), generator=generator)]
        for batch in order.split(recipe.batch_size):
            batch = batch.to(device)
            loss = F.binary_cross_entropy_with_logits(model(x[batch]), y[batch], pos_weight=pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        metrics = detection_metrics(sequence_scores(model, held_x, 4 * recipe.batch_size), targets[held_rows],
                                    threshold=DETECTOR_THRESHOLD)
        if metrics["auc"] >= best_auc:  # ties go to the later, better-calibrated epoch
            best_auc, best_metrics = metrics["auc"], metrics
            best_state = copy.deepcopy(model.state_dict())
        epochs.set_postfix(held_auc=f"{metrics['auc']:.4f}", best=f"{best_auc:.4f}")
    model.load_state_dict(best_state)
    model.eval()
    return best_metrics


def _gate_folds(data: _TrainingSet, folds: int, seed: int) -> np.ndarray:
    """The cross-fitting fold of every pooled row: by run when there are at least ``folds`` runs (the
    gate then learns how the LSTM does on runs it never saw), else a seeded draw of rows. Refused
    when a fold's training part would hold too few flipped or clean samples to train on."""
    runs = len(data.lengths)
    if runs >= folds:
        fold_of_row = (np.arange(runs) % folds)[data.run_of_row]
    else:
        fold_of_row = np.random.default_rng(seed).permutation(len(data.targets)) % folds
    for fold in range(folds):
        rest = data.targets[fold_of_row != fold]
        flipped = int(rest.sum())
        if min(flipped, len(rest) - flipped) < MIN_PER_CLASS:
            raise UserError(f"the gate's cross-fitting leaves fold {fold + 1} of {folds} {flipped} flipped and "
                            f"{len(rest) - flipped} clean samples to train on, fewer than {MIN_PER_CLASS} of each; "
                            "pool more runs, or pass --gate_folds 0 to train the LSTM alone")
    return fold_of_row


def _cross_fitted_gate(data: _TrainingSet, fold_of_row: np.ndarray, x, config: dict, recipe: DetectorRecipe,
                       names: list[str]) -> dict:
    """Out-of-fold LSTM scores for every pooled row (each fold of ``_gate_folds`` scored by a fresh
    LSTM trained on the rest), then the gate fitted on them (``mislabel.scoring.gate.fit_gate``)."""
    import torch

    from mislabel.core.device import seed_everything
    from mislabel.scoring.lstm import build_detector
    from mislabel.scoring.predict import sequence_scores
    from mislabel.scoring.gate import fit_gate

    folds = recipe.gate_folds
    out_of_fold = np.empty(len(data.targets))
    for fold in range(folds):
        held = np.flatnonzero(fold_of_row == fold)
        rest = np.flatnonzero(fold_of_row != fold)
        seed_everything(recipe.seed + 1 + fold)
        model = build_detector(config).to(x.device)
        _fit(model, x, data.targets, rest, recipe, f"gate fold {fold + 1}/{folds}")
        out_of_fold[held] = sequence_scores(model, x[torch.from_numpy(held).to(x.device)], 4 * recipe.batch_size)
    bounds = np.flatnonzero(np.diff(data.run_of_row)) + 1  # run_of_row ascends: each run's rows are one block
    base_scores, concentrations = zip(*data.evidence)
    return fit_gate(np.split(out_of_fold, bounds), base_scores, concentrations, np.split(data.targets, bounds), names)


def train_detector(run_folders: Sequence[PathLike], recipe: DetectorRecipe | None = None, *,
                   out: PathLike | None = None, resume: PathLike | None = None,
                   control_out: PathLike | None = None, overwrite: bool = False,
                   device: str = "auto") -> TrainedDetector:
    """Train a detector on the pooled samples of ``run_folders`` (each a ``generate_td`` or
    ``Recorder.save`` folder of a run with synthetic flips); deterministic given ``recipe.seed`` on the CPU.

    :param recipe: architecture and training; ``None`` is ``DetectorRecipe()``, the shipped default's.
    :param out: also write the detector there (``mislabel.scoring.lstm.save_detector``'s format).
    :param resume: fine-tune this detector file instead of starting fresh; its features, architecture
        and resampling are kept and the recipe's are ignored.
    :param control_out: also fit the learned control (``mislabel.scoring.control``) on the same runs
        and write it there.
    :param overwrite: replace existing ``out`` / ``control_out`` files (refused otherwise).
    :param device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
    :raises UserError: bad recipe or inputs, runs without synthetic flips, fewer than
        ``MIN_PER_CLASS`` flipped or clean samples.
    """
    import torch

    from mislabel.core.device import pick_device, seed_everything
    from mislabel.scoring.control import fit_control, save_control
    from mislabel.scoring.lstm import build_detector, detector_config, load_detector, save_detector

    recipe = recipe or DetectorRecipe()
    check_detector_job(run_folders, recipe, out=out, resume=resume, control_out=control_out, overwrite=overwrite)
    features, seq_len = list(recipe.features), recipe.seq_len or None
    torch_device = pick_device(device)
    seed_everything(recipe.seed)
    if resume is not None:
        model, config = load_detector(resume, torch_device)
        features, seq_len = config["features"], config.get("seq_len")
    gating = recipe.gate_folds > 0
    data = _training_set(run_folders, features, seq_len, recipe.max_per_run, recipe.seed, gating)
    _require_both_classes(data.targets)
    seen = data.lengths[0] if len(set(data.lengths)) == 1 else sorted(set(data.lengths))
    if resume is None:
        config = detector_config(features, recipe.hidden_size, recipe.num_layers, seen, readout=recipe.readout,
                                 bidirectional=recipe.bidirectional, seq_len=seq_len)
        model = build_detector(config).to(torch_device)
    config = dict(config, num_epochs_seen=seen)
    fold_of_row = _gate_folds(data, recipe.gate_folds, recipe.seed) if gating else None
    x = torch.from_numpy(data.sequences).to(torch_device)
    best_metrics = _fit(model, x, data.targets, np.arange(len(data.targets)), recipe, "detector")
    config.pop("gate", None)  # a resumed detector's gate was fitted for its old weights
    if gating:
        config["gate"] = _cross_fitted_gate(data, fold_of_row, x, config, recipe, [str(Path(p)) for p in run_folders])

    config["trained_on"] = [str(Path(p)) for p in run_folders]
    if out is not None:
        save_detector(out, model, config, best_metrics)
    if control_out is not None:
        save_control(control_out, fit_control([load_dynamics(p) for p in run_folders], names=config["trained_on"]))
    return TrainedDetector(model, config, best_metrics)
