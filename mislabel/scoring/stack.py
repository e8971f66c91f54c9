"""The stacked default score: the LSTM detector's output and the hand-made scores, weighed per run.

Why: the LSTM with class context wins by wide margins where a run's errors share a class structure
(pair flip, class maps), and loses a little where a per-sample average already ranks well (uniform
noise, annotators' confusions of ambiguous images), and no single score wins every kind of noise
(BENCHMARKS.md, bench/detection.py). So the shipped score is a logistic regression over each
sample's *within-run percentile* of the LSTM's probability and of ``STACK_SCORES`` (scale-free, as
the learned control), each input also multiplied by a few statistics of the run itself
(``RUN_STATISTICS``: how well the model fits its labels early and late, and how concentrated its
disagreements with the labels are on one class per class), so the run tells which evidence applies.

The regression is fitted on *out-of-fold* LSTM scores of the source corpus (``cross_fitted_scores``:
the runs split into folds, each fold scored by an LSTM trained on the others), so it learns how
much the LSTM deserves on runs it never saw, not on the runs it memorised. Every run weighs the
same in the fit, whatever its size.

Stored inside the detector file as ``config["stack"]`` (plain lists of floats and names), so it
loads with ``torch.load(..., weights_only=True)`` and every caller of the detector gets it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError
from mislabel.scoring.baselines import BASELINES
from mislabel.scoring.features import correct, percentile

__all__ = ["RUN_STATISTICS", "STACK_FORMAT", "STACK_SCORES", "check_stack", "fit_stack", "run_statistics",
           "stack_evidence", "stack_inputs", "stacked_scores"]

STACK_FORMAT = "mislabel-stack/1"
# The hand-made scores beside the LSTM: AUM and confidence lead under uniform and annotator noise,
# correctness under structured noise, loss where the model is weak (BENCHMARKS.md's grid).
STACK_SCORES = ("aum", "confidence", "correctness", "loss")
RUN_STATISTICS = ("fit_early", "fit_late", "concentration")
# At most this many epochs of a run are read for its statistics (evenly spaced in each window):
# the statistics are shares over hundreds of thousands of predictions, stable with a few epochs.
_STATISTIC_EPOCHS = 8
# L2 on standardised inputs; tens of thousands of rows, a few dozen inputs, tens of runs: the
# run-statistic interactions vary only between runs, so they are kept small.
_INVERSE_REGULARISATION = 0.05


def _window(num_epochs: int, first: float, last: float) -> np.ndarray:
    """Up to ``_STATISTIC_EPOCHS`` evenly spaced epochs of the share [first, last) of a run."""
    start, stop = int(first * num_epochs), max(int(first * num_epochs) + 1, int(round(last * num_epochs)))
    return np.unique(np.linspace(start, stop - 1, min(_STATISTIC_EPOCHS, stop - start)).round().astype(np.int64))


def run_statistics(dyn: Dynamics) -> np.ndarray:
    """float64 [len(RUN_STATISTICS)]: the run's share of predictions equal to the label in its first
    and last quarter of epochs, and of its wrong predictions (over the whole run) the share that go
    to the single most frequent wrong class of their label's class: near 1 when the disagreements
    follow a class structure (pair flips, look-alike classes), near 1/(K-1) when they scatter."""
    fits = [float(correct(dyn)[:, _window(dyn.num_epochs, *share)].mean()) for share in ((0.0, 0.25), (0.75, 1.0))]
    epochs = _window(dyn.num_epochs, 0.0, 1.0)
    assigned = np.repeat(dyn.assigned.astype(np.int64), len(epochs))
    pred = dyn.pred[:, epochs].astype(np.int64).reshape(-1)
    wrong = pred != assigned
    if not wrong.any():
        return np.array([*fits, 1.0])
    pairs, counts = np.unique(np.stack([assigned[wrong], pred[wrong]]), axis=1, return_counts=True)
    top = np.zeros(int(pairs[0].max()) + 1, np.int64)
    np.maximum.at(top, pairs[0], counts)
    return np.array([*fits, top.sum() / counts.sum()])


def stack_evidence(dyn: Dynamics) -> tuple[np.ndarray, np.ndarray]:
    """What the stack reads besides the LSTM: float64 [N, len(STACK_SCORES)], each score as its
    percentile within the run, and the run's ``run_statistics``."""
    ranked = np.stack([percentile(np.asarray(BASELINES[name](dyn), dtype=np.float64)) for name in STACK_SCORES], axis=1)
    return ranked, run_statistics(dyn)


def stack_inputs(lstm_scores: np.ndarray, ranked: np.ndarray, statistics: np.ndarray) -> np.ndarray:
    """float64 [N, P + P * S]: the percentile of the LSTM's scores beside ``ranked`` (P columns in
    all), then each of the P times each of the S run statistics."""
    ranked = np.concatenate([percentile(np.asarray(lstm_scores, dtype=np.float64))[:, None], ranked], axis=1)
    return np.concatenate([ranked, (ranked[:, :, None] * statistics[None, None, :]).reshape(len(ranked), -1)],
                          axis=1)


def fit_stack(inputs: Sequence[np.ndarray], flipped: Sequence[np.ndarray], names: Sequence[str] = ()) -> dict:
    """Fit the stack on each run's ``stack_inputs`` (built from out-of-fold LSTM scores) and flips; each
    run weighs the same. Returns the dict stored as a detector config's ``"stack"``."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate(inputs)
    y = np.concatenate([np.asarray(f, dtype=np.int64) for f in flipped])
    weight = np.concatenate([np.full(len(run), len(x) / (len(run) * len(inputs))) for run in inputs])
    mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-9)
    model = LogisticRegression(C=_INVERSE_REGULARISATION, class_weight="balanced", max_iter=2000)
    model.fit((x - mean) / std, y, sample_weight=weight)
    coef = model.coef_[0] / std
    return {"format": STACK_FORMAT, "scores": list(STACK_SCORES), "statistics": list(RUN_STATISTICS),
            "coef": [float(c) for c in coef], "intercept": float(model.intercept_[0] - (coef * mean).sum()),
            "trained_on": list(names)}


def check_stack(stack: object, source: str) -> dict:
    """A stored stack is used only if it is ours, built on the inputs this version computes, and finite."""
    width = (1 + len(STACK_SCORES)) * (1 + len(RUN_STATISTICS))
    if not isinstance(stack, dict) or stack.get("format") != STACK_FORMAT:
        raise UserError(f"{source}: its stack is not a {STACK_FORMAT} dict; the file is damaged, retrain it")
    if stack.get("scores") != list(STACK_SCORES) or stack.get("statistics") != list(RUN_STATISTICS):
        raise UserError(f"{source}: its stack was fitted on other inputs than this version computes; retrain it")
    coef, intercept = stack.get("coef"), stack.get("intercept")
    if not (isinstance(coef, list) and len(coef) == width and all(isinstance(c, float) for c in coef)
            and isinstance(intercept, float) and np.isfinite(coef).all() and np.isfinite(intercept)):
        raise UserError(f"{source}: its stack's coefficients are not {width} finite floats; the file is damaged, "
                        "retrain it")
    return stack


def stacked_scores(stack: dict, lstm_scores: np.ndarray, dyn: Dynamics) -> np.ndarray:
    """Probability-like score of "mislabeled" per sample (higher = more suspicious; a ranking, not a
    calibrated probability: the inputs are percentiles)."""
    logits = stack_inputs(lstm_scores, *stack_evidence(dyn)) @ np.asarray(stack["coef"]) + stack["intercept"]
    return 1.0 / (1.0 + np.exp(-logits))
