"""How many labels of a run are wrong: a calibrated count with an interval, instead of a threshold on
one detector's scores.

The count is confident learning's (Northcutt, Jiang & Chuang, JAIR 2021, "Confident Learning:
Estimating Uncertainty in Dataset Labels"): per class j a threshold t_j, the mean probability of
class j over the samples labelled j; a sample labelled i goes to the cell (i, j) of the confident
joint where j is, of the classes whose probability reaches their threshold, the most probable; each
row is rescaled to the number of samples labelled i (calibration: samples with no class above its
threshold count in proportion), and the count is the sum off the diagonal.

Confident learning wants out-of-sample probabilities. A run's training dynamics are in-sample, but
averaged over the epochs before the network memorises the wrong labels, they play that part
(``DEFAULT_WINDOW``, chosen on the detectors' training runs, declared with the window means in
``mislabel.scoring.summary``; bench/noisy_count.py measures it).
Held-out (cross-validated) probabilities are used instead when a run has them. Neither source tells
a clean sample the network confuses from a wrong label: look-alike classes push the count up, noise
that picks ambiguous images (``confusion``) pushes it down.

Two ranges come with the count. The bootstrap over samples says how much it would move on another
draw of as many samples, not how far the estimator is biased. The *likely range* (counts from
dynamics only) says that: it is the count scaled by the smallest and largest true / estimated count
seen on runs like this one, so it is as wide as the estimator's real errors: ``SOURCE_RUN_RATIOS``
for a run scored whole, ``MEMORISED_RUN_RATIOS`` for one that memorised its labels and is counted on
its epochs before the onset (``mislabel.scoring.memorisation``), where the count runs low. Numpy only:
importing this module loads neither torch nor cleanlab.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mislabel.core.user_input import UserError
from mislabel.scoring.baselines import check_pred_probs
from mislabel.core.dynamics import Dynamics, subset_dynamics
from mislabel.scoring.summary import DEFAULT_WINDOW, SampleSummary, summarize

__all__ = ["DEFAULT_WINDOW", "MEMORISED_RUN_RATIOS", "SOURCE_RUN_RATIOS", "NoisyCount", "estimate_noisy_count",
           "estimate_on_rows", "flag_first"]

# True count / estimate: the likely range of a count from dynamics, by whether the run memorised. Runs
# scored whole: the wider of the 5th-95th percentiles over the 66 runs of seed 100 in the detectors'
# corpora (0.36-1.53; both datasets, every recipe, 5-50% noise of every type) and the extremes over the
# 47 seed-1 runs of bench/regimes.py that did not memorise (0.40-2.42: from scratch with and without
# augmentation, a linear head on frozen features, a short fine-tune, a head on and a fine-tune of a network
# pretrained on the other dataset; four noise types). Runs that
# memorised: the extremes of its 9 seed-1 runs that did (1.20-5.06), the low end widened to the other
# range's, as 9 runs are few. BENCHMARKS.md ("Training regimes") says how often they held the truth on
# the grid's seeds 2 and 3, which set none of this (`python bench/regimes.py --stage report`).
SOURCE_RUN_RATIOS = (0.36, 2.42)
MEMORISED_RUN_RATIOS = (0.36, 5.06)
RESAMPLES = 1000   # bootstrap draws; each is a multinomial over 3K row outcomes, so cheap at any N
BOOTSTRAP_CELLS = 2**24   # values drawn at once (128 MiB of int64): 1,000 draws at once up to 5,592 classes
SLACK = 1e-6       # a probability equal to its class threshold reaches it despite float rounding


@dataclass(frozen=True)
class NoisyCount:
    """An estimated number of wrong labels, its bootstrap interval at ``level``, its likely range
    (``None`` for held-out probabilities, whose errors the corpus does not measure) and how it was made.

    The bootstrap interval is sampling variation only: on the benchmark grid the estimator's bias is
    larger, so the true count usually lies outside it; the likely range carries that bias."""

    estimate: int
    low: int
    high: int
    method: str
    level: float = 0.9
    likely: tuple[int, int] | None = None

    def describe(self) -> str:
        """One line for reports."""
        likely = (f"likely {self.likely[0]:,}-{self.likely[1]:,}, the range that held the true count on the "
                  "benchmark's runs of every training regime; " if self.likely else "")
        return (f"~{self.estimate:,} wrong labels ({likely}{self.level:.0%} bootstrap interval "
                f"{self.low:,}-{self.high:,}), {self.method}")


def class_probabilities(summary: SampleSummary) -> np.ndarray:
    """float32 [N, K]: the summary's window means spread over every class, 0 for the classes not
    recorded; dense, for inspection beside ``confident_joint`` (the count never builds it)."""
    probs = np.zeros((len(summary.given), summary.num_classes), dtype=np.float32)
    np.put_along_axis(probs, summary.classes, summary.window_mean, axis=1)
    return probs


def _guesses(probs: np.ndarray, classes: np.ndarray, own: np.ndarray, given: np.ndarray, num_classes: int
             ) -> np.ndarray:
    """int64 [N]: each sample's confident class (K = none), from probabilities [N, C] of the classes
    [N, C] (C = K for dense probabilities) and each sample's probability of its given class ``own``."""
    labelled = np.bincount(given, minlength=num_classes)
    self_sums = np.bincount(given, weights=own, minlength=num_classes)
    # a class nobody is labelled with has no threshold of its own: no sample is counted as it
    thresholds = np.where(labelled > 0, self_sums / np.maximum(labelled, 1), np.inf)
    reached = probs >= thresholds[classes] - SLACK
    guess = classes[np.arange(len(probs)), np.where(reached, probs, -1.0).argmax(axis=1)]
    guess[~reached.any(axis=1)] = num_classes
    return guess


def _row_outcomes(guess: np.ndarray, given: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [K, 3]: per given class, its samples confident as that class, as another, as none: all
    the count needs of the confident joint's row, so K x K is never built."""
    outcome = np.where(guess == given, 0, np.where(guess == num_classes, 2, 1))
    return np.bincount(given * 3 + outcome, minlength=3 * num_classes).reshape(num_classes, 3)


def _count(rows: np.ndarray) -> np.ndarray:
    """The calibrated confident joint's off-diagonal sum from row outcomes [..., K, 3]: each row
    rescaled to the samples labelled with its class, n_i * (confident elsewhere) / (confident)."""
    rows = rows.astype(np.float64)
    confident = rows[..., 0] + rows[..., 1]
    share = np.divide(rows[..., 1], confident, out=np.zeros_like(confident), where=confident > 0)
    return (rows.sum(axis=-1) * share).sum(axis=-1)


def confident_joint(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """float64 [K, K]: the calibrated confident joint (rows: given label, columns: confident class)
    of probabilities [N, K] and given labels [N]; its off-diagonal sum is the estimated count. Dense,
    for inspection: ``estimate_noisy_count`` never builds it."""
    num_classes = probs.shape[1]
    guess = _dense_guesses(probs, given)
    cells = np.bincount(given * (num_classes + 1) + guess, minlength=num_classes * (num_classes + 1))
    cells = cells.reshape(num_classes, num_classes + 1)
    joint = cells[:, :-1].astype(np.float64)
    confident = joint.sum(axis=1, keepdims=True)
    return np.divide(joint * cells.sum(axis=1, keepdims=True), confident, out=np.zeros_like(joint),
                     where=confident > 0)


def _dense_guesses(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    return _guesses(probs, np.broadcast_to(np.arange(probs.shape[1]), probs.shape), probs[np.arange(len(probs)), given],
                    given, probs.shape[1])


def _bootstrap(rows: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The count of ``resamples`` redraws of the samples: a multinomial over the 3K row outcomes
    (the confident joint's cells grouped as the count reads them, so the same distribution),
    drawn in chunks of at most BOOTSTRAP_CELLS values so that many classes stay within memory."""
    total = int(rows.sum())
    rng, shares = np.random.default_rng(seed), rows.ravel() / max(total, 1)
    chunk = max(1, BOOTSTRAP_CELLS // rows.size)
    return np.concatenate([_count(rng.multinomial(total, shares, size=min(chunk, resamples - start))
                                  .reshape(-1, *rows.shape)) for start in range(0, resamples, chunk)])


def estimate_noisy_count(summary: SampleSummary, *, pred_probs: np.ndarray | None = None, level: float = 0.9,
                         resamples: int = RESAMPLES, seed: int = 0) -> NoisyCount:
    """How many of a run's labels are wrong, by confident learning on the window means of its
    ``summary`` (``mislabel.scoring.summary.summarize(dyn, window)`` chooses the epochs averaged).

    :param pred_probs: float [N, K] held-out probabilities, row i for sample i of the run (e.g.
        ``mislabel.training.crossval.load_pred_probs``); when given they replace the dynamics.
    :param level: the interval's coverage, in (0, 1).
    :param resamples: bootstrap draws for the interval (at least 10; 0: no bootstrap, the interval is
        the estimate itself, as the gate's remapping needs only the count).
    :param seed: the bootstrap's random seed; the same inputs and seed give the same result.
    """
    if not 0.0 < float(level) < 1.0:
        raise UserError(f"level must lie strictly between 0 and 1; got {level}")
    if int(resamples) != resamples or 0 < resamples < 10 or resamples < 0:
        raise UserError(f"resamples must be 0 (no interval) or a whole number >= 10; got {resamples}")
    given = summary.given
    if pred_probs is not None:
        probs = check_pred_probs(pred_probs, given).astype(np.float32)
        num_classes, guess = probs.shape[1], _dense_guesses(probs, given)
        method = "confident-joint estimate on held-out probabilities"
    else:
        mean, num_classes = summary.window_mean, summary.num_classes  # channel 0 is the given label's
        guess = _guesses(mean, summary.classes, mean[:, 0], given, num_classes)
        chosen = summary.window
        method = (f"confident-joint estimate on training dynamics (epochs {chosen.start + 1}-{chosen.stop} "
                  f"of {summary.num_epochs})")
        if summary.onset is not None:
            method += (f", the epochs before the run began to memorise its labels (epoch {summary.onset + 1}); "
                       "such counts run low")
    rows = _row_outcomes(guess, given, num_classes)
    estimate = int(round(float(_count(rows))))
    low = high = estimate
    if resamples:
        # Resampling samples with the thresholds held fixed is a multinomial draw over the outcomes
        # (the thresholds are means over whole classes, so their own variation is small next to the counts').
        tail = (1.0 - float(level)) / 2 * 100
        low, high = (int(round(float(value))) for value in np.percentile(_bootstrap(rows, int(resamples), seed),
                                                                       [tail, 100 - tail]))
    ratios = MEMORISED_RUN_RATIOS if summary.onset is not None else SOURCE_RUN_RATIOS
    likely = None if pred_probs is not None else (
        int(round(estimate * ratios[0])), min(len(given), int(round(estimate * ratios[1]))))
    return NoisyCount(estimate=estimate, low=min(low, estimate), high=max(high, estimate), method=method,
                      level=float(level), likely=likely)


def estimate_on_rows(dyn: Dynamics, summary: SampleSummary, rows: np.ndarray | None,
                     pred_probs: np.ndarray | None = None) -> NoisyCount:
    """``estimate_noisy_count`` of the rows ``rows`` of a run alone (None: all of them, from ``summary``):
    a seeded run counts its unseeded rows, whose labels are the user's. ``dyn`` and ``summary`` are the
    scored view (``mislabel.scoring.summary.scoring_view``); ``pred_probs`` rows as the run's."""
    if rows is None:
        return estimate_noisy_count(summary, pred_probs=pred_probs)
    return estimate_noisy_count(summarize(subset_dynamics(dyn, rows), onset=summary.onset),
                                pred_probs=None if pred_probs is None else pred_probs[rows])


def flag_first(order: np.ndarray, count: int) -> np.ndarray:
    """bool [N]: the first ``count`` rows of a ranking's ``order`` (most suspicious first, ties in row
    order as every ranking sorts them): how the estimated count becomes flags (find_issues, denoise's
    suspects.csv, ``rank``, Datalab), from the order the ranking already sorted."""
    flagged = np.zeros(len(order), dtype=bool)
    flagged[np.asarray(order)[:max(0, int(count))]] = True
    return flagged
