"""The epochs before a run memorised its wrong labels: what every score and the count read.

Networks fit clean labels before wrong ones (Arpit et al., ICML 2017, "A closer look at memorization in
deep networks"); a run that trains long enough, without augmentation or with a head on fixed features,
ends up agreeing with nearly every label, wrong ones included. Averaged over the whole run, the evidence
then drowns: AUM's margins, the LSTM's inputs and the confident-joint count all read the late epochs in
which a wrong label looks like any other (bench/regimes.py: a linear head on frozen features, 30 epochs,
AUM 0.90 and a count of 0-31 against 247-425 wrong labels; the same scores on the epochs before the
onset: AUM 0.93-0.96, counts of 100-230).

The run shows when it happens. Take the samples the network disagrees with once it agrees with most
labels and has stopped learning fast (the reference epoch): wrong labels and hard clean samples. A run that
learns (without memorising) wins some of the hard clean ones later; one that memorises wins nearly all
of them, wrong labels included. The *onset* is the first later epoch from which on at least
``ONSET_LEVEL`` of them agree with their labels; the scored epochs are those before it. A run that
never gets there is scored whole, exactly as before. Numpy only, O(N x E) comparisons.
"""
from __future__ import annotations

import numpy as np

from mislabel.core.dynamics import Dynamics, first_epochs

__all__ = ["MIN_REFERENCE_EPOCH", "MIN_SCORED_EPOCHS", "ONSET_LEVEL", "PLATEAU_EPOCHS", "PLATEAU_GAIN",
           "REFERENCE_AGREEMENT", "before_memorisation", "label_agreement", "memorisation_onset", "row_blocks"]

# The reference epoch: the first at which the network agrees with most labels and has stopped learning
# fast (agreement gaining under PLATEAU_GAIN a epoch over the next PLATEAU_EPOCHS), so that the samples it
# disagrees with are the wrong and the hard ones, not clean ones it is still learning. A fixed quarter of
# the run was not that: find_issues' LeNet on the test suite's 480 digits, still learning then, was cut
# at "its onset", lost 0.07 AUC and counted 230 of 480.
REFERENCE_AGREEMENT = 0.5
PLATEAU_GAIN = 0.01
PLATEAU_EPOCHS = 2
MIN_REFERENCE_EPOCH = 2   # the first epochs of any run, a fine-tune's above all, are still learning
# Half of the samples it then disagreed with: from-scratch runs of the regimes grid end below it, the
# linear heads trained until they memorise at 0.79-0.99 (bench/regimes.py).
ONSET_LEVEL = 0.5
MIN_SCORED_EPOCHS = 2   # the LSTM and the trend scores need a sequence; a single epoch is not one


def _reference_epoch(agreement: np.ndarray) -> int | None:
    """The first epoch past MIN_REFERENCE_EPOCH with REFERENCE_AGREEMENT of the labels agreed with and the
    agreement gaining under PLATEAU_GAIN a epoch over the next PLATEAU_EPOCHS; None when there is none."""
    epochs = np.arange(MIN_REFERENCE_EPOCH, len(agreement) - PLATEAU_EPOCHS)
    gain = (agreement[epochs + PLATEAU_EPOCHS] - agreement[epochs]) / PLATEAU_EPOCHS
    found = epochs[(agreement[epochs] >= REFERENCE_AGREEMENT) & (gain < PLATEAU_GAIN)]
    return int(found[0]) if len(found) else None


BLOCK_ROWS = 65_536   # rows read at a time by the passes over a whole run: 65,536 x 200 epochs, a few MB of bools


def row_blocks(count: int) -> list[slice]:
    """Slices of BLOCK_ROWS rows covering ``count`` rows: a pass over the run in bounded extra memory."""
    return [slice(start, min(start + BLOCK_ROWS, count)) for start in range(0, count, BLOCK_ROWS)]


def label_agreement(dyn: Dynamics) -> np.ndarray:
    """float64 [E]: per epoch, the share of samples predicted as their given label. Computed once per run
    (``summary.scoring_view``) and passed to the onset and to the gate's weighted AUM."""
    given = np.asarray(dyn.assigned)[:, None]
    agreeing = np.zeros(dyn.num_epochs)
    for rows in row_blocks(dyn.num_samples):
        agreeing += np.count_nonzero(dyn.pred[rows] == given[rows], axis=0)
    return agreeing / max(dyn.num_samples, 1)


def memorisation_onset(dyn: Dynamics, agreement: np.ndarray | None = None) -> int | None:
    """The first epoch (0-based) from which on ``ONSET_LEVEL`` of the samples the network disagreed with at
    the reference epoch agree with their labels, or None when the run never gets there (or is too short).
    ``agreement``: the run's ``label_agreement`` when the caller holds it."""
    reference = _reference_epoch(label_agreement(dyn) if agreement is None else agreement)
    if reference is None:
        return None
    given = np.asarray(dyn.assigned)
    disagreed = dyn.pred[:, reference] != given
    if not disagreed.any():
        return None
    agreeing = (dyn.pred[disagreed, reference + 1:] == given[disagreed, None]).mean(axis=0)
    # from then on for good, and for PLATEAU_EPOCHS epochs at least: a run whose predictions only flicker
    # across the level, or cross it in its very last epoch (a schedule's final decay), is not memorising
    held = np.minimum.accumulate(agreeing[::-1])[::-1] >= ONSET_LEVEL
    reached = np.flatnonzero(held[:len(held) - PLATEAU_EPOCHS + 1])
    return None if not len(reached) else max(MIN_SCORED_EPOCHS, reference + 1 + int(reached[0]))


def before_memorisation(dyn: Dynamics, agreement: np.ndarray | None = None) -> tuple[Dynamics, int | None]:
    """``dyn`` limited to the epochs before its memorisation onset (``dyn`` itself when none), and the onset;
    ``agreement`` as for ``memorisation_onset``."""
    onset = memorisation_onset(dyn, agreement)
    if onset is None or onset >= dyn.num_epochs:
        return dyn, None
    return first_epochs(dyn, onset), onset
