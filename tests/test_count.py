"""mislabel.scoring.count: the estimated number of wrong labels, on synthetic runs with known flips."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError
import mislabel.scoring.count as count_module
from mislabel.scoring.count import (DEFAULT_WINDOW, SOURCE_RUN_RATIOS, NoisyCount, class_probabilities,
                                    confident_joint, estimate_noisy_count, flag_first)
from mislabel.scoring.summary import summarize


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def synthetic_run(num_samples: int = 3000, num_classes: int = 5, epochs: int = 30, rate: float = 0.2,
                  keep: int | None = None, seed: int = 3) -> Dynamics:
    """Clean samples are learned over the first 5 epochs (some stay ambiguous between two classes);
    flipped samples lean to their true class until the network memorises their assigned label from
    epoch 24 on, past the default window. Stored as the recorder stores it: channel 0 = assigned
    label, then the other classes by mean probability, the first ``keep`` channels."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, num_classes, size=num_samples)
    flipped = rng.random(num_samples) < rate
    assigned = np.where(flipped, (true + rng.integers(1, num_classes, size=num_samples)) % num_classes, true)
    t = np.arange(epochs)
    rows = np.arange(num_samples)
    logits = rng.normal(scale=0.8, size=(num_samples, epochs, num_classes))
    logits[rows, :, true] += 3.0 * np.minimum(1.0, t / 5)
    logits[rows, :, (true + 1) % num_classes] += rng.uniform(0, 1.5, size=num_samples)[:, None] * np.minimum(1.0, t / 5)
    logits[rows[flipped], :, assigned[flipped]] += 6.0 * np.clip((t - 23) / 4, 0.0, 1.0)
    probs = softmax(logits)
    mean = probs.mean(axis=1)
    mean[rows, assigned] = np.inf
    order = np.argsort(-mean, axis=1, kind="stable")[:, : keep or num_classes]
    return Dynamics(td=np.take_along_axis(probs, order[:, None, :], axis=2).astype(np.float16),
                    labels=order.astype(np.int64), margin=np.zeros((num_samples, epochs), np.float16),
                    pred=logits.argmax(axis=2).astype(np.int16), indices=rows, flipped=flipped,
                    num_classes=num_classes)


@pytest.fixture(scope="module")
def run() -> Dynamics:
    return synthetic_run()


def test_estimate_lands_near_the_true_count_and_inside_its_interval(run) -> None:
    truth = int(run.flipped.sum())
    count = estimate_noisy_count(summarize(run))
    assert isinstance(count, NoisyCount)
    assert abs(count.estimate - truth) <= 0.1 * truth, (count, truth)
    assert count.low <= count.estimate <= count.high and count.high - count.low < 0.3 * truth
    # the likely range is the estimate scaled by the corpus' error percentiles, so it holds the truth here too
    assert count.likely == (round(count.estimate * SOURCE_RUN_RATIOS[0]), round(count.estimate * SOURCE_RUN_RATIOS[1]))
    assert count.likely[0] <= truth <= count.likely[1]
    assert count.describe().startswith(f"~{count.estimate:,} wrong labels (likely {count.likely[0]:,}-"
                                       f"{count.likely[1]:,}, the range that held the true count")
    assert f"90% bootstrap interval {count.low:,}-{count.high:,})" in count.describe()
    assert "epochs 1-22 of 30" in count.method


def test_memorised_epochs_hide_wrong_labels_so_the_window_stops_early(run) -> None:
    # The whole run includes the epochs where the flips are learned as labelled: far fewer are counted.
    whole = estimate_noisy_count(summarize(run, window=(0.0, 1.0))).estimate
    assert whole < 0.8 * estimate_noisy_count(summarize(run)).estimate
    assert DEFAULT_WINDOW[1] < 1.0


@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_estimate_follows_the_noise_rate(rate: float) -> None:
    dyn = synthetic_run(rate=rate, seed=11)
    truth = int(dyn.flipped.sum())
    assert abs(estimate_noisy_count(summarize(dyn)).estimate - truth) <= 0.15 * truth


def test_top_channels_only_leave_the_missing_classes_at_zero(run) -> None:
    top2 = synthetic_run(keep=2)
    probs = class_probabilities(summarize(top2))
    assert probs.shape == (top2.num_samples, 5) and np.all((probs > 0).sum(axis=1) <= 2)
    truth = int(top2.flipped.sum())
    assert abs(estimate_noisy_count(summarize(top2)).estimate - truth) <= 0.15 * truth


def test_held_out_probabilities_give_cleanlabs_calibrated_count(run) -> None:
    from cleanlab.count import num_label_issues

    probs = class_probabilities(summarize(run))
    probs /= probs.sum(axis=1, keepdims=True)
    count = estimate_noisy_count(summarize(run), pred_probs=probs)
    reference = num_label_issues(run.assigned, probs, estimation_method="off_diagonal_calibrated")
    assert abs(count.estimate - reference) <= max(2, 0.01 * reference)
    assert count.method == "confident-joint estimate on held-out probabilities"
    assert count.likely is None and "likely" not in count.describe()  # the corpus measured dynamics only


def test_same_inputs_and_seed_give_the_same_count(run) -> None:
    summary = summarize(run)
    assert estimate_noisy_count(summary, seed=5) == estimate_noisy_count(summary, seed=5)
    assert estimate_noisy_count(summary, seed=5).estimate == estimate_noisy_count(summary, seed=6).estimate
    narrow, wide = estimate_noisy_count(summary, level=0.5), estimate_noisy_count(summary, level=0.99)
    assert wide.low <= narrow.low <= narrow.high <= wide.high


@pytest.mark.parametrize("window", [(0.5, 0.5), (-0.1, 0.5), (0.0, 1.5), (0.0, 0.5, 1.0), "early"])
def test_a_bad_window_is_refused_naming_it(run, window) -> None:
    with pytest.raises(UserError, match="window") as raised:
        summarize(run, window=window)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(level=1.0), "level"), (dict(level=0.0), "level"),
    (dict(resamples=5), "resamples"), (dict(resamples=100.5), "resamples"), (dict(resamples=-10), "resamples"),
    (dict(pred_probs=np.full((10, 5), 0.2)), "pred_probs"),
    (dict(pred_probs=np.full((3000, 2), 0.5)), "pred_probs"),
    (dict(pred_probs=np.full((3000, 5), 0.3)), "pred_probs"),
    (dict(pred_probs=np.full((3000, 5), np.nan)), "pred_probs"),
])
def test_bad_input_is_refused_naming_the_parameter(run, kwargs: dict, needle: str) -> None:
    with pytest.raises(UserError, match=needle) as raised:
        estimate_noisy_count(summarize(run), **kwargs)
    assert isinstance(raised.value, ValueError)


def test_importing_the_module_loads_neither_torch_nor_cleanlab() -> None:
    code = ("import sys, mislabel.scoring.count; "
            "assert not {'torch', 'cleanlab'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flags_are_the_top_scores_ties_in_row_order() -> None:
    order = np.argsort(-np.array([0.2, 0.9, 0.5, 0.9, 0.1]), kind="stable")   # as every ranking sorts
    assert flag_first(order, 2).tolist() == [False, True, False, True, False]
    assert flag_first(order, 3).tolist() == [False, True, True, True, False]
    assert not flag_first(order, 0).any() and flag_first(order, 10).all()


def test_recorded_channels_count_as_the_dense_probabilities_would(run) -> None:
    """The count works on the recorded channels (nothing [N, K]); spread over every class it is the same."""
    top2 = synthetic_run(keep=2)
    dense = confident_joint(class_probabilities(summarize(top2)), top2.assigned)
    assert estimate_noisy_count(summarize(top2)).estimate == round(dense.sum() - np.trace(dense))


def test_no_resamples_gives_the_count_alone_and_chunks_draw_the_same_interval(run, monkeypatch) -> None:
    alone = estimate_noisy_count(summarize(run), resamples=0)
    assert alone.low == alone.estimate == alone.high == estimate_noisy_count(summarize(run)).estimate
    whole = estimate_noisy_count(summarize(run), resamples=50)
    monkeypatch.setattr(count_module, "BOOTSTRAP_CELLS", 7 * 5 * 3)   # 7 draws of the 5 x 3 outcomes at a time
    assert estimate_noisy_count(summarize(run), resamples=50) == whole


def test_many_classes_never_build_classes_squared() -> None:
    """20,000 classes: a K x K joint would be 3.2 GB; the count reads 3 outcomes per class instead."""
    rng = np.random.default_rng(0)
    count, classes = 3000, 20_000
    labels = np.stack([rng.integers(0, classes, count), rng.integers(0, classes, count)], axis=1)
    td = np.stack([rng.uniform(0.2, 0.9, (count, 6)), rng.uniform(0.0, 0.3, (count, 6))], axis=2).astype(np.float16)
    dyn = Dynamics(td=td, labels=labels, margin=np.zeros((count, 6), np.float16), pred=np.zeros((count, 6), np.int16),
                   indices=np.arange(count), num_classes=classes)
    estimate = estimate_noisy_count(summarize(dyn))
    assert 0 <= estimate.low <= estimate.estimate <= estimate.high <= count
