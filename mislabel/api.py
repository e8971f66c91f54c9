"""Use the method from your own training loop: record dynamics, then rank the samples.

    recorder = Recorder(num_samples, num_classes, num_epochs)
    ... in the loop:  recorder.update(logits, labels, sample_indices)   # every batch
    ... per epoch:    recorder.next_epoch()
    recorder.save("my_run", true_labels=clean_labels_if_known)
    table = rank("my_run", detector="my_detector.pth.tar")            # most suspicious first
    train_detector(["my_run"], out="my_detector.pth.tar")             # from runs with synthetic flips

``find_issues(folder_or_csv, out=..., budget=...)`` is the whole find_issues command on your own
labelled images, returning its suspects table; ``compare(run_folder, detectors)`` scores a run with
every method side by side and writes compare's tables and plots into the folder. ``Recorder`` is the
very class ``generate_td`` records with, so ``my_run`` is a run folder like any other:
``train_detector.py``, ``compare`` and ``denoise`` accept it. ``rank`` puts the learned detector next
to the hand-crafted baselines of ``mislabel.scoring.baselines``.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mislabel.core.dynamics import Dynamics, load_dynamics, validate_dynamics
from mislabel.core.device import pick_device
from mislabel.core.user_input import UserError, check_output_folder
from mislabel.issue_finder import find_issues
from mislabel.reports.comparison import Comparison, write_comparison
from mislabel.reports.datalab import to_datalab
from mislabel.scoring.baselines import BASELINES
from mislabel.scoring.count import estimate_noisy_count, flag_first
from mislabel.scoring.detector_training import DetectorRecipe, train_detector
from mislabel.scoring.methods import DEFAULT_RANK_METHODS, RANK_METHODS
from mislabel.scoring.scores import DEFAULT_CONTROL, DEFAULT_DETECTOR, load_detectors, score
from mislabel.scoring.summary import summarize
from mislabel.training.crossval import load_pred_probs
from mislabel.training.recorder import Recorder

__all__ = ["Recorder", "rank", "score", "compare", "Comparison", "find_issues", "train_detector", "DetectorRecipe",
           "to_datalab", "DEFAULT_CONTROL", "DEFAULT_DETECTOR", "DEFAULT_METHODS"]

DEFAULT_METHODS = DEFAULT_RANK_METHODS

RunLike = str | os.PathLike | Dynamics | Recorder | Mapping[str, np.ndarray]


def _as_dynamics(run: RunLike) -> Dynamics:
    """A run folder, a Recorder, a Dynamics, or a mapping of the npz arrays (td, labels, margin, pred);
    validated as a dynamics file is, so NaN or misshapen arrays are refused instead of ranked."""
    if isinstance(run, Dynamics):
        return validate_dynamics(run, "the Dynamics passed to rank")
    if isinstance(run, Recorder):
        return validate_dynamics(run.dynamics(), "the Recorder's dynamics")
    if isinstance(run, Mapping):
        missing = {"td", "labels", "margin", "pred"} - set(run)
        if missing:
            raise UserError(f"the arrays passed to rank lack {sorted(missing)}; pass those of training_dynamics.npz")
        arrays = {key: np.asarray(run[key]) for key in ("td", "labels", "margin", "pred")}
        count = len(arrays["td"]) if arrays["td"].ndim else 0
        dyn = Dynamics(**arrays, indices=np.asarray(run.get("indices", np.arange(count))),
                       flipped=None if run.get("flipped") is None else np.asarray(run["flipped"], dtype=bool),
                       true_labels=None if run.get("true_labels") is None else np.asarray(run["true_labels"]))
        return validate_dynamics(dyn, "the arrays passed to rank")
    return load_dynamics(run)


def rank(run: RunLike, detector: str | os.PathLike | None = None, methods: Sequence[str] = DEFAULT_METHODS,
         device: str = "auto"):
    """Score every sample of a run with each method; higher score = more likely mislabeled.

    :param run: a run folder (``generate_td`` or ``Recorder.save``), a ``Recorder``, a ``Dynamics``
        or a dict of the npz arrays.
    :param detector: a detector file from ``train_detector.py``; ``None`` uses the shipped
        ``mislabel/scoring/pretrained/default.pth.tar``. Only read when ``"detector"`` is a method.
    :param methods: ``"detector"``, ``"control"`` (the shipped learned control: logistic regression on
        the baselines' scores, ``mislabel/scoring/pretrained/control.pth.tar``) and/or names of
        ``mislabel.scoring.baselines.BASELINES``.
    :returns: a pandas DataFrame, one row per sample, most suspicious (by the first method) first,
        with columns index, given_label, predicted_label (highest mean probability over training;
        ``mislabel.reports.suspects`` defines the names), true_label and flipped when known, flagged
        (the first method's top rows, as many as the run's estimated number of wrong labels,
        ``mislabel.scoring.count``), then one score column per method. ``table.attrs`` holds
        ``estimated_wrong_labels`` (the count and its ranges) and, when the flips are known,
        ``metrics``: each method's AUC, mAP and precision figures.
    """
    import pandas as pd

    unknown = [name for name in methods if name not in RANK_METHODS]
    if unknown or not methods:
        raise UserError(f"unknown ranking methods {unknown or '(none given)'}; choose from: {', '.join(RANK_METHODS)}")
    dyn = _as_dynamics(run)
    detectors = []
    if "detector" in methods:
        if detector is None and not DEFAULT_DETECTOR.is_file():
            raise UserError(f"no detector given and none shipped at {DEFAULT_DETECTOR}; pass detector=<file from "
                            "train_detector.py> or leave 'detector' out of methods")
        detectors = load_detectors([DEFAULT_DETECTOR if detector is None else detector], pick_device(device))
    summary = summarize(dyn)
    count = estimate_noisy_count(summary)
    results = {r.name: r for r in score(dyn, [name for name in methods if name != "detector"], detectors,
                                        count=count.estimate, summary=summary)}
    if detectors:
        results["detector"] = results.pop(detectors[0].name)
    scores = {name: results[name].scores for name in methods}
    table = pd.DataFrame({"index": dyn.indices, "given_label": dyn.assigned, "predicted_label": summary.predicted})
    if dyn.true_labels is not None:
        table["true_label"] = dyn.true_labels
    if dyn.flipped is not None:
        table["flipped"] = dyn.flipped
    order = np.argsort(-scores[methods[0]], kind="stable")
    table["flagged"] = flag_first(order, count.estimate)
    for name, values in scores.items():
        table[name] = values
    table = table.iloc[order].reset_index(drop=True)
    table.attrs["estimated_wrong_labels"] = asdict(count)
    table.attrs["metrics"] = {name: results[name].metrics for name in methods if results[name].metrics is not None}
    return table


def compare(run: str | os.PathLike, detectors: Sequence[str | os.PathLike] = (), device: str = "auto") -> Comparison:
    """Score a run folder with every method side by side and write the comparison into it.

    :param run: a run folder (``generate_td`` or ``Recorder.save``); the outputs are written there.
    :param detectors: detector files from ``train_detector.py``, each a row after the baselines,
        cleanlab (when ``crossval_probs`` wrote ``pred_probs_cv.npy`` into the folder) and the shipped
        learned control.
    :param device: for the detectors: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda[:N]"``.
    :returns: a ``Comparison``: each method's scores, timing and metrics (AUC, mAP, precision at k
        where the flips are known), comparison.md's text and the files written (comparison.csv/.md,
        scores.csv, datamap.png, roc_pr.png; ``mislabel.reports.comparison``). Everything is read and
        checked before the first file is written, and the files replace the old ones together.
    """
    folder = Path(run)
    dyn = load_dynamics(folder)
    check_output_folder(folder, "run folder", "copy the run folder somewhere writable and compare the copy")
    held_out = load_pred_probs(folder, dyn.num_samples, int(dyn.assigned.max()) + 1)
    loaded = load_detectors(list(detectors), pick_device(device))
    methods = [*BASELINES, *(["cleanlab"] if held_out is not None else []),
               *(["control"] if DEFAULT_CONTROL.is_file() else [])]
    results = score(dyn, methods, loaded, None if held_out is None else held_out[0])
    return write_comparison(folder, dyn, results, None if held_out is None else held_out[1])
