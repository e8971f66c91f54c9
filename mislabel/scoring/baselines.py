"""Hand-crafted mislabel scores computed from recorded training dynamics.

These are the baselines the learned detector is compared against. Each score takes a
``mislabel.core.dynamics.Dynamics`` and returns float64 ``[N]`` oriented so that HIGHER = MORE
LIKELY MISLABELED, which is the convention of ``mislabel.scoring.metrics`` (AUC, AP, precision at k).

Two facts of the stored format shape the code:

* ``td`` is float16 and can be large (N x E x C); scores that only need the assigned label read
  channel 0 alone, and the one score that needs every channel works on chunks of samples.
* Only the top channels may be stored (C can be smaller than the number of classes). Channel 0
  is always the assigned label and the others are its strongest competitors, which is what the
  multi-channel score needs.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mislabel.core.dynamics import Dynamics, first_epochs
from mislabel.core.user_input import UserError
from mislabel.scoring.features import assigned_prob, correct

__all__ = [
    "check_pred_probs",
    "aum",
    "confidence",
    "variability",
    "correctness",
    "forgetting",
    "loss",
    "last_prob",
    "confidence_tracking",
    "confidence_tracking_early",
    "cleanlab",
    "BASELINES",
]

# A probability stored as 0 in float16 is below its smallest subnormal, so clipping there gives
# the largest loss the file can still tell apart instead of an infinite one.
_SMALLEST_STORED_PROB = float(np.finfo(np.float16).smallest_subnormal)

# Working-set size of one chunk of confidence gaps in `confidence_tracking`; the per-lag
# temporaries are a small multiple of it, so peak memory stays near 100 MB for any N.
_CHUNK_BYTES = 24 * 2**20


# ----------------------------------------------------------------------------------------------
# Area under the margin
# ----------------------------------------------------------------------------------------------


def aum(dyn: Dynamics) -> np.ndarray:
    """Minus the area under the margin (Pleiss et al., NeurIPS 2020, "Identifying Mislabeled Data
    using the Area Under the Margin Ranking").

    The margin is the assigned logit minus the largest other logit; a mislabeled sample is pushed
    towards its true class by its clean neighbours, so its margin stays low or negative. AUM is
    the mean margin over epochs; we negate it so low AUM ranks first.
    """
    return -dyn.margin.mean(axis=1, dtype=np.float64)  # summed in float64 without a float64 copy of margin


# ----------------------------------------------------------------------------------------------
# Data Maps (dataset cartography)
# ----------------------------------------------------------------------------------------------


def confidence(dyn: Dynamics) -> np.ndarray:
    """Minus the mean assigned-label probability over epochs (Swayamdipta et al., EMNLP 2020,
    "Dataset Cartography").

    Mislabeled samples fall in the "hard-to-learn" region of the data map: the model keeps a
    low probability on a label that contradicts the rest of the data.
    """
    return -assigned_prob(dyn, np.float64).mean(axis=1)


def variability(dyn: Dynamics) -> np.ndarray:
    """Standard deviation over epochs of the assigned-label probability (Swayamdipta et al.,
    EMNLP 2020, population std as in the paper).

    Direction: higher variability scores higher. In the paper, high variability marks
    *ambiguous* samples, whose label the model keeps revising; that is the region where
    borderline and wrong labels gather, while consistently learned and consistently rejected
    samples both have low variability. This makes it a weak mislabel score on its own (it also
    ranks clean ambiguous samples high), and it is kept as the cartography baseline.
    """
    return assigned_prob(dyn, np.float64).std(axis=1)


def correctness(dyn: Dynamics) -> np.ndarray:
    """Minus the fraction of epochs whose argmax is the assigned label (Swayamdipta et al.,
    EMNLP 2020): a label the model rarely predicts is more likely wrong."""
    return -correct(dyn).mean(axis=1)


# ----------------------------------------------------------------------------------------------
# Forgetting, loss, last-epoch probability
# ----------------------------------------------------------------------------------------------


def forgetting(dyn: Dynamics) -> np.ndarray:
    """Number of forgetting events: epochs where a correct prediction turns incorrect (Toneva et
    al., ICLR 2019, "An Empirical Study of Example Forgetting during Deep Neural Network
    Learning").

    The paper treats samples that are never learned as forgotten infinitely often; we give them
    ``E`` (the number of epochs), which is above any count reachable in ``E`` epochs (at most
    ``E // 2``), so they rank above every forgotten sample while the score stays finite for
    AUC and AP.
    """
    right = correct(dyn)
    events = np.sum(right[:, :-1] & ~right[:, 1:], axis=1)
    never_learned = ~right.any(axis=1)
    return np.where(never_learned, dyn.num_epochs, events).astype(np.float64)


def loss(dyn: Dynamics) -> np.ndarray:
    """Mean cross-entropy of the assigned label over epochs: the small-loss criterion (Han et
    al., NeurIPS 2018, "Co-teaching"; Arpit et al., ICML 2017): networks fit clean labels before
    they memorise noisy ones, so noisy labels keep a large loss for most of training."""
    prob = np.clip(assigned_prob(dyn, np.float64), _SMALLEST_STORED_PROB, None)
    return -np.log(prob).mean(axis=1)


def last_prob(dyn: Dynamics) -> np.ndarray:
    """Minus the assigned-label probability at the last recorded epoch: what a single trained
    model says, the no-dynamics reference point for every other score."""
    return -dyn.td[:, -1, 0].astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Confidence tracking (Mann-Kendall trend of confidence gaps)
# ----------------------------------------------------------------------------------------------


def _mann_kendall_s(series: np.ndarray) -> np.ndarray:
    """Mann-Kendall S = sum over epoch pairs i < j of sign(x_j - x_i), over the last axis.

    Looping over the lag k = j - i keeps memory at one copy of ``series`` rather than E x E.
    """
    num_epochs = series.shape[-1]
    total = np.zeros(series.shape[:-1], dtype=np.int64)
    for lag in range(1, num_epochs):
        later, earlier = series[..., lag:], series[..., :-lag]
        total += np.count_nonzero(later > earlier, axis=-1)
        total -= np.count_nonzero(later < earlier, axis=-1)
    return total


def _mann_kendall_z(s: np.ndarray, num_epochs: int) -> np.ndarray:
    """Normal approximation of S with the usual continuity correction:
    z = (S - sign(S)) / sqrt(n(n-1)(2n+5)/18), and z = 0 when S = 0 or the variance is 0 (n < 2).

    No tie correction: ties only shrink the variance, and the ranking uses the minimum z over
    classes, for which a common denominator is what matters.
    """
    var = num_epochs * (num_epochs - 1) * (2 * num_epochs + 5) / 18.0
    if var == 0:
        return np.zeros(s.shape, dtype=np.float64)
    return (s - np.sign(s)) / np.sqrt(var)


def confidence_tracking(dyn: Dynamics) -> np.ndarray:
    """Minus the smallest Mann-Kendall z of the confidence gaps (Pan, Wei, Zhu & Deng, AAAI 2025,
    "Enhanced Sample Selection with Confidence Tracking: Identifying Correctly Labeled yet
    Hard-to-Learn Samples in Noisy Data").

    For each stored competitor channel c the gap d_c(t) = p_assigned(t) - p_c(t) is tracked over
    epochs. Early in training the gradients of clean labels agree and dominate, so for a correct
    label every gap rises, even when the sample is hard and its loss is still high. A wrong label
    has at least one class (usually the true one) whose gap does not rise, so the least
    increasing gap, minus its z, is the score. Only the stored channels are tested; as they are
    the strongest competitors by mean probability, they are the ones likely to hold the minimum.

    The test spans every stored epoch. The paper applies it during early training, before the
    network memorises wrong labels; over a whole run a memorised flip's gap rises late, and a
    clean sample learned early sits on a plateau where S is mostly noise. To test the early
    phase only, pass a ``Dynamics`` whose arrays are cut to the first epochs.
    """
    num_samples, num_epochs, num_channels = dyn.td.shape
    if num_channels < 2:
        raise UserError(
            "confidence_tracking needs at least one class besides the assigned one in td; "
            "record dynamics with more than one channel"
        )
    # Differences of two float16 values in [0, 1] are exact in float32, so signs are exact.
    rows_per_chunk = max(1, _CHUNK_BYTES // (4 * num_epochs * (num_channels - 1)))
    min_s = np.empty(num_samples, dtype=np.int64)
    for start in range(0, num_samples, rows_per_chunk):
        block = dyn.td[start : start + rows_per_chunk].astype(np.float32)
        gaps = block[:, :, :1] - block[:, :, 1:]  # [n, E, C-1]
        s = _mann_kendall_s(np.ascontiguousarray(gaps.transpose(0, 2, 1)))  # [n, C-1]
        min_s[start : start + rows_per_chunk] = s.min(axis=1)
    # z is increasing in S, so the minimum z is the z of the minimum S.
    return -_mann_kendall_z(min_s, num_epochs)


# The paper tracks the gaps while the network is still in its early-learning phase, before it
# memorises wrong labels; we read that as the first quarter of the recorded epochs (at least 5).
EARLY_SHARE = 0.25
EARLY_MIN_EPOCHS = 5


def confidence_tracking_early(dyn: Dynamics) -> np.ndarray:
    """``confidence_tracking`` over the early-training window only (the first ``EARLY_SHARE`` of the
    epochs, at least ``EARLY_MIN_EPOCHS``), as the method is meant to be applied."""
    epochs = min(dyn.num_epochs, max(EARLY_MIN_EPOCHS, int(round(EARLY_SHARE * dyn.num_epochs))))
    return confidence_tracking(first_epochs(dyn, epochs))


# ----------------------------------------------------------------------------------------------
# Confident learning (needs out-of-sample predicted probabilities, not dynamics)
# ----------------------------------------------------------------------------------------------


def check_pred_probs(pred_probs: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """Held-out class probabilities as float64 [N, K], refused (naming ``pred_probs``) unless there is one
    row per assigned label [N], a column for every assigned label, and each row is a distribution."""
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(assigned) or probs.shape[1] <= int(np.max(assigned, initial=0)) \
            or int(np.min(assigned, initial=0)) < 0:
        raise UserError(f"pred_probs must be [N, K] with one row per sample ({len(assigned)}) and a column for "
                        f"every assigned label (up to {int(np.max(assigned, initial=0))}); got {list(probs.shape)}")
    if not np.all(np.isfinite(probs)) or probs.min(initial=0) < 0 or not np.allclose(probs.sum(axis=1), 1, atol=1e-3):
        raise UserError("pred_probs must hold one probability distribution per row (finite, >= 0, summing to 1)")
    return probs


def cleanlab(pred_probs: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """Confident learning with the ``cleanlab`` library (Northcutt, Jiang & Chuang, JAIR 2021,
    "Confident Learning: Estimating Uncertainty in Dataset Labels").

    ``find_label_issues`` returns a set of flagged samples, not a score. To compare it with the
    other baselines by AUC/AP we turn it into a full ranking: the flagged samples first, in
    cleanlab's own order (lowest self-confidence first), then every other sample by minus its
    self-confidence (the assigned-label probability). Flagged samples get scores ``>= 1`` and the
    rest ``-p`` in ``[-1, 0]``, so the two groups never interleave.

    :param pred_probs: float ``[N, K]`` out-of-sample class probabilities (e.g. cross-validated).
    :param assigned: int ``[N]`` the given (possibly noisy) labels.
    """
    from cleanlab.filter import find_label_issues  # heavy import, only needed by this score

    assigned = np.asarray(assigned, dtype=np.int64)
    pred_probs = check_pred_probs(pred_probs, assigned)
    # n_jobs=1: cleanlab's own process pool loses its worker state inside a spawned process (a bench
    # worker, a DataLoader) and fails; one process gives the same flags
    issues = find_label_issues(assigned, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    scores = -pred_probs[np.arange(len(assigned)), assigned]
    scores[issues] = np.arange(len(issues), 0, -1, dtype=np.float64)
    return scores


# Display order: the margin score, the three cartography coordinates, then forgetting, the
# loss-based scores, and the trend test.
BASELINES: dict[str, Callable[[Dynamics], np.ndarray]] = {
    "aum": aum,
    "confidence": confidence,
    "variability": variability,
    "correctness": correctness,
    "forgetting": forgetting,
    "loss": loss,
    "last_prob": last_prob,
    "confidence_tracking": confidence_tracking,
    "confidence_tracking_early": confidence_tracking_early,
}
