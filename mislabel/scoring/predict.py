"""Rank a run's training samples with a trained detector and score the ranking.

``get_order`` is the seed's entry point: order (most suspicious first), AUC and mAP against the
synthetic flips, and threshold-0.5 precision/recall/F1/accuracy. Without ground truth the
metrics are ``None`` and callers say so instead of printing 0.
``top_suspects`` takes the top share of that order, as denoise removes it and repair relabels it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mislabel.scoring.features import NEEDS_MARGIN_AND_PRED, build_features
from mislabel.scoring.lstm import LSTMDetector, load_detector
from mislabel.scoring.metrics import detection_metrics
from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError

__all__ = ["Ranking", "Suspects", "detector_scores", "estimated_noisy_count", "get_order", "top_suspects"]

SCORING_BATCH = 4096


@dataclass
class Ranking:
    order: np.ndarray            # row positions, most suspicious first
    scores: np.ndarray           # probability of "mislabeled" per row
    metrics: dict | None         # auc, map, ... or None without ground truth

    @property
    def auc(self) -> float | None:
        return None if self.metrics is None else self.metrics["auc"]

    @property
    def map(self) -> float | None:
        return None if self.metrics is None else self.metrics["map"]


@torch.no_grad()
def detector_scores(model: LSTMDetector, config: dict, dyn: Dynamics) -> np.ndarray:
    """Probability that each row is mislabeled, batched to bound memory; inputs are resampled to the
    detector's ``seq_len`` when it was trained that way, so runs of any length apply."""
    features = config["features"]
    missing = [name for name in features if name in NEEDS_MARGIN_AND_PRED and dyn.margin is None]
    if missing:
        raise UserError(f"the detector needs {missing} but these dynamics lack them; regenerate them with generate_td")
    sequences = build_features(dyn, features, int(config.get("seq_len") or 0))
    if sequences.shape[2] != model.lstm.input_size:
        raise UserError(f"the detector expects {model.lstm.input_size} features per epoch but got "
                        f"{sequences.shape[2]}; use a detector trained with features {features}")
    device = next(model.parameters()).device
    model.eval()
    out = [torch.sigmoid(model(torch.from_numpy(sequences[start:start + SCORING_BATCH]).to(device))).cpu()
           for start in range(0, len(sequences), SCORING_BATCH)]
    return torch.cat(out).numpy().astype(np.float64)


def get_order(model: LSTMDetector, config: dict, dyn: Dynamics) -> Ranking:
    scores = detector_scores(model, config, dyn)
    order = np.argsort(-scores, kind="stable")
    return Ranking(order=order, scores=scores, metrics=detection_metrics(scores, dyn.flipped, threshold=0.5))


@dataclass
class Suspects:
    """The detector's top share of a run: the rows denoise removes and repair relabels."""

    ranking: Ranking
    rows: np.ndarray              # row positions of the suspects, most suspicious first
    flipped_share: float | None   # share of them with a flipped label; None without ground truth or suspects


def estimated_noisy_count(scores: np.ndarray) -> int:
    """How many labels the detector takes for wrong: those it gives probability >= 0.5. The detector
    is trained with the classes balanced (pos_weight), so 0.5 is its own decision boundary, not a
    prior on the noise rate; BENCHMARKS.md tables this estimate against the truth."""
    return int(np.count_nonzero(scores >= 0.5))


def top_suspects(detector_file: str | Path, dyn: Dynamics, ratio: float | str,
                 device: torch.device | str = "cpu") -> Suspects:
    """Rank ``dyn`` with the detector in ``detector_file`` and take its top ``ratio`` (rounded to whole
    rows; ``"auto"``: as many as ``estimated_noisy_count``), so denoise and repair pick their
    suspects, and score them, the same way."""
    detector, detector_config = load_detector(detector_file, device)
    ranking = get_order(detector, detector_config, dyn)
    count = (estimated_noisy_count(ranking.scores) if ratio == "auto"
             else int(round(float(ratio) * dyn.num_samples)))
    rows = ranking.order[:count]
    flipped_share = float(dyn.flipped[rows].mean()) if dyn.flipped is not None and len(rows) else None
    return Suspects(ranking=ranking, rows=rows, flipped_share=flipped_share)
