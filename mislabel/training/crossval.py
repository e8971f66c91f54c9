"""Out-of-sample class probabilities by K-fold cross-validation, the input confident learning needs.

cleanlab judges a label by the probability a model gives it, which is only fair when that model
never trained on the sample; phase 1's dynamics do not qualify (every row was trained on). So
``crossval_probs`` retrains phase 1's model K times with the same noisy labels, split, network
and recipe, each time holding one fold of the training rows out, and stitches the held-out
predictions into one ``[N, classes]`` array aligned with the rows of ``training_dynamics.npz``.
That is K extra training runs; the sidecar json records the bill so the comparison can state it.
"""
from __future__ import annotations

import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from mislabel.core.run_options import DEFAULT_FOLDS, Recipe
from mislabel.core.dynamics import TD_FILE, Dynamics, load_dynamics
from mislabel.core.user_input import UserError
from mislabel.core.files import atomic_write, read_record, write_record

if TYPE_CHECKING:
    from mislabel.run_config import RunConfig

__all__ = ["PRED_PROBS_FILE", "PRED_PROBS_INFO", "DEFAULT_FOLDS", "fold_assignment", "predict_probs",
           "crossval_probs", "load_pred_probs"]

PRED_PROBS_FILE = "pred_probs_cv.npy"
PRED_PROBS_INFO = "pred_probs_cv.json"


def fold_assignment(assigned: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number of every row, stratified by assigned label so each fold sees every class.

    Stratifying by the *assigned* label is all a user with real noise could do; the split is
    fixed by ``seed`` alone, so a rerun holds out the same rows.
    """
    if not 2 <= folds <= len(assigned):
        raise UserError(f"--folds {folds} must be between 2 and the {len(assigned)} training rows; the default is "
                        f"{DEFAULT_FOLDS}")
    # imported here: the Runner imports this module for phase 1 too, which never needs sklearn
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    fold = np.empty(len(assigned), dtype=np.int64)
    try:
        for number, (_, held_out) in enumerate(splitter.split(np.zeros(len(assigned)), assigned)):
            fold[held_out] = number
    except ValueError as err:
        raise UserError(f"cannot split into {folds} stratified folds ({err}); pass a smaller --folds") from err
    return fold


@torch.no_grad()
def predict_probs(model: torch.nn.Module, batches) -> np.ndarray:
    """Softmax probabilities float32 ``[n, classes]`` for every row of ``batches``, in row order."""
    model.eval()
    probs, rows = [], []
    for images, _, batch_rows in batches:
        probs.append(torch.softmax(model(images).float(), dim=1))
        rows.append(batch_rows)
    order = torch.cat(rows).argsort()
    return torch.cat(probs)[order].cpu().numpy().astype(np.float32)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file handle: np.save on a name would append ".npy"
            np.save(handle, array)

    atomic_write(path, write)


def crossval_probs(config: RunConfig, train_rows: np.ndarray, assigned_labels: np.ndarray,
                   fit_rows: Callable[[np.ndarray, Recipe, str], torch.nn.Module],
                   predict_rows: Callable[[torch.nn.Module, np.ndarray], np.ndarray],
                   folds: int = DEFAULT_FOLDS, epochs: int | None = None) -> Path:
    """Write ``pred_probs_cv.npy`` (float32 ``[N, classes]``, rows as in the npz) and its json.

    :param config: the generate_td run's configuration (its folder, seed, recipe, network).
    :param train_rows: that run's training rows (dataset indices); ``assigned_labels`` its noisy
        labels, by dataset index: the dynamics must have been recorded with exactly these.
    :param fit_rows: a fresh model trained on some rows with a recipe (``Runner.fit_rows``).
    :param predict_rows: that model's class probabilities for some rows (``Runner.predict_rows``).
    :param folds: K; the cost is K training runs of ``epochs`` epochs each.
    :param epochs: epochs per fold; ``None`` reuses the number of epochs phase 1 recorded.
    """
    folder = config.td_dir
    out = folder / PRED_PROBS_FILE
    if not (folder / TD_FILE).is_file():
        raise UserError(f"no {TD_FILE} in {folder}; run generate_td with these arguments first "
                        "(crossval_probs reuses its noisy labels and split)")
    if out.exists() and not config.overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to recompute it")
    dyn = load_dynamics(folder)
    if not (np.array_equal(dyn.indices, train_rows) and np.array_equal(dyn.assigned, assigned_labels[dyn.indices])):
        raise UserError(f"the dynamics in {folder} were recorded with another split or other labels than these "
                        "arguments give; pass the seed, noise and --num_valid of that generate_td run")
    recipe = dataclasses.replace(config.recipe, epochs=dyn.num_epochs if epochs is None else epochs)
    recipe.validate()
    fold = fold_assignment(dyn.assigned, folds, config.seed)
    probs = None
    started = time.perf_counter()
    for number in range(folds):
        held_out = fold == number
        model = fit_rows(train_rows[~held_out], recipe, f"fold {number + 1}/{folds}")
        fold_probs = predict_rows(model, train_rows[held_out])
        if probs is None:
            probs = np.zeros((dyn.num_samples, fold_probs.shape[1]), dtype=np.float32)
        probs[held_out] = fold_probs
    seconds = time.perf_counter() - started
    accuracy = float(np.mean(probs.argmax(axis=1) == dyn.assigned))
    info = {"folds": folds, "extra_training_runs": folds, "epochs_per_run": recipe.epochs,
            "stratified_by": "assigned label", "seed": config.seed, "net": f"{config.net_type}{config.depth}",
            "num_samples": int(dyn.num_samples), "num_classes": int(probs.shape[1]),
            "held_out_agreement_with_assigned": round(accuracy, 6), "seconds": round(seconds, 2),
            "command": " ".join(shlex.quote(arg) for arg in [Path(sys.executable).name, *sys.argv])}
    _save_npy(out, probs)
    write_record(folder / PRED_PROBS_INFO, info)
    print(f"wrote {out}: [{probs.shape[0]}, {probs.shape[1]}] held-out probabilities from {folds}-fold "
          f"cross-validation ({folds} extra training runs of {recipe.epochs} epochs, {seconds:.0f} s); held-out "
          f"predictions agree with the assigned labels on {accuracy:.1%}. Next: compare {folder}")
    return out


def load_pred_probs(folder: str | Path, dyn: Dynamics) -> tuple[np.ndarray, dict] | None:
    """Read a run's cross-validated probabilities and their sidecar, or ``None`` when absent.

    The array must match ``dyn`` (the run's dynamics) one row per sample and one column per class
    (``dyn.num_classes``; files from before it was stored: at least one past the largest label), so
    a file of another run is refused by name instead of blamed on a later step.
    """
    folder = Path(folder)
    path = folder / PRED_PROBS_FILE
    if not path.is_file():
        return None
    redo = "recompute it with crossval_probs (overwrite)"
    try:
        probs = np.load(path, allow_pickle=False)
    except Exception as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}); {redo}") from err
    least = int(dyn.assigned.max()) + 1
    columns_fit = probs.ndim == 2 and (probs.shape[1] == dyn.num_classes if dyn.num_classes is not None
                                       else probs.shape[1] >= least)
    if not columns_fit or probs.shape[0] != dyn.num_samples:
        classes = dyn.num_classes if dyn.num_classes is not None else f"labels up to {least - 1}"
        raise UserError(f"{path} has shape {probs.shape} but the run has {dyn.num_samples} rows and {classes} "
                        f"classes; {redo}")
    if not np.all(np.isfinite(probs)) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise UserError(f"{path} holds rows that are not probability distributions; {redo}")
    # a damaged sidecar only leaves the cost unreported; the probabilities themselves were checked above
    return probs, read_record(folder / PRED_PROBS_INFO) or {}
