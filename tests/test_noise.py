import numpy as np
import pytest

from mislabel.noise import corrupt_labels
from util import UserError

LABELS = np.repeat(np.arange(10), 1000)


@pytest.mark.parametrize("noise_type", ["uniform", "flip"])
@pytest.mark.parametrize("ratio", [0.2, 0.4])
def test_flip_rate_matches_ratio(noise_type, ratio):
    assigned = corrupt_labels(LABELS, 10, ratio, noise_type, seed=1, dataset="digits")
    rate = np.mean(assigned != LABELS)
    assert abs(rate - ratio) < 0.02


def test_uniform_spreads_over_other_classes_and_flip_moves_to_next():
    uniform = corrupt_labels(LABELS, 10, 0.4, "uniform", seed=3, dataset="x")
    changed = uniform != LABELS
    offsets = (uniform[changed] - LABELS[changed]) % 10
    counts = np.bincount(offsets, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 0.7 * counts[1:].mean()
    flip = corrupt_labels(LABELS, 10, 0.4, "asym", seed=3, dataset="x")
    moved = flip != LABELS
    assert np.all(flip[moved] == (LABELS[moved] + 1) % 10)


def test_deterministic_and_keyed_on_seed_dataset_ratio_type():
    a = corrupt_labels(LABELS, 10, 0.2, "uniform", seed=1, dataset="digits")
    assert np.array_equal(a, corrupt_labels(LABELS, 10, 0.2, "sym", seed=1, dataset="digits"))
    assert not np.array_equal(a, corrupt_labels(LABELS, 10, 0.2, "uniform", seed=2, dataset="digits"))
    assert not np.array_equal(a, corrupt_labels(LABELS, 10, 0.2, "uniform", seed=1, dataset="cifar10"))
    np.random.seed(123)  # the global generator plays no part
    assert np.array_equal(a, corrupt_labels(LABELS, 10, 0.2, "uniform", seed=1, dataset="digits"))


def test_zero_noise_and_bad_arguments():
    assert np.array_equal(corrupt_labels(LABELS, 10, 0.0, "uniform", 0, "d"), LABELS)
    with pytest.raises(UserError, match="outside"):
        corrupt_labels(LABELS, 10, 1.0, "uniform", 0, "d")
    with pytest.raises(UserError, match="noise_type"):
        corrupt_labels(LABELS, 10, 0.2, "gaussian", 0, "d")
