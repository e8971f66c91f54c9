"""What retraining does with the suspects: remove them, relabel them, both, or down-weight them.

A ranking and a count say *which* labels look wrong; the action says what the next training makes of
them. The four are the ones the seed and its peers use:

* ``remove``: train without the suspects (the seed's phase 3; AUM's and cleanlab's pruning).
* ``relabel``: train on them with the label the network believed most besides the given one over
  training (``SampleSummary.suggested``; the seed's data debugging relabels WebVision with the model's
  predictions, which for a memorised wrong label is the given one, so the belief over training is used).
* ``hybrid``: relabel a suspect where the network preferred its suggestion to the given label on
  average over training (a scale-free test: no threshold to tune), remove the others.
* ``downweight``: keep every suspect with its label, its loss scaled by the mean probability the
  network gave that label over training (low for a wrong label, so it counts little).

BENCHMARKS.md (bench/cleaning.py) measures each against the noisy and the oracle retraining (``oracle_labels``:
without exactly the flipped labels, the most any removal can give); ``RECOMMENDED_ACTION`` is the one it supports,
``DEFAULT_ACTION`` denoise's (the seed's). Numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mislabel.core.user_input import UserError
from mislabel.scoring.summary import SampleSummary

__all__ = ["ACTIONS", "DEFAULT_ACTION", "RECOMMENDED_ACTION", "RECOMMENDED_BECAUSE", "CleanedLabels", "check_action",
           "clean_labels", "oracle_labels"]

ACTIONS = ("remove", "relabel", "hybrid", "downweight")
DEFAULT_ACTION = "remove"   # denoise's: the seed's phase 3, which its folder names (remove{ratio}) follow
# What find_issues' report recommends: the action with the best worst cell on the benchmark grid
# (bench/cleaning.py; BENCHMARKS.md, "Does acting on the suspects pay off?"), and what that table
# measured for it, as the report states it: a new measurement that changes one changes both.
RECOMMENDED_ACTION = "downweight"
RECOMMENDED_BECAUSE = "recovered most of the accuracy the wrong labels cost and never lost accuracy"


@dataclass(frozen=True)
class CleanedLabels:
    """What the retraining sees, per row of the run's dynamics."""

    action: str
    given: np.ndarray             # int64 [N]: the labels as they came
    keep: np.ndarray              # bool [N]: rows trained on
    labels: np.ndarray            # int64 [N]: the label each row is trained with
    weights: np.ndarray | None    # float32 [N]: loss weights (1 outside the suspects), None = all 1

    def describe(self) -> dict[str, int | str]:
        """Counts for summaries: how many rows were removed, relabelled and down-weighted."""
        return {"action": self.action, "num_removed": int((~self.keep).sum()),
                "num_relabelled": int((self.keep & (self.labels != self.given)).sum()),
                "num_downweighted": 0 if self.weights is None else int((self.weights < 1.0).sum())}


def check_action(action: str) -> str:
    """``action`` if it is one of ``ACTIONS``, else refused naming the flag."""
    if action not in ACTIONS:
        raise UserError(f"action {action!r} is not one of {', '.join(ACTIONS)}; pass e.g. --action {DEFAULT_ACTION}")
    return action


def clean_labels(summary: SampleSummary, suspect_rows: np.ndarray, action: str) -> CleanedLabels:
    """Apply ``action`` to the rows ``suspect_rows`` of a run (positions, e.g. ``Suspects.rows``), from
    its per-sample ``summary`` (``mislabel.scoring.summary``): the given label's and the suggested
    class's mean probabilities over training."""
    check_action(action)
    rows = np.asarray(suspect_rows, dtype=np.int64)
    given = summary.given
    keep, labels, weights = np.ones(len(given), dtype=bool), given.copy(), None
    if action in ("relabel", "hybrid") and summary.num_channels < 2:
        raise UserError(f"action {action} needs the dynamics of other classes than the given one; regenerate the "
                        "run with generate_td (or --td_topk 2 or more), or pass --action remove")
    if action == "remove":
        keep[rows] = False
    elif action == "downweight":
        weights = np.ones(len(given), dtype=np.float32)
        weights[rows] = summary.given_probability[rows]
    else:
        preferred = summary.suggested_probability[rows] > summary.given_probability[rows]
        relabelled = rows if action == "relabel" else rows[preferred]
        labels[relabelled] = summary.suggested[relabelled]
        keep[np.setdiff1d(rows, relabelled)] = False
    return CleanedLabels(action=action, given=given, keep=keep, labels=labels, weights=weights)


def oracle_labels(summary: SampleSummary, flipped: np.ndarray | None) -> CleanedLabels:
    """The labels of the oracle retraining: every row with a flipped label removed, no other. It is the
    yardstick of the actions (what a perfect detector that removes would give), so it needs the run's
    true labels: synthetic noise only."""
    if flipped is None:
        raise UserError("the oracle needs the true labels, and this run has none (real-world noise); it exists "
                        "for runs with synthetic noise (generate_td with --noise_ratio)")
    return clean_labels(summary, np.flatnonzero(flipped), "remove")
