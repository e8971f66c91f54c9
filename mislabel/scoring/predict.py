"""Rank a run's training samples with a trained detector and score the ranking.

``get_order`` is the seed's entry point: the detector's scores as a ``MethodScores`` (its ``order``:
most suspicious first), AUC and mAP against the synthetic flips, and precision/recall/F1/accuracy
at ``DETECTOR_THRESHOLD``. Without ground truth the metrics are ``None`` and callers say so
instead of printing 0. ``detector_scores`` is what
``mislabel.scoring.scores.score`` runs for a detector.
"""
from __future__ import annotations

import numpy as np
import torch

from mislabel.scoring.features import NEEDS_MARGIN_AND_PRED, build_features
from mislabel.scoring.lstm import LSTMDetector
from mislabel.scoring.gate import gated_scores
from mislabel.scoring.metrics import DETECTOR_THRESHOLD, MethodScores, detection_metrics
from mislabel.scoring.summary import SampleSummary, summarize
from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError

__all__ = ["detector_scores", "get_order", "sequence_scores"]

SCORING_BATCH = 4096


@torch.no_grad()
def detector_scores(model: LSTMDetector, config: dict, dyn: Dynamics, count: int | None = None,
                    summary: SampleSummary | None = None) -> np.ndarray:
    """Each row's score, higher = more likely mislabeled, batched to bound memory; inputs are resampled
    to the detector's ``seq_len`` when it was trained that way, so runs of any length apply. Without a
    gate, the LSTM's probability that the row is mislabeled. With one (``mislabel.scoring.gate``), the
    LSTM's probability and AUM gated by the run: a ranking mapped onto (0, 1], ``count`` samples
    (default: the run's estimated number of wrong labels) at 0.5 or above. ``summary``: the run's
    ``summarize(dyn)`` when the caller holds it, else computed here for the gate."""
    features = config["features"]
    missing = [name for name in features if name in NEEDS_MARGIN_AND_PRED and dyn.margin is None]
    if missing:
        raise UserError(f"the detector needs {missing} but these dynamics lack them; regenerate them with generate_td")
    sequences = build_features(dyn, features, int(config.get("seq_len") or 0))
    if sequences.shape[2] != model.lstm.input_size:
        raise UserError(f"the detector expects {model.lstm.input_size} features per epoch but got "
                        f"{sequences.shape[2]}; use a detector trained with features {features}")
    scores = sequence_scores(model, sequences)
    if "gate" not in config:
        return scores
    return gated_scores(config["gate"], scores, summarize(dyn) if summary is None else summary, count)


@torch.no_grad()
def sequence_scores(model: LSTMDetector, sequences: np.ndarray | torch.Tensor,
                    batch_size: int = SCORING_BATCH) -> np.ndarray:
    """Probability that each prepared feature sequence [N, E, F] is mislabeled, in batches to bound
    memory: ``detector_scores`` after it builds a run's features, and detector training on its
    held-out rows (sequences pooled from several runs, so no single run's dynamics to pass)."""
    device = next(model.parameters()).device
    model.eval()
    sequences = torch.as_tensor(sequences)
    out = [torch.sigmoid(model(sequences[start:start + batch_size].to(device))).cpu()
           for start in range(0, len(sequences), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


def get_order(model: LSTMDetector, config: dict, dyn: Dynamics) -> MethodScores:
    """The seed's ranking call: the detector's scores of ``dyn``, their order and metrics."""
    scores = detector_scores(model, config, dyn)
    return MethodScores("detector", scores, metrics=detection_metrics(scores, dyn.flipped, DETECTOR_THRESHOLD))
