"""The epochs before a run memorised its wrong labels: what every score and the count read.

Networks fit clean labels before wrong ones (Arpit et al., ICML 2017, "A closer look at memorization in
deep networks"); a run that trains long enough, without augmentation or with a head on fixed features,
ends up agreeing with nearly every label, wrong ones included. Averaged over the whole run, the evidence
then drowns: AUM's margins, the LSTM's inputs and the confident-joint count all read the late epochs in
which a wrong label looks like any other (bench/regimes.py: a linear head on frozen features, 30 epochs,
AUM 0.90 and a count of 0-31 against 247-425 wrong labels; the same scores on the epochs before the
onset: AUM 0.93-0.96, counts of 100-230).

The run shows when it happens. Take the samples the network disagrees with a quarter of the way through
(``ONSET_REFERENCE``), once it agrees with most labels: wrong labels and hard clean samples. A run that
learns (without memorising) wins some of the hard clean ones later; one that memorises wins nearly all
of them, wrong labels included. The *onset* is the first later epoch from which on at least
``ONSET_LEVEL`` of them agree with their labels; the scored epochs are those before it. A run that
never gets there is scored whole, exactly as before. Numpy only, O(N x E) comparisons.
"""
from __future__ import annotations

import numpy as np

from mislabel.core.dynamics import Dynamics, first_epochs

__all__ = ["MIN_REFERENCE_EPOCH", "MIN_SCORED_EPOCHS", "ONSET_LEVEL", "ONSET_REFERENCE", "REFERENCE_AGREEMENT",
           "before_memorisation", "memorisation_onset"]

# A quarter of the run: past the first epochs, in which a network still disagrees with most clean
# labels, and before a typical schedule's first decay, where a from-scratch run wins its hard samples.
ONSET_REFERENCE = 0.25
# Half of the samples it then disagreed with: from-scratch runs of the regimes grid end at 0.19-0.51
# (most below 0.45), the memorising ones at 0.79-0.99 (bench/regimes.py).
ONSET_LEVEL = 0.5
MIN_SCORED_EPOCHS = 2   # the LSTM and the trend scores need a sequence; a single epoch is not one
# The reference comes after the first epochs, or it is not one: there a network (above all a pretrained
# one being fine-tuned) still disagrees with clean labels it learns a moment later, which looks like
# memorising. On the regimes grid, 5-epoch fine-tunes cut at their second epoch lost 0.03-0.05 AUC.
MIN_REFERENCE_EPOCH = 2
# ... and the network must agree with most labels by then, so that the samples it disagrees with are the
# few wrong and hard ones. A slow learner (find_issues' LeNet on the test suite's 480 digits agrees with
# 27% of its labels a quarter of the way in and 75% at the end) wins clean samples for the whole run,
# which is learning, not memorising: cut at "its onset" its count went from 37 to 230 of 480.
REFERENCE_AGREEMENT = 0.5


def memorisation_onset(dyn: Dynamics) -> int | None:
    """The first epoch (0-based) from which on ``ONSET_LEVEL`` of the samples the network disagreed with at
    the reference epoch agree with their labels, or None when the run never gets there (or is too short)."""
    epochs = dyn.num_epochs
    reference = int(round(ONSET_REFERENCE * epochs)) - 1
    if reference < MIN_REFERENCE_EPOCH or epochs - reference < 2:
        return None
    given = np.asarray(dyn.assigned)[:, None]
    disagreed = dyn.pred[:, reference] != given[:, 0]
    if not disagreed.any() or disagreed.mean() > 1 - REFERENCE_AGREEMENT:
        return None
    agreeing = (dyn.pred[disagreed, reference + 1:] == given[disagreed]).mean(axis=0)
    # from then on for good: a run whose predictions only flicker across the level is not memorising
    reached = np.flatnonzero(np.minimum.accumulate(agreeing[::-1])[::-1] >= ONSET_LEVEL)
    return None if not len(reached) else max(MIN_SCORED_EPOCHS, reference + 1 + int(reached[0]))


def before_memorisation(dyn: Dynamics) -> tuple[Dynamics, int | None]:
    """``dyn`` limited to the epochs before its memorisation onset (``dyn`` itself when none), and the onset."""
    onset = memorisation_onset(dyn)
    if onset is None or onset >= dyn.num_epochs:
        return dyn, None
    return first_epochs(dyn, onset), onset
