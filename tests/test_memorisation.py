"""The memorisation onset: found where a run learns its wrong labels late, not where it never does, not in
the first epochs; every score then reads the epochs before it."""
from __future__ import annotations

import numpy as np

from mislabel.core.dynamics import Dynamics
from mislabel.scoring.memorisation import MIN_REFERENCE_EPOCH, before_memorisation, memorisation_onset
from mislabel.scoring.summary import scoring_view

SAMPLES, CLASSES = 400, 4


def run(epochs: int, learned_at: int | None, hard_learned_at: int = 3) -> Dynamics:
    """A run whose clean samples agree from epoch 1, a tenth of them (hard) from ``hard_learned_at``, and
    whose wrong labels (every fifth sample) from ``learned_at`` on (None: never)."""
    rng = np.random.default_rng(0)
    given = rng.integers(0, CLASSES, SAMPLES)
    wrong = np.arange(SAMPLES) % 5 == 0
    hard = ~wrong & (np.arange(SAMPLES) % 10 == 1)
    other = (given + 1) % CLASSES
    epoch = np.arange(epochs)[None, :]
    agrees = np.where(wrong[:, None], epoch >= (learned_at if learned_at is not None else epochs + 1),
                      np.where(hard[:, None], epoch >= hard_learned_at, epoch >= 1))
    pred = np.where(agrees, given[:, None], other[:, None]).astype(np.int16)
    prob = np.where(agrees, 0.9, 0.2).astype(np.float16)
    td = np.stack([prob, 1 - prob], axis=2).astype(np.float16)
    return Dynamics(td=td, labels=np.stack([given, other], axis=1), margin=np.where(agrees, 2.0, -2.0).astype(
        np.float16), pred=pred, indices=np.arange(SAMPLES), flipped=wrong, num_classes=CLASSES)


def test_a_run_that_learns_its_wrong_labels_late_is_cut_before_it_does():
    dyn = run(epochs=30, learned_at=12)
    onset = memorisation_onset(dyn)
    assert onset == 12
    scored, found = before_memorisation(dyn)
    assert found == 12 and scored.num_epochs == 12 and np.shares_memory(scored.td, dyn.td)
    view, summary = scoring_view(dyn)
    assert view.num_epochs == 12 and summary.onset == 12


def test_a_run_that_never_learns_them_or_is_too_short_is_scored_whole():
    assert memorisation_onset(run(epochs=30, learned_at=None)) is None
    whole = run(epochs=30, learned_at=None)
    assert before_memorisation(whole)[0] is whole and scoring_view(whole)[1].onset is None
    # a short fine-tune learns everything within its first epochs: no reference epoch to judge from
    short = run(epochs=4 * MIN_REFERENCE_EPOCH, learned_at=2)
    assert memorisation_onset(short) is None


def test_hard_clean_samples_learned_later_are_not_memorisation():
    # at the reference epoch the network disagrees with the wrong labels and the hard clean ones; winning
    # the hard ones (a third of them) is learning, not memorising
    assert memorisation_onset(run(epochs=30, learned_at=None, hard_learned_at=15)) is None


def test_the_gate_trusts_aum_alone_on_a_run_that_memorised():
    from mislabel.scoring.features import percentile
    from mislabel.scoring.gate import gated_scores

    gate = {"base": "weighted_aum", "centre": 0.0, "steepness": 40.0}   # would give the LSTM all the weight on any run
    lstm = np.random.default_rng(1).random(SAMPLES)
    _, memorised = scoring_view(run(epochs=30, learned_at=12))
    _, whole = scoring_view(run(epochs=30, learned_at=None))
    order = np.argsort(-gated_scores(gate, lstm, memorised, count=50), kind="stable")
    assert np.array_equal(order, np.argsort(-percentile(memorised.aum), kind="stable"))
    assert np.array_equal(np.argsort(-gated_scores(gate, lstm, whole, count=50), kind="stable"),
                          np.argsort(-percentile(lstm), kind="stable"))


def test_a_slow_learner_is_not_memorising():
    # still learning clean labels for most of the run, and never its wrong ones: no onset, although more
    # than half the samples it disagreed with early on agree by the end
    slow = run(epochs=30, learned_at=None, hard_learned_at=3)
    agrees = slow.pred == slow.labels[:, :1]
    still_learning = (np.arange(len(agrees)) % 5 != 0)[:, None] & (np.arange(30)[None, :] < 3 + np.arange(
        len(agrees))[:, None] % 20)
    slow.pred[still_learning] = ((slow.labels[:, 0:1] + 1) % CLASSES).repeat(30, axis=1)[still_learning]
    agreement = (slow.pred == slow.labels[:, :1]).mean(axis=0)
    assert agreement[7] < 0.6 and agreement[-1] > 0.75 and not agrees[:, -1][np.arange(SAMPLES) % 5 == 0].any()
    assert memorisation_onset(slow) is None


def test_agreement_reached_only_in_the_last_epoch_is_not_an_onset():
    assert memorisation_onset(run(epochs=30, learned_at=29)) is None
    assert memorisation_onset(run(epochs=30, learned_at=28)) == 28
