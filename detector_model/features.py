"""Per-epoch input sequences for the learned detector, built from a run's dynamics.

The paper feeds one feature, the probability of the assigned label at every epoch (``prob``).
The others are the same run's margin and correctness, and the per-epoch percentiles of probability
and margin among all the run's samples (``prob_rank``, ``margin_rank``). Percentiles depend on the
whole run: score a run's samples together, not a hand-picked subset of them.
``resample`` stretches or squeezes the epoch axis to a fixed length, so a detector trained on runs
of one length applies to runs of any other.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from util import Dynamics, UserError

__all__ = ["FEATURES", "NEEDS_MARGIN_AND_PRED", "build_features", "check_features", "resample"]


def _prob(dyn: Dynamics) -> np.ndarray:
    return dyn.td[:, :, 0].astype(np.float32)


def _margin(dyn: Dynamics) -> np.ndarray:
    """Squashed to (-1, 1) so logit-scale margins sit on the same scale as probabilities."""
    return np.tanh(dyn.margin.astype(np.float32) / 4.0)


def _correct(dyn: Dynamics) -> np.ndarray:
    return (dyn.pred == dyn.assigned[:, None]).astype(np.float32)


def _percentile(values: np.ndarray) -> np.ndarray:
    """Each sample's place among all samples of the run at the same epoch, in [0, 1] (ties share
    their mean rank). A run on an easy dataset and one on a hard dataset then look alike: what is
    fed is "how this sample compares with the others", not a probability whose scale depends on
    the dataset, the network and the epoch. Ranked one epoch at a time, so the float64 ranks of a
    single epoch are the only extra memory."""
    out = np.empty(values.shape, np.float32)
    for epoch in range(values.shape[1]):
        out[:, epoch] = rankdata(values[:, epoch], method="average")
    out -= 1.0
    out /= max(len(values) - 1, 1)
    return out


def _prob_rank(dyn: Dynamics) -> np.ndarray:
    return _percentile(dyn.td[:, :, 0])


def _margin_rank(dyn: Dynamics) -> np.ndarray:
    return _percentile(dyn.margin)


FEATURES = {"prob": _prob, "margin": _margin, "correct": _correct, "prob_rank": _prob_rank,
            "margin_rank": _margin_rank}
# Features read from the margin and pred arrays, which dynamics files from before they existed lack.
NEEDS_MARGIN_AND_PRED = frozenset({"margin", "correct", "margin_rank"})


def check_features(names: list[str] | tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in FEATURES]
    if unknown or not names:
        raise UserError(f"unknown detector features {unknown}; choose from: {', '.join(FEATURES)}")


def build_features(dyn: Dynamics, names: list[str] | tuple[str, ...], seq_len: int | None = None) -> np.ndarray:
    """Stack the named sequences into float32 [N, E, F], resampled to ``seq_len`` epochs when given."""
    check_features(names)
    sequences = np.stack([FEATURES[name](dyn) for name in names], axis=2)
    return resample(sequences, seq_len) if seq_len else sequences


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
    position = np.linspace(0.0, num_epochs - 1, seq_len)
    below = np.minimum(np.floor(position).astype(np.int64), num_epochs - 2)
    weight = (position - below).astype(np.float32)[None, :, None]
    return (1.0 - weight) * sequences[:, below] + weight * sequences[:, below + 1]
