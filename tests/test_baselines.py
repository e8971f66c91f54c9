"""Baseline scores on hand-made dynamics whose answer is known by construction."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mislabel.scoring import baselines
from mislabel.scoring.baselines import (
    BASELINES,
    aum,
    cleanlab,
    confidence,
    confidence_tracking,
    correctness,
    forgetting,
    last_prob,
    loss,
    variability,
)
from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError


def dynamics_from_logits(logits: np.ndarray, assigned: np.ndarray, keep: int | None = None,
                         flipped: np.ndarray | None = None) -> Dynamics:
    """Record logits ``[N, E, K]`` the way the training recorder does: channel 0 = assigned label,
    then the other classes by mean probability, the first ``keep`` channels stored."""
    num_samples, num_epochs, num_classes = logits.shape
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=-1).numpy()
    mean = probs.mean(axis=1)
    mean[np.arange(num_samples), assigned] = np.inf  # assigned label always first
    order = np.argsort(-mean, axis=1, kind="stable")[:, : keep or num_classes]
    td = np.take_along_axis(probs, order[:, None, :], axis=2)
    assigned_logit = np.take_along_axis(logits, assigned[:, None, None], axis=2)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, assigned[:, None, None], -np.inf, axis=2)
    return Dynamics(
        td=td.astype(np.float16),
        labels=order.astype(np.int64),
        margin=(assigned_logit - others.max(axis=2)).astype(np.float16),
        pred=logits.argmax(axis=2).astype(np.int16),
        indices=np.arange(num_samples),
        flipped=flipped,
    )


def dynamics_from_assigned_prob(prob: list[list[float]], correct: list[list[bool]] | None = None) -> Dynamics:
    """Two-class dynamics from the assigned probability alone (the other channel is 1 - p)."""
    p = np.asarray(prob, dtype=np.float64)
    num_samples, num_epochs = p.shape
    hit = p > 0.5 if correct is None else np.asarray(correct)
    return Dynamics(
        td=np.stack([p, 1 - p], axis=2).astype(np.float16),
        labels=np.tile([0, 1], (num_samples, 1)).astype(np.int64),
        margin=np.log(np.clip(p, 1e-6, None) / np.clip(1 - p, 1e-6, None)).astype(np.float16),
        pred=np.where(hit, 0, 1).astype(np.int16),
        indices=np.arange(num_samples),
    )


# ----------------------------------------------------------------------------------------------
# Single-channel scores
# ----------------------------------------------------------------------------------------------


def test_aum_is_minus_mean_margin() -> None:
    dyn = dynamics_from_assigned_prob([[0.5, 0.5]])
    dyn.margin = np.array([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]], dtype=np.float16)
    np.testing.assert_allclose(aum(dyn), [-2.0, 2.0])


def test_aum_matches_the_aum_package(tmp_path) -> None:
    from aum import AUMCalculator

    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(64, 7, 5))
    assigned = rng.integers(0, 5, size=64)
    calculator = AUMCalculator(str(tmp_path))
    for epoch in range(logits.shape[1]):
        records = calculator.update(torch.as_tensor(logits[:, epoch]), torch.as_tensor(assigned), list(range(64)))
    reference = np.array([records[i].aum for i in range(64)])
    # Margins are stored in float16, so agreement is to float16 precision.
    np.testing.assert_allclose(-aum(dynamics_from_logits(logits, assigned)), reference, rtol=2e-3, atol=2e-3)


def test_datamap_scores_rank_falling_above_rising() -> None:
    rising, falling = [0.2, 0.5, 0.8, 0.9], [0.6, 0.4, 0.2, 0.1]
    dyn = dynamics_from_assigned_prob([rising, falling])
    assert confidence(dyn)[1] > confidence(dyn)[0]
    assert correctness(dyn)[1] > correctness(dyn)[0]
    np.testing.assert_allclose(confidence(dyn), [-0.6, -0.325], atol=1e-3)
    np.testing.assert_allclose(correctness(dyn), [-0.5, -0.25])  # p > 0.5 counts as correct


def test_variability_is_population_std_and_higher_for_ambiguous() -> None:
    dyn = dynamics_from_assigned_prob([[0.9, 0.9, 0.9, 0.9], [0.2, 0.8, 0.2, 0.8]])
    np.testing.assert_allclose(variability(dyn), [0.0, 0.3], atol=1e-3)


def test_forgetting_counts_events_and_ranks_never_learned_first() -> None:
    correct = [
        [False, True, True, True, True, True],  # learned once, never forgotten
        [True, False, True, False, True, True],  # forgotten twice
        [True, False, True, False, True, False],  # forgotten three times, the most E=6 allows
        [False, False, False, False, False, False],  # never learned
    ]
    dyn = dynamics_from_assigned_prob([[0.5] * 6] * 4, correct=correct)
    np.testing.assert_array_equal(forgetting(dyn), [0, 2, 3, 6])
    assert forgetting(dyn).dtype == np.float64


def test_loss_is_mean_cross_entropy_and_finite_at_zero_prob() -> None:
    dyn = dynamics_from_assigned_prob([[0.5, 0.5], [0.25, 1.0], [0.0, 0.0]])
    scores = loss(dyn)
    np.testing.assert_allclose(scores[:2], [np.log(2), np.log(4) / 2], rtol=1e-3)
    assert np.isfinite(scores[2]) and scores[2] > scores[1]


def test_last_prob_reads_the_last_epoch() -> None:
    dyn = dynamics_from_assigned_prob([[0.1, 0.9], [0.9, 0.1]])
    np.testing.assert_allclose(last_prob(dyn), [-0.9, -0.1], atol=1e-3)


# ----------------------------------------------------------------------------------------------
# Confidence tracking
# ----------------------------------------------------------------------------------------------


def brute_force_mann_kendall_z(series: np.ndarray) -> float:
    n = len(series)
    s = sum(np.sign(series[j] - series[i]) for i, j in itertools.combinations(range(n), 2))
    var = n * (n - 1) * (2 * n + 5) / 18
    return float((s - np.sign(s)) / np.sqrt(var)) if var else 0.0


def test_confidence_tracking_matches_brute_force_mann_kendall() -> None:
    rng = np.random.default_rng(0)
    prob = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], size=(20, 9))  # few values, so ties happen
    dyn = dynamics_from_assigned_prob(prob)
    gap = dyn.td[:, :, 0].astype(np.float64) - dyn.td[:, :, 1]
    expected = [-brute_force_mann_kendall_z(row) for row in gap]
    np.testing.assert_allclose(confidence_tracking(dyn), expected)


def test_confidence_tracking_clean_rises_noisy_does_not() -> None:
    epochs = np.arange(10)
    clean = np.zeros((10, 3))
    clean[:, 0] = epochs  # assigned class pulls ahead of both others
    noisy = np.zeros((10, 3))
    noisy[:, 0] = 0.5 * epochs  # assigned grows, but the true class (2) grows faster
    noisy[:, 2] = epochs
    dyn = dynamics_from_logits(np.stack([clean, noisy]), np.array([0, 0]))
    scores = confidence_tracking(dyn)
    var = 10 * 9 * 25 / 18
    np.testing.assert_allclose(scores[0], -(45 - 1) / np.sqrt(var))  # strictly rising: S = n(n-1)/2
    assert scores[1] > 0 > scores[0]


def test_confidence_tracking_chunks_and_top_k_channels(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    logits = np.cumsum(rng.normal(size=(50, 12, 10)), axis=1)
    assigned = rng.integers(0, 10, size=50)
    top3 = dynamics_from_logits(logits, assigned, keep=3)
    whole = confidence_tracking(top3)
    monkeypatch.setattr(baselines, "_CHUNK_BYTES", 1)  # one sample per chunk
    np.testing.assert_array_equal(confidence_tracking(top3), whole)
    assert whole.shape == (50,) and whole.dtype == np.float64


def test_confidence_tracking_edge_cases() -> None:
    one_epoch = dynamics_from_assigned_prob([[0.3], [0.8]])
    np.testing.assert_array_equal(confidence_tracking(one_epoch), [0.0, 0.0])
    flat = dynamics_from_assigned_prob([[0.4, 0.4, 0.4]])
    np.testing.assert_array_equal(confidence_tracking(flat), [0.0])
    only_assigned = dynamics_from_assigned_prob([[0.4, 0.6]])
    only_assigned.td = only_assigned.td[:, :, :1]
    with pytest.raises(UserError, match="at least one class"):
        confidence_tracking(only_assigned)


# ----------------------------------------------------------------------------------------------
# Orientation on a synthetic noisy set, and the registry
# ----------------------------------------------------------------------------------------------


def synthetic_run(memorised: float) -> Dynamics:
    """Clean samples are learned over the first 4 of 20 epochs; flipped samples lean to their
    true class and from epoch 8 the network pushes their assigned logit up by ``memorised``.
    Below 3 (the true class's lead) a flip keeps a lower assigned probability to the end."""
    rng = np.random.default_rng(7)
    num_samples, num_epochs, num_classes = 400, 20, 4
    true = rng.integers(0, num_classes, size=num_samples)
    flipped = rng.random(num_samples) < 0.2
    assigned = np.where(flipped, (true + rng.integers(1, num_classes, size=num_samples)) % num_classes, true)
    t = np.arange(num_epochs)
    logits = rng.normal(scale=0.7, size=(num_samples, num_epochs, num_classes))
    rows = np.arange(num_samples)
    logits[rows, :, true] += 3.0 * np.minimum(1.0, t / 4)
    logits[rows[flipped], :, assigned[flipped]] += memorised * np.clip((t - 8) / 10, 0.0, 1.0)
    return dynamics_from_logits(logits, assigned, flipped=flipped)


def test_baselines_rank_flips_with_lower_assigned_prob_higher() -> None:
    dyn = synthetic_run(memorised=2.0)
    for name, score in BASELINES.items():
        values = score(dyn)
        assert values.shape == (dyn.num_samples,) and values.dtype == np.float64, name
        assert np.isfinite(values).all(), name
        if name != "variability":  # never-learned flips are stable, see the next test
            assert roc_auc_score(dyn.flipped, values) > 0.75, name


def test_variability_ranks_flips_memorised_late_higher() -> None:
    # The ambiguous region of the data map: the assigned probability swings from low to high.
    dyn = synthetic_run(memorised=6.0)
    assert roc_auc_score(dyn.flipped, variability(dyn)) > 0.9


def test_registry_lists_every_dynamics_score_in_display_order() -> None:
    assert list(BASELINES) == [
        "aum",
        "confidence",
        "variability",
        "correctness",
        "forgetting",
        "loss",
        "last_prob",
        "confidence_tracking",
        "confidence_tracking_early",
    ]
    assert "cleanlab" not in BASELINES


# ----------------------------------------------------------------------------------------------
# Confident learning
# ----------------------------------------------------------------------------------------------


def test_cleanlab_ranks_obvious_issues_first() -> None:
    rng = np.random.default_rng(0)
    num_samples, num_classes = 300, 3
    true = np.arange(num_samples) % num_classes
    pred_probs = np.full((num_samples, num_classes), 0.05)
    pred_probs[np.arange(num_samples), true] = 0.9
    pred_probs += rng.uniform(0, 0.02, size=pred_probs.shape)
    pred_probs /= pred_probs.sum(axis=1, keepdims=True)
    flipped = np.zeros(num_samples, dtype=bool)
    flipped[rng.choice(num_samples, size=15, replace=False)] = True
    assigned = np.where(flipped, (true + 1) % num_classes, true)
    scores = cleanlab(pred_probs, assigned)
    assert scores.shape == (num_samples,) and scores.dtype == np.float64
    top = np.argsort(-scores, kind="stable")[:15]
    assert flipped[top].all()
    assert scores[flipped].min() >= 1 > 0 >= scores[~flipped].max()


def test_cleanlab_rejects_mismatched_inputs() -> None:
    with pytest.raises(UserError):
        cleanlab(np.full((4, 2), 0.5), np.array([0, 1, 0]))
    with pytest.raises(UserError):
        cleanlab(np.full((3, 2), 0.5), np.array([0, 1, 2]))
