"""Ranking metrics for mislabel detection: higher score = more likely mislabeled.

Every metric is undefined without ground truth of both kinds (some flipped, some clean);
then we return ``None`` rather than a misleading 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["DETECTOR_THRESHOLD", "MethodScores", "has_ground_truth", "detection_metrics",
           "precision_at_fraction"]

# A detector's probability of "mislabeled" at or above which a sample is flagged. The detectors are
# trained with the classes balanced (pos_weight), so 0.5 is their own decision boundary.
DETECTOR_THRESHOLD = 0.5


@dataclass
class MethodScores:
    """One method's scores of a run (aligned to its rows; higher = more suspicious), what computing
    them took, their detection metrics when the flips are known (else ``None``), and a caveat a
    report should print. Every ranking in the package is one of these."""

    name: str
    scores: np.ndarray
    seconds: float = 0.0
    metrics: dict | None = None
    note: str = ""

    @property
    def order(self) -> np.ndarray:
        """Row positions, most suspicious first (ties keep row order)."""
        return np.argsort(-self.scores, kind="stable")

    @property
    def auc(self) -> float | None:
        return None if self.metrics is None else self.metrics["auc"]

    @property
    def map(self) -> float | None:
        return None if self.metrics is None else self.metrics["map"]


def has_ground_truth(flipped: np.ndarray | None) -> bool:
    return flipped is not None and 0 < int(np.sum(flipped)) < len(flipped)


def precision_at_fraction(scores: np.ndarray, flipped: np.ndarray, fraction: float) -> float:
    """Share of truly flipped samples among the top ``fraction`` of the ranking."""
    k = max(1, int(round(fraction * len(scores))))
    top = np.argsort(-scores, kind="stable")[:k]
    return float(np.mean(flipped[top]))


def detection_metrics(scores: np.ndarray, flipped: np.ndarray | None, threshold: float | None = None
                      ) -> dict[str, float] | None:
    """AUC, mAP (average precision), precision/recall at k = #flipped, precision at the top 5%/10%.

    With ``threshold`` (for probability outputs) also precision, recall, F1 and accuracy of
    ``scores >= threshold``. Returns ``None`` when the flips are unknown or all of one kind.
    """
    if not has_ground_truth(flipped):
        return None
    flipped = np.asarray(flipped, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    num_flipped = int(flipped.sum())
    top_k = np.argsort(-scores, kind="stable")[:num_flipped]
    hits = float(flipped[top_k].sum())
    result = {
        "auc": float(roc_auc_score(flipped, scores)),
        "map": float(average_precision_score(flipped, scores)),
        "precision_at_k": hits / num_flipped,
        "recall_at_k": hits / num_flipped,
        "precision_top5": precision_at_fraction(scores, flipped, 0.05),
        "precision_top10": precision_at_fraction(scores, flipped, 0.10),
    }
    if threshold is not None:
        predicted = scores >= threshold
        true_pos = float(np.sum(predicted & flipped))
        precision = true_pos / max(int(predicted.sum()), 1)
        recall = true_pos / num_flipped
        result.update(
            precision=precision,
            recall=recall,
            f1=2 * precision * recall / max(precision + recall, 1e-12),
            accuracy=float(np.mean(predicted == flipped)),
        )
    return result
