"""Per-epoch input sequences for the learned detector, built from a run's dynamics.

The paper feeds one feature, the probability of the assigned label at every epoch (``prob``).
The others, measured in bench/detection.py:
* ``margin``, ``correct``: the same run's margin (squashed) and whether the argmax is the label;
* ``prob_rank``, ``margin_rank``: each sample's percentile of probability and margin among all the
  run's samples at that epoch, so an easy and a hard dataset look alike;
* class context, read from the run's own confusion between assigned and predicted classes (a
  per-epoch estimate of the noise transition matrix), so structured noise becomes visible:
  ``confusion`` is the share of the samples labelled like this one that the model predicts as this
  sample's predicted class (0 when it predicts the label): a flip that many share, as under
  pair-flip or class-structure noise, scores high, a lone hard sample low; ``class_error`` is the
  share of the label's class the model does not predict as that class, which says how noisy the
  class is (semantic noise leaves most classes clean).
Percentiles and class context depend on the whole run: score a run's samples together, not a
hand-picked subset of them. ``resample`` stretches or squeezes the epoch axis to a fixed length, so
a detector trained on runs of one length applies to runs of any other.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from mislabel.core.dynamics import Dynamics

from mislabel.core.user_input import UserError

__all__ = ["FEATURES", "NEEDS_MARGIN_AND_PRED", "assigned_prob", "build_features", "check_features", "class_context",
           "class_transitions", "correct", "pair_counts", "percentile", "resample"]


# ----------------------------------------------------------------------------------------------
# Scoring primitives: the baselines and the learned control read the dynamics through these too
# ----------------------------------------------------------------------------------------------


def assigned_prob(dyn: Dynamics, dtype: type = np.float32) -> np.ndarray:
    """Probability of the assigned label per epoch, ``[N, E]`` (channel 0 of ``td``): float32 for the
    detector's sequences, float64 where a score sums over epochs (float16 converts exactly to both)."""
    return dyn.td[:, :, 0].astype(dtype)


def correct(dyn: Dynamics) -> np.ndarray:
    """Whether the argmax equals the assigned label, bool ``[N, E]``."""
    return dyn.pred == dyn.assigned[:, None]


def percentile(values: np.ndarray) -> np.ndarray:
    """Each value's place among all of ``values`` (1-D, one per sample of a run), float64 in [0, 1];
    ties share their mean rank (the mean of the first and last positions of their value in sorted
    order), so the result does not depend on the samples' order. One ``np.unique``: about 8x faster
    than two binary searches per sample at 10^6 samples."""
    _, group, count = np.unique(values, return_inverse=True, return_counts=True)
    upto = np.cumsum(count)
    return ((2 * upto - count - 1) * (0.5 / max(len(values) - 1, 1)))[group.reshape(-1)]


def _percentile_per_epoch(values: np.ndarray) -> np.ndarray:
    """``percentile`` of each epoch's column of float32 [N, E]: a sample's place in its run at that epoch."""
    out = np.empty(values.shape, np.float32)
    for epoch in range(values.shape[1]):
        out[:, epoch] = percentile(np.ascontiguousarray(values[:, epoch], dtype=np.float32))
    return out


# ----------------------------------------------------------------------------------------------
# Per-epoch features
# ----------------------------------------------------------------------------------------------


def _prob(dyn: Dynamics) -> np.ndarray:
    return assigned_prob(dyn)


def _margin(dyn: Dynamics) -> np.ndarray:
    """Squashed to (-1, 1) so logit-scale margins sit on the same scale as probabilities."""
    return np.tanh(dyn.margin.astype(np.float32) / 4.0)


def _correct(dyn: Dynamics) -> np.ndarray:
    return correct(dyn).astype(np.float32)


def class_transitions(dyn: Dynamics) -> tuple[np.ndarray, np.ndarray]:
    """The run's per-epoch noise transition matrix (the share of the samples assigned class c that the
    model predicts as class j), read only where the features use it:

    * float32 [N, E]: at each epoch, the entry of (this sample's assigned class, its prediction) when
      the model predicts another class, 0 when it predicts the assigned one;
    * float32 [E, K]: at each epoch, the diagonal (the share of each assigned class predicted as itself).

    Only the (assigned, predicted) pairs that occur are counted, one per sample and epoch: correct
    predictions by class, the wrong ones as pairs, so memory grows with samples x epochs, never with
    classes squared (a dense [E, K, K] matrix takes 12.8 GB at 10,000 classes and 32 epochs)."""
    assigned = dyn.assigned.astype(np.int64)
    classes = int(assigned.max()) + 1
    per_class = np.maximum(np.bincount(assigned, minlength=classes), 1).astype(np.float32)
    off = np.zeros((dyn.num_samples, dyn.num_epochs), np.float32)
    own = np.empty((dyn.num_epochs, classes), np.float32)
    for epoch in range(dyn.num_epochs):  # one epoch at a time: no [N, E] int64 temporaries
        pred = dyn.pred[:, epoch].astype(np.int64)
        right = pred == assigned
        own[epoch] = np.bincount(assigned[right], minlength=classes) / per_class
        wrong = np.flatnonzero(~right)
        if len(wrong):
            off[wrong, epoch] = pair_counts(assigned[wrong], pred[wrong]) / per_class[assigned[wrong]]
    return off, own


def pair_counts(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """How often each (first, second) pair occurs among all the pairs, per pair (non-negative ids, bounded
    by validate_dynamics so the key fits int64): a bincount over the key space when it is at most four
    times the number of pairs (few classes), else one sort of the pairs."""
    key = first * (int(second.max()) + 1) + second
    if int(key.max()) < 4 * len(key):
        return np.bincount(key)[key]
    _, group, count = np.unique(key, return_inverse=True, return_counts=True)
    return count[group.reshape(-1)]


def class_context(dyn: Dynamics) -> tuple[np.ndarray, np.ndarray]:
    """The ``confusion`` and ``class_error`` features, float32 [N, E] each, from one ``class_transitions``."""
    confusion, own = class_transitions(dyn)
    return confusion, np.ascontiguousarray((1.0 - own[:, dyn.assigned.astype(np.int64)]).T, dtype=np.float32)


# Features computed from the recorded epochs; a rank feature is the percentile of its source
# sequence, taken after any resampling (ranking 32 points instead of hundreds of epochs).
FEATURES: dict[str, Callable[[Dynamics], np.ndarray]] = {
    "prob": _prob, "margin": _margin, "correct": _correct, "prob_rank": _prob, "margin_rank": _margin,
    "confusion": lambda dyn: class_context(dyn)[0], "class_error": lambda dyn: class_context(dyn)[1],
}
CLASS_CONTEXT = ("confusion", "class_error")  # built together by ``class_context``
RANKED = frozenset({"prob_rank", "margin_rank"})
# Features read from the margin and pred arrays, which dynamics files from before they existed lack.
NEEDS_MARGIN_AND_PRED = frozenset({"margin", "correct", "margin_rank", "confusion", "class_error"})


def check_features(names: list[str] | tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in FEATURES]
    if unknown or not names:
        raise UserError(f"unknown detector features {unknown}; choose from: {', '.join(FEATURES)}")


def build_features(dyn: Dynamics, names: list[str] | tuple[str, ...], seq_len: int | None = None) -> np.ndarray:
    """Stack the named sequences into float32 [N, E, F], resampled to ``seq_len`` epochs when given.

    Resampling reads at most two recorded epochs per point, and every feature of an epoch depends
    on that epoch alone, so features are computed on those epochs only (64 of 200, say): the same
    numbers at a fraction of the cost."""
    check_features(names)
    points = None
    if seq_len and 1 < dyn.num_epochs != seq_len:
        below, weight = _interpolation(dyn.num_epochs, seq_len)
        kept, slot = np.unique(np.concatenate([below, below + 1]), return_inverse=True)
        dyn = replace(dyn, td=dyn.td[:, kept], margin=None if dyn.margin is None else dyn.margin[:, kept],
                      pred=None if dyn.pred is None else dyn.pred[:, kept])
        points = (slot[:seq_len], slot[seq_len:], weight)
    columns, context = [], None
    for name in names:
        if name in CLASS_CONTEXT:  # one count of the transitions serves both
            context = class_context(dyn) if context is None else context
            sequence = context[CLASS_CONTEXT.index(name)]
        else:
            sequence = FEATURES[name](dyn)
        if points is not None:
            sequence = _interpolate(sequence[:, :, None], *points)[:, :, 0]
        elif seq_len:
            sequence = resample(sequence[:, :, None], seq_len)[:, :, 0]
        columns.append(_percentile_per_epoch(sequence) if name in RANKED else sequence)
    return np.stack(columns, axis=2)


def _interpolation(num_epochs: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``seq_len`` evenly spaced points over ``num_epochs`` (>= 2) epochs: the epoch at or below
    each point and the weight of the epoch after it."""
    position = np.linspace(0.0, num_epochs - 1, seq_len)
    below = np.minimum(np.floor(position).astype(np.int64), num_epochs - 2)
    return below, (position - below).astype(np.float32)


def _interpolate(sequences: np.ndarray, below: np.ndarray, above: np.ndarray, weight: np.ndarray) -> np.ndarray:
    weight = weight[None, :, None]
    return (1.0 - weight) * sequences[:, below] + weight * sequences[:, above]


def resample(sequences: np.ndarray, seq_len: int) -> np.ndarray:
    """Linear interpolation of [N, E, F] sequences onto ``seq_len`` evenly spaced points of the epoch axis.

    First and last epochs map onto the first and last points, so a run is read as "fraction of
    training done" rather than as epoch numbers. A one-epoch run is repeated.
    """
    if seq_len < 2:
        raise UserError(f"seq_len {seq_len} must be at least 2 (or omitted to keep the recorded epochs)")
    num_epochs = sequences.shape[1]
    if num_epochs == seq_len:
        return sequences
    if num_epochs == 1:
        return np.repeat(sequences, seq_len, axis=1)
    below, weight = _interpolation(num_epochs, seq_len)
    return _interpolate(sequences, below, below + 1, weight)
