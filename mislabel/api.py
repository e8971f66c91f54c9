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
from mislabel.scoring.count import estimate_on_rows, flag_first
from mislabel.scoring.detector_training import DetectorRecipe, train_detector
from mislabel.scoring.methods import DEFAULT_RANK_METHODS, RANK_METHODS
from mislabel.scoring.metrics import detection_metrics
from mislabel.scoring.scores import DEFAULT_CONTROL, DEFAULT_DETECTOR, load_detectors, score
from mislabel.scoring.seeding import (SEEDED_CANDIDATES, SeededLabels, choose_score, flipped_recall,
                                      load_seeds, seed_flips, seeded_check, seeded_rows)
from mislabel.scoring.summary import scoring_view
from mislabel.training.crossval import load_pred_probs
from mislabel.training.recorder import Recorder

__all__ = ["Recorder", "rank", "score", "seed_flips", "SeededLabels", "compare", "Comparison", "find_issues",
           "train_detector", "DetectorRecipe", "to_datalab", "DEFAULT_CONTROL", "DEFAULT_DETECTOR", "DEFAULT_METHODS"]

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
         device: str = "auto", seeded: SeededLabels | Sequence[int] | np.ndarray | None = None):
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
        ``mislabel.scoring.count``; from the run folder's held-out probabilities when it has them), then one
        score column per method. Every score and the count read
        the epochs before the run memorised its labels (``mislabel.scoring.memorisation``; all of them
        when it did not). ``table.attrs`` holds ``scored_epochs`` (how many were read),
        ``estimated_wrong_labels`` (the count and its ranges) and, when the flips are known,
        ``metrics``: each method's AUC, mAP and precision figures.
    :param seeded: what ``seed_flips`` returned for the labels this run trained on (or the bare dataset
        indices it changed, then taken as one kind of seed). The seeds then
        choose the score (``mislabel.scoring.seeding.choose_score``: the detector unless another candidate
        ranks the seeds clearly higher), which becomes the ``score`` column the table is sorted and flagged
        by; the count is made on the other rows; seeded rows are marked (``seeded``), never flagged, and
        left out of the metrics; ``table.attrs["seeded"]`` holds the choice, each candidate's seed AUC per
        kind and the measured recall (seeds at or above the lowest flagged score), overall and per kind
        (``mislabel.scoring.seeding.SeededCheck.record``), and when the flips are known ``flipped_recall``:
        the share of the real flipped labels (unseeded rows) flagged, which the measured recall estimates.
        ``None`` with a run folder that holds ``seeded_flips.npz`` (``generate_td --seed_rate``,
        find_issues): its seeds, so a seeded run checks itself through its folder.
    """
    import pandas as pd

    if isinstance(methods, str) or not isinstance(methods, Sequence):  # a str would be read letter by letter
        raise UserError(f"methods={methods!r} is not a list of method names; pass e.g. methods=[{methods!r}]")
    unknown = [name for name in methods if name not in RANK_METHODS]
    if unknown or not methods:
        raise UserError(f"unknown ranking methods {unknown or '(none given)'}; choose from: {', '.join(RANK_METHODS)}")
    dyn = _as_dynamics(run)
    seeded = _folder_seeds(run, dyn) if seeded is None else seeded
    detectors = []
    if "detector" in methods:
        if detector is None and not DEFAULT_DETECTOR.is_file():
            raise UserError(f"no detector given and none shipped at {DEFAULT_DETECTOR}; pass detector=<file from "
                            "train_detector.py> or leave 'detector' out of methods")
        detectors = load_detectors([DEFAULT_DETECTOR if detector is None else detector], pick_device(device))
    scored, summary = scoring_view(dyn)
    seeds, kinds = _seeds(dyn, seeded)
    unseeded = None if seeds is None else np.setdiff1d(np.arange(dyn.num_samples), seeds)
    held_out = load_pred_probs(run, dyn) if isinstance(run, (str, os.PathLike)) else None
    count = estimate_on_rows(scored, summary, unseeded, None if held_out is None else held_out[0])
    candidates = [] if seeds is None else [name for name in SEEDED_CANDIDATES if name not in methods]
    results = {r.name: r for r in score(scored, [name for name in methods if name != "detector"] + candidates,
                                        detectors, count=count.estimate, summary=summary)}
    if detectors:
        results["detector"] = results.pop(detectors[0].name)
    scores = {name: results[name].scores for name in methods}
    lead = scores[methods[0]]
    table = pd.DataFrame({"index": dyn.indices, "given_label": dyn.assigned, "predicted_label": summary.predicted})
    if dyn.true_labels is not None:
        table["true_label"] = dyn.true_labels
    if dyn.flipped is not None:
        table["flipped"] = dyn.flipped
    metrics = {name: results[name].metrics for name in methods if results[name].metrics is not None}
    if seeds is not None:
        choice = choose_score({name: results[name].scores for name in (*(["detector"] if detectors else []),
                                                                       *SEEDED_CANDIDATES)},
                              seeds, kinds, default="detector" if detectors else methods[0])
        lead = results[choice.method].scores
        table["seeded"] = np.isin(np.arange(dyn.num_samples), seeds)
        flagged = np.zeros(dyn.num_samples, bool)
        flagged[unseeded] = flag_first(np.argsort(-lead[unseeded], kind="stable"), count.estimate)
        table["flagged"] = flagged
        table["score"] = lead
        line = float(lead[flagged].min()) if flagged.any() else float("inf")   # the lowest flagged score
        table.attrs["seeded"] = seeded_check(choice, lead, seeds, kinds, line).record()
        if dyn.flipped is not None:  # the true recall the measured one estimates, at the same line
            table.attrs["seeded"]["flipped_recall"] = flipped_recall(lead, line, dyn.flipped, seeds)
            metrics = {name: detection_metrics(results[name].scores[unseeded], dyn.flipped[unseeded])
                       for name in (*methods, choice.method)}
    order = np.argsort(-lead, kind="stable")
    if seeds is None:
        table["flagged"] = flag_first(order, count.estimate)
    for name, values in scores.items():
        table[name] = values
    table = table.iloc[order].reset_index(drop=True)
    table.attrs["scored_epochs"] = scored.num_epochs
    table.attrs["estimated_wrong_labels"] = asdict(count)
    table.attrs["metrics"] = metrics
    return table


def compare(run: str | os.PathLike, detectors: Sequence[str | os.PathLike] = (), device: str = "auto",
            seeded: SeededLabels | Sequence[int] | np.ndarray | None = None) -> Comparison:
    """Score a run folder with every method side by side and write the comparison into it.

    :param run: a run folder (``generate_td`` or ``Recorder.save``); the outputs are written there.
    :param detectors: detector files from ``train_detector.py``, each a row after the baselines,
        cleanlab (when ``crossval_probs`` wrote ``pred_probs_cv.npy`` into the folder) and the shipped
        learned control.
    :param device: for the detectors: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda[:N]"``.
    :param seeded: the labels changed on purpose, as for ``rank`` (``None``: the folder's
        ``seeded_flips.npz`` when there is one): left out of the metrics, which measure the real flips;
        comparison.md says how each method ranks them, and scores.csv marks them.
    :returns: a ``Comparison``: each method's scores, timing and metrics (AUC, mAP, precision at k
        where the flips are known), comparison.md's text and the files written (comparison.csv/.md,
        scores.csv, datamap.png, roc_pr.png; ``mislabel.reports.comparison``). Everything is read and
        checked before the first file is written, and the files replace the old ones together.
    """
    folder = Path(run)
    dyn = load_dynamics(folder)
    check_output_folder(folder, "run folder", "copy the run folder somewhere writable and compare the copy")
    held_out = load_pred_probs(folder, dyn)
    loaded = load_detectors(list(detectors), pick_device(device))
    methods = [*BASELINES, *(["cleanlab"] if held_out is not None else []),
               *(["control"] if DEFAULT_CONTROL.is_file() else [])]
    seeds, kinds = _seeds(dyn, _folder_seeds(folder, dyn) if seeded is None else seeded)
    scored, summary = scoring_view(dyn)
    results = score(scored, methods, loaded, None if held_out is None else held_out[0], summary=summary)
    return write_comparison(folder, dyn, results, None if held_out is None else held_out[1],
                            None if seeds is None else (seeds, kinds))


def _folder_seeds(run: RunLike, dyn: Dynamics) -> SeededLabels | None:
    """The seeds a run folder holds (``seeded_flips.npz``: ``generate_td --seed_rate``, find_issues), checked
    against the labels the run trained on; None for an unseeded folder or a run passed in memory."""
    loaded = load_seeds(run, dyn) if isinstance(run, (str, os.PathLike)) else None
    return None if loaded is None else loaded[0]


def _seeds(dyn: Dynamics, seeded: SeededLabels | Sequence[int] | np.ndarray | None
           ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Row positions and kinds of the seeds: ``seed_flips``' result, or bare dataset indices (then all of one
    kind, as the kinds are not known)."""
    if seeded is None:
        return None, None
    if isinstance(seeded, SeededLabels):
        return seeded_rows(dyn.indices, seeded.indices), np.asarray(seeded.kinds, np.int8)
    rows = seeded_rows(dyn.indices, seeded)
    return rows, np.zeros(len(rows), np.int8)
