"""The learned hand-crafted control and the class-context detector features, on synthetic dynamics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mislabel.scoring.baselines import confidence_tracking, confidence_tracking_early
from mislabel.scoring.control import (CONTROL_SCORES, control_inputs, control_scores, fit_control, load_control,
                                      save_control)
from mislabel.scoring.features import build_features, class_transitions
from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError


def structured_run(seed: int, num_samples: int = 2000, epochs: int = 12, classes: int = 5) -> Dynamics:
    """Pair-flip noise (c -> c+1) on 30% of the samples: a flipped sample is predicted as its true class
    for most epochs, and its assigned-label probability stays low until it is memorised."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, num_samples)
    flipped = rng.random(num_samples) < 0.3
    assigned = np.where(flipped, (true + 1) % classes, true)
    progress = np.linspace(0, 1, epochs)[None, :]
    onset = np.where(flipped, rng.uniform(0.6, 0.95, num_samples), rng.uniform(0.0, 0.4, num_samples))[:, None]
    prob = (1 / (1 + np.exp(-12 * (progress - onset))) * 0.95 + rng.uniform(0, 0.04, (num_samples, epochs)))
    rival = np.where(flipped, true, (assigned + rng.integers(1, classes, num_samples)) % classes)  # clean: any class
    pred = np.where(prob > 0.5, assigned[:, None], rival[:, None])
    other = 1 - prob
    labels = np.stack([assigned, rival], axis=1)
    return Dynamics(td=np.stack([prob, other], axis=2).astype(np.float16), labels=labels,
                    margin=(6 * (prob - other)).astype(np.float16), pred=pred.astype(np.int16),
                    indices=np.arange(num_samples), flipped=flipped, true_labels=true)


def dense_transitions(dyn: Dynamics) -> np.ndarray:
    """The reference: float32 [E, K, K], at each epoch the share of class c's samples predicted as j."""
    classes = int(max(dyn.assigned.max(), dyn.pred.max())) + 1
    per_class = np.maximum(np.bincount(dyn.assigned, minlength=classes), 1).astype(np.float32)
    out = np.empty((dyn.num_epochs, classes, classes), np.float32)
    for epoch in range(dyn.num_epochs):
        pairs = dyn.assigned.astype(np.int64) * classes + dyn.pred[:, epoch]
        out[epoch] = np.bincount(pairs, minlength=classes**2).reshape(classes, classes) / per_class[:, None]
    return out


@pytest.mark.parametrize("classes", [2, 5, 40, 300])  # bincount and sort paths
def test_sparse_class_transitions_equal_the_dense_matrix(classes: int) -> None:
    rng = np.random.default_rng(classes)
    num_samples, epochs = 600, 7
    assigned = rng.integers(0, classes, num_samples)
    pred = np.where(rng.random((num_samples, epochs)) < 0.5, assigned[:, None],
                    rng.integers(0, classes + 3, (num_samples, epochs))).astype(np.int16)  # some unseen classes
    dyn = Dynamics(td=rng.random((num_samples, epochs, 1)).astype(np.float16), labels=assigned[:, None],
                   margin=np.zeros((num_samples, epochs), np.float16), pred=pred, indices=np.arange(num_samples))
    dense = dense_transitions(dyn)
    off, own = class_transitions(dyn)
    epoch = np.arange(epochs)[None, :]
    right = pred == assigned[:, None]
    np.testing.assert_array_equal(off, np.where(right, np.float32(0), dense[epoch, assigned[:, None], pred]))
    np.testing.assert_array_equal(own, np.diagonal(dense, axis1=1, axis2=2)[:, :own.shape[1]])
    confusion, class_error = np.moveaxis(build_features(dyn, ["confusion", "class_error"]), 2, 0)
    np.testing.assert_array_equal(confusion, off)
    np.testing.assert_array_equal(class_error, (1.0 - dense[epoch, assigned[:, None], assigned[:, None]]))


def test_class_transitions_rows_sum_to_one_and_confusion_marks_shared_flips() -> None:
    dyn = structured_run(0)
    rates = dense_transitions(dyn)
    assert rates.shape == (dyn.num_epochs, 5, 5)
    np.testing.assert_allclose(rates.sum(axis=2), 1.0, atol=1e-5)
    confusion, class_error = np.moveaxis(build_features(dyn, ["confusion", "class_error"]), 2, 0)
    # A flip is predicted as its true class, which many wrong predictions of its label class share;
    # a clean sample's early mistakes scatter over the other classes.
    assert confusion[dyn.flipped].mean() > 2 * confusion[~dyn.flipped].mean()
    assert np.all(confusion[dyn.pred == dyn.assigned[:, None]] == 0)
    np.testing.assert_allclose(class_error[:, 0], 1 - rates[0][dyn.assigned, dyn.assigned], atol=1e-6)


def test_rank_features_resampled_before_ranking_stay_percentiles() -> None:
    dyn = structured_run(1, epochs=50)
    ranks = build_features(dyn, ["prob_rank", "margin_rank"], seq_len=16)
    assert ranks.shape == (dyn.num_samples, 16, 2) and ranks.min() == 0.0 and ranks.max() == 1.0


def test_control_learns_from_source_runs_and_round_trips_without_pickle(tmp_path) -> None:
    control = fit_control([structured_run(2), structured_run(3)], names=["a", "b"])
    assert control["scores"] == list(CONTROL_SCORES) and control["num_samples"] == 4000
    path = tmp_path / "control.pth.tar"
    save_control(path, control)
    loaded = load_control(path)            # weights_only=True inside
    held_out = structured_run(4)
    scores = control_scores(loaded, held_out)
    assert scores.shape == (held_out.num_samples,) and np.all((scores > 0) & (scores < 1))
    assert roc_auc_score(held_out.flipped, scores) > 0.95
    inputs = control_inputs(held_out)
    assert inputs.shape == (held_out.num_samples, len(CONTROL_SCORES)) and inputs.min() >= 0 and inputs.max() <= 1


def test_control_refuses_runs_without_flips_and_files_that_are_not_controls(tmp_path) -> None:
    unlabelled = structured_run(5)
    unlabelled.flipped = None
    with pytest.raises(UserError, match="known flips"):
        fit_control([unlabelled])
    torch.save({"format": "something else"}, tmp_path / "other.pth.tar")
    with pytest.raises(UserError, match="not a learned control"):
        load_control(tmp_path / "other.pth.tar")
    with pytest.raises(UserError, match="does not exist"):
        load_control(tmp_path / "absent.pth.tar")


def test_confidence_tracking_early_reads_only_the_first_quarter() -> None:
    dyn = structured_run(6, epochs=40)
    cut = Dynamics(td=dyn.td[:, :10], labels=dyn.labels, margin=dyn.margin[:, :10], pred=dyn.pred[:, :10],
                   indices=dyn.indices)
    np.testing.assert_array_equal(confidence_tracking_early(dyn), confidence_tracking(cut))


def test_percentile_equals_the_mean_sorted_position_of_ties() -> None:
    """The control's inputs once came from two binary searches per sample; ``percentile`` must match them."""
    from mislabel.scoring.features import percentile

    values = np.round(np.random.default_rng(0).normal(size=5000), 2)  # many ties
    ordered = np.sort(values)
    below, upto = np.searchsorted(ordered, values, "left"), np.searchsorted(ordered, values, "right")
    np.testing.assert_array_equal(percentile(values), (below + upto - 1) * (0.5 / (len(values) - 1)))
