"""Per-epoch input sequences for the learned detector, built from a run's dynamics.

The paper feeds one feature, the probability of the assigned label at every epoch (``prob``).
The others are the same run's margin and correctness, for detectors that see more.
"""
from __future__ import annotations

import numpy as np

from util import Dynamics, UserError

__all__ = ["FEATURES", "build_features", "check_features"]


def _prob(dyn: Dynamics) -> np.ndarray:
    return dyn.td[:, :, 0].astype(np.float32)


def _margin(dyn: Dynamics) -> np.ndarray:
    """Squashed to (-1, 1) so logit-scale margins sit on the same scale as probabilities."""
    return np.tanh(dyn.margin.astype(np.float32) / 4.0)


def _correct(dyn: Dynamics) -> np.ndarray:
    return (dyn.pred == dyn.assigned[:, None]).astype(np.float32)


FEATURES = {"prob": _prob, "margin": _margin, "correct": _correct}


def check_features(names: list[str] | tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in FEATURES]
    if unknown or not names:
        raise UserError(f"unknown detector features {unknown}; choose from: {', '.join(FEATURES)}")


def build_features(dyn: Dynamics, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Stack the named sequences into float32 [N, E, F]."""
    check_features(names)
    return np.stack([FEATURES[name](dyn) for name in names], axis=2)
