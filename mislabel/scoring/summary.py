"""One run's per-sample summary, computed once: what the count, the gate, the cleaning actions and the
reports read of the dynamics besides the detectors' and baselines' own scores.

    summary = summarize(dyn)                      # once per run
    estimate_noisy_count(summary)                 # the count: window_mean
    score(dyn, ..., summary=summary)              # the gate: weighted_aum (or aum), concentration
    clean_labels(summary, rows, action)           # the actions: given_probability, suggested
    suspects_table(dyn, summary, ...)             # the reports: predicted

Each quantity has one definition here, so "the model's belief in a label" is the same number in the
weights, the suggestions, the predicted labels and the count. Two means of the probabilities are
kept, as the method needs both: over the whole run (what the model came to believe) and over the
count's window (``DEFAULT_WINDOW``: before it memorised the wrong labels; ``mislabel.scoring.count``).
Means are float32, summed as the earlier versions summed them, so every output stays bit for bit
the same; the confidence baseline (``baselines.confidence``) is the run mean of the given label in
float64, a scoring method timed on its own.

A frozen dataclass built by ``summarize``: a later per-run quantity is one more field. Numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError
from mislabel.scoring.baselines import aum
from mislabel.scoring.features import pair_counts
from mislabel.scoring.memorisation import before_memorisation, label_agreement, row_blocks

__all__ = ["DEFAULT_WINDOW", "SampleSummary", "agreement_weighted_aum", "concentration", "scoring_view", "summarize"]

# Fractions (start, stop) of the recorded epochs whose probabilities the count averages: up to the
# recipe's second learning-rate decay (x0.1 at 50% and 75% of the epochs), after which the network fits
# what is left, wrong labels included. Chosen by the smallest worst error over the detectors' training
# runs (seed 100, never an evaluated run) trained with the benchmark grid's recipes
# (bench/noisy_count.py --windows): 57%, against 59% for the whole run, 81% for the first half and 97%
# for the first 30%. Early epochs count the clean samples of look-alike classes the network has not yet
# separated (Fashion-MNIST: +57% at 10% noise here, +178% on the first 10% of epochs); late ones hide
# wrong labels it has memorised (digits: down to -59% on the whole run).
DEFAULT_WINDOW = (0.0, 0.75)
# At most this many epochs are read for the concentration (evenly spaced): it is a share over
# hundreds of thousands of predictions, stable with a few epochs.
_CONCENTRATION_EPOCHS = 8


@dataclass(frozen=True)
class SampleSummary:
    """Per sample of one run (rows aligned to its dynamics), and the run's concentration.

    Channel 0 of the dynamics is the given label, channel 1 the other class of highest mean
    probability; a run recorded with the given label's channel alone has no channel 1, so it
    suggests nothing (``suggested`` is the given label, ``suggested_probability`` NaN)."""

    given: np.ndarray                  # int64 [N]: the given labels
    classes: np.ndarray                # int64 [N, C]: the class of each recorded channel
    num_classes: int                   # K: the classifier's class count (else one more than the largest class)
    given_probability: np.ndarray      # float32 [N]: the given label's mean probability over the run
    predicted: np.ndarray              # int64 [N]: the class of highest mean probability over the run
    suggested: np.ndarray              # int64 [N]: the most probable other class over the run
    suggested_probability: np.ndarray  # float32 [N]: its mean probability over the run
    num_epochs: int                    # E: the recorded epochs
    window: range                      # the epochs of the count's window
    window_mean: np.ndarray            # float32 [N, C]: each channel's mean probability over the window
    aum: np.ndarray                    # float64 [N]: minus the area under the margin (the aum score)
    weighted_aum: np.ndarray           # float64 [N]: the gate's AUM, ``agreement_weighted_aum`` (= aum if memorised)
    concentration: float               # ``concentration``: whether the run's mistakes follow its classes
    onset: int | None = None           # the epoch the run began to memorise, when ``scoring_view`` found one

    @property
    def num_channels(self) -> int:
        return self.classes.shape[1]


def _epoch_range(num_epochs: int, window: tuple[float, float]) -> range:
    """The epochs ``window`` selects, at least one; refused when it is not 0 <= start < stop <= 1."""
    try:
        start, stop = (float(value) for value in window)
    except (TypeError, ValueError):
        start, stop = 1.0, 0.0  # not a pair of numbers: refused below with the same message
    if not 0.0 <= start < stop <= 1.0:
        raise UserError(f"window must be (start, stop) fractions of the epochs with 0 <= start < stop <= 1; "
                        f"got {window}")
    first = min(int(start * num_epochs), num_epochs - 1)
    return range(first, max(first + 1, int(round(stop * num_epochs))))


def _window_mean(dyn: Dynamics, chosen: range) -> np.ndarray:
    """float32 [N, C]: each recorded channel's probability averaged over the ``chosen`` epochs, one
    epoch summed at a time, so nothing is [N, E, C] beyond the stored dynamics. Runs stored with only
    the top channels (C < K) lack the classes they dropped: those were the least probable on
    average, so they reach no threshold of the count anyway."""
    mean = np.zeros((dyn.num_samples, dyn.td.shape[2]), dtype=np.float32)
    for epoch in chosen:
        mean += dyn.td[:, epoch, :]
    return mean / len(chosen)


def concentration(dyn: Dynamics) -> float:
    """Of the model's predictions that differ from the label (over the run), the share that go to the
    single most frequent wrong class of their label's class; 1.0 when the model never disagrees.
    Near 1 when a run's mistakes follow a class structure, near 1/(K-1) when they scatter
    (``mislabel.scoring.gate`` weighs the LSTM by it)."""
    epochs = np.unique(np.linspace(0, dyn.num_epochs - 1, min(_CONCENTRATION_EPOCHS, dyn.num_epochs)).round()
                       .astype(np.int64))
    assigned = np.repeat(dyn.assigned.astype(np.int64), len(epochs))
    pred = dyn.pred[:, epochs].astype(np.int64).reshape(-1)
    wrong = pred != assigned
    if not wrong.any():
        return 1.0
    top = np.zeros(int(assigned.max()) + 1, np.int64)
    np.maximum.at(top, assigned[wrong], pair_counts(assigned[wrong], pred[wrong]))
    return float(top.sum() / np.count_nonzero(wrong))


def agreement_weighted_aum(dyn: Dynamics, num_classes: int, agreement: np.ndarray | None = None) -> np.ndarray:
    """float64 [N]: minus the margin averaged over the epochs, each weighted by how far the network's
    agreement with the given labels stood above chance (1/K) at that epoch; plain AUM when it never did.

    Why: an epoch in which the network knew nothing yet ranks the samples at random, and AUM's plain mean
    gives it as much say as a learned one. From scratch that is an epoch or two of many; a head on
    features from a weakly related network, or a short fine-tune of one, learns for half its epochs
    (bench/regimes.py, probe_other and finetune_other: AUM 0.005-0.016 AUC better weighted, no cell of the
    other regimes worse by more than 0.002). Only for a run that did not memorise: in one that did, the
    agreement climbs because wrong labels are learned, so it measures no evidence there (the gate then
    reads plain AUM over the epochs before the onset). ``agreement``: the run's ``label_agreement`` when the
    caller holds it. Blocks of rows, so the extra memory stays O(block x E)."""
    agreement = label_agreement(dyn) if agreement is None else agreement
    weights = np.clip(agreement - 1.0 / max(num_classes, 1), 0.0, None)
    if weights.sum() <= 0:
        return aum(dyn)
    weights = (weights / weights.sum()).astype(np.float32)   # float32 sums: 2x faster, within 1e-6 of float64
    weighted = np.empty(dyn.num_samples, np.float64)
    for rows in row_blocks(dyn.num_samples):
        weighted[rows] = dyn.margin[rows].astype(np.float32) @ weights
    return -weighted


def summarize(dyn: Dynamics, window: tuple[float, float] = DEFAULT_WINDOW, onset: int | None = None,
              agreement: np.ndarray | None = None) -> SampleSummary:
    """The per-sample summary of ``dyn``; ``window``: the (start, stop) fractions of the epochs the
    count averages; ``onset``: the memorisation onset ``dyn`` was cut at (``scoring_view``), if any;
    ``agreement``: ``dyn``'s ``label_agreement`` when the caller holds it."""
    chosen = _epoch_range(dyn.num_epochs, window)
    given = np.asarray(dyn.assigned, dtype=np.int64)
    classes = np.asarray(dyn.labels, dtype=np.int64)
    given_probability = dyn.td[:, :, 0].astype(np.float32).mean(axis=1)
    if dyn.td.shape[2] > 1:
        suggested = classes[:, 1].copy()
        suggested_probability = dyn.td[:, :, 1].astype(np.float32).mean(axis=1)
        predicted = np.where(given_probability >= suggested_probability, given, suggested)
    else:
        suggested, suggested_probability = given.copy(), np.full(len(given), np.nan, dtype=np.float32)
        predicted = given.copy()
    num_classes = int(dyn.num_classes or int(np.max(classes)) + 1)
    plain_aum = aum(dyn)
    return SampleSummary(given=given, classes=classes, num_classes=num_classes,
                         given_probability=given_probability, predicted=predicted, suggested=suggested,
                         suggested_probability=suggested_probability, num_epochs=dyn.num_epochs, window=chosen,
                         window_mean=_window_mean(dyn, chosen), aum=plain_aum,
                         weighted_aum=plain_aum if onset is not None else agreement_weighted_aum(dyn, num_classes,
                                                                                                  agreement),
                         concentration=concentration(dyn), onset=onset)


def scoring_view(dyn: Dynamics) -> tuple[Dynamics, SampleSummary]:
    """What every score, the gate and the count of a run read: its epochs before it memorised its labels
    (all of them when it did not; ``mislabel.scoring.memorisation``) and their summary. rank, compare,
    find_issues, denoise and repair all start here, so a run is scored on the same epochs everywhere."""
    agreement = label_agreement(dyn)   # once: the onset reads it, and the gate's base when there is none
    scored, onset = before_memorisation(dyn, agreement)
    return scored, summarize(scored, onset=onset, agreement=agreement if onset is None else None)
