"""The one scoring path: each method's score for every sample of a run, higher = more suspicious.

A method is a baseline of ``BASELINES``, ``"cleanlab"`` (given held-out probabilities),
``"control"`` (the shipped learned control), or a detector file from ``train_detector.py``,
whose column is named ``lstm:<file name without .pth.tar>`` (numbered ``#2``, ``#3`` when two
files share a name). ``mislabel.api.rank``, compare, find_issues, denoise and repair all score
through ``score``, so a method means the same numbers in every table; ``top_suspects`` takes a
detector's top share, as denoise removes it and repair relabels it.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError
from mislabel.scoring.baselines import BASELINES, cleanlab
from mislabel.scoring.control import DEFAULT_CONTROL, control_scores, load_control
from mislabel.scoring.lstm import DEFAULT_DETECTOR, LSTMDetector, load_detector
from mislabel.scoring.count import NoisyCount, estimate_noisy_count
from mislabel.scoring.metrics import DETECTOR_THRESHOLD, MethodScores, detection_metrics
from mislabel.scoring.predict import detector_scores
from mislabel.scoring.summary import SampleSummary, scoring_view, summarize

__all__ = ["DEFAULT_CONTROL", "DEFAULT_DETECTOR", "METHODS", "Detector", "MethodScores", "Suspects",
           "detector_column", "load_detectors", "score", "top_suspects"]

METHODS = ("control", "cleanlab", *BASELINES)   # what ``score`` computes besides the detectors


@dataclass
class Detector:
    """A loaded detector file and its column name."""

    name: str
    path: Path
    model: LSTMDetector
    config: dict
    load_seconds: float


def detector_column(path: str | os.PathLike, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """``lstm:<file stem>``, numbered ``#2``, ``#3`` ... past the names already ``taken``."""
    stem = re.sub(r"(\.pth\.tar|\.pth|\.pt|\.tar)$", "", Path(path).name)
    name, number = f"lstm:{stem}", 2
    while name in taken:
        name, number = f"lstm:{stem}#{number}", number + 1
    return name


def load_detectors(files: Sequence[str | os.PathLike], device: torch.device | str = "cpu") -> list[Detector]:
    """Every file loaded before anything is scored, so a bad one fails at once (seconds, not after
    hours of training); a detector's time counts its loading, as a user would pay it."""
    loaded: list[Detector] = []
    for path in map(Path, files):
        started = time.perf_counter()
        model, config = load_detector(path, device)
        name = detector_column(path, {d.name for d in loaded})
        loaded.append(Detector(name, path, model, config, time.perf_counter() - started))
    return loaded


def score(dyn: Dynamics, methods: Sequence[str] = (), detectors: Sequence[Detector] = (),
          pred_probs: np.ndarray | None = None, threshold: float | None = None,
          control_file: str | Path = DEFAULT_CONTROL, count: int | None = None,
          summary: SampleSummary | None = None) -> list[MethodScores]:
    """Each of ``methods`` in their order, then each detector; timed, with metrics when known
    (with ``threshold``, also those of ``scores >= threshold``, for probability outputs).
    ``"control"`` is the learned control in ``control_file`` (the shipped one unless given);
    ``count``: the run's estimated number of wrong labels when the caller holds it (a gated
    detector puts that many at 0.5 or above; else it is counted once, for every detector);
    ``summary``: the run's ``summarize(dyn)`` when the caller holds it (``"aum"`` and the gate read it);
    else the first gated detector computes it, inside its time, and the others reuse it."""
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise UserError(f"unknown scoring methods {unknown}; choose from: {', '.join(METHODS)}")
    if "cleanlab" in methods and pred_probs is None:
        raise UserError("cleanlab needs held-out probabilities: pass pred_probs (crossval_probs writes them for a run)")
    computed: dict[str, Callable[[], np.ndarray]] = {
        "control": lambda: control_scores(load_control(control_file), dyn),
        "cleanlab": lambda: cleanlab(pred_probs, dyn.assigned),
        **{name: (lambda fn=fn: fn(dyn)) for name, fn in BASELINES.items()}}
    if summary is not None:
        computed["aum"] = lambda: summary.aum

    def gated(detector: Detector) -> np.ndarray:
        """A detector's scores; a gated one shares the run's summary and count with the others."""
        nonlocal summary, count
        if "gate" not in detector.config:
            return detector_scores(detector.model, detector.config, dyn)
        if summary is None:
            summary = summarize(dyn)
        if count is None:
            count = estimate_noisy_count(summary, resamples=0).estimate  # the count alone: no interval to draw
        return detector_scores(detector.model, detector.config, dyn, count, summary)

    jobs = [(name, computed[name], 0.0) for name in methods]
    jobs += [(d.name, lambda d=d: gated(d), d.load_seconds) for d in detectors]
    results = []
    for name, compute, extra_seconds in jobs:
        started = time.perf_counter()
        values = np.asarray(compute(), dtype=np.float64)
        results.append(MethodScores(name, values, time.perf_counter() - started + extra_seconds,
                                    detection_metrics(values, dyn.flipped, threshold)))
    return results


@dataclass
class Suspects:
    """The detector's top share of a run: the rows denoise removes and repair relabels."""

    ranking: MethodScores         # the detector's scores of every row, with their metrics
    summary: SampleSummary        # the run's per-sample summary (the cleaning actions read it)
    rows: np.ndarray              # row positions of the suspects, most suspicious first
    flipped_share: float | None   # share of them with a flipped label; None without ground truth or suspects
    count: NoisyCount | None      # the estimated number of wrong labels that ``"auto"`` took; None for a ratio


def top_suspects(detector_file: str | Path, dyn: Dynamics, ratio: float | str,
                 device: torch.device | str = "cpu", pred_probs: np.ndarray | None = None) -> Suspects:
    """Rank ``dyn`` with the detector in ``detector_file`` and take its top ``ratio`` (rounded to whole
    rows; ``"auto"``: the run's estimated number of wrong labels, ``mislabel.scoring.count``, from
    held-out ``pred_probs`` [N, K] when given), so denoise and repair pick their suspects, and score
    them, the same way."""
    scored, summary = scoring_view(dyn)
    estimate = estimate_noisy_count(summary, pred_probs=pred_probs) if ratio == "auto" else None
    ranking = score(scored, detectors=load_detectors([detector_file], device), threshold=DETECTOR_THRESHOLD,
                    count=None if estimate is None else estimate.estimate, summary=summary)[0]
    count = estimate.estimate if estimate is not None else int(round(float(ratio) * dyn.num_samples))
    rows = ranking.order[:count]
    flipped_share = float(dyn.flipped[rows].mean()) if dyn.flipped is not None and len(rows) else None
    return Suspects(ranking=ranking, summary=summary, rows=rows, flipped_share=flipped_share, count=estimate)
