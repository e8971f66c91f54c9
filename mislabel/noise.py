"""Synthetic label noise, drawn only from (seed, dataset, noise_ratio, noise_type).

Two models, as in the paper:
* ``uniform`` (alias ``sym``): the label is redrawn from a transition matrix whose diagonal is
  ``1 - r`` and whose off-diagonal entries are ``r / (K - 1)``; a changed label is therefore
  uniform over the *other* classes, and the expected flip rate is exactly ``r``.
* ``flip`` (alias ``asym``): class ``c`` becomes ``(c + 1) mod K`` with probability ``r``.
"""
from __future__ import annotations

import zlib

import numpy as np

from util import UserError

__all__ = ["NOISE_TYPES", "canonical_noise_type", "corrupt_labels"]

NOISE_TYPES = {"uniform": "uniform", "sym": "uniform", "flip": "flip", "asym": "flip"}


def canonical_noise_type(noise_type: str) -> str:
    try:
        return NOISE_TYPES[noise_type]
    except KeyError:
        raise UserError(f"unknown noise_type {noise_type!r}; use uniform (alias sym) or flip (alias asym)") from None


def noise_rng(seed: int, dataset: str, noise_ratio: float, noise_type: str) -> np.random.Generator:
    """A generator keyed on everything that defines the corruption, and nothing else.

    Hashing the strings with CRC32 (not Python's salted ``hash``) keeps the draw identical
    across processes and machines.
    """
    key = f"{dataset}|{canonical_noise_type(noise_type)}|{noise_ratio:.6f}"
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def corrupt_labels(true_labels: np.ndarray, num_classes: int, noise_ratio: float, noise_type: str,
                   seed: int, dataset: str) -> np.ndarray:
    """Return the assigned (noisy) labels; ``assigned != true_labels`` marks the flips."""
    if not 0.0 <= noise_ratio < 1.0:
        raise UserError(f"noise_ratio {noise_ratio} is outside [0, 1); pass e.g. 0.2 for 20% noise")
    noise_type = canonical_noise_type(noise_type)
    true_labels = np.asarray(true_labels, dtype=np.int64)
    if noise_ratio == 0.0 or num_classes < 2:
        return true_labels.copy()
    rng = noise_rng(seed, dataset, noise_ratio, noise_type)
    flip = rng.random(len(true_labels)) < noise_ratio
    if noise_type == "uniform":
        shift = rng.integers(1, num_classes, size=len(true_labels))
    else:
        shift = np.ones(len(true_labels), dtype=np.int64)
    return np.where(flip, (true_labels + shift) % num_classes, true_labels)
