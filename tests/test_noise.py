import numpy as np
import pytest

from mislabel.data.noise import corrupt_labels
from mislabel.core.user_input import UserError

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


def _images(count: int, seed: int = 0) -> np.ndarray:
    """Images with class structure: each class a noisy copy of its own random template."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(10, 1, 8, 8))
    labels = np.arange(count) % 10
    return np.clip(templates[labels] + rng.normal(0, 40, size=(count, 1, 8, 8)), 0, 255).astype(np.uint8), labels


@pytest.mark.parametrize("ratio", [0.2, 0.4])
def test_idn_realised_rate_within_one_point_and_never_own_class(ratio):
    images, labels = _images(20_000)
    assigned = corrupt_labels(labels, 10, ratio, "idn", seed=1, dataset="x", images=images)
    assert abs(np.mean(assigned != labels) - ratio) <= 0.01
    assert assigned.min() >= 0 and assigned.max() < 10


def test_idn_depends_on_the_image_and_is_deterministic():
    images, labels = _images(5_000)
    a = corrupt_labels(labels, 10, 0.4, "idn", seed=1, dataset="x", images=images)
    assert np.array_equal(a, corrupt_labels(labels, 10, 0.4, "idn", seed=1, dataset="x", images=images))
    assert not np.array_equal(a, corrupt_labels(labels, 10, 0.4, "idn", seed=2, dataset="x", images=images))
    # Unlike uniform noise, the wrong class follows the image: within a class the moves concentrate.
    moved = a != labels
    pairs = np.bincount(labels[moved] * 10 + a[moved], minlength=100).reshape(10, 10)
    top_share = np.sort(pairs, axis=1)[:, -1] / np.maximum(pairs.sum(axis=1), 1)
    assert top_share.mean() > 0.2
    with pytest.raises(UserError, match="idn noise needs the images"):
        corrupt_labels(labels, 10, 0.4, "idn", seed=1, dataset="x")


@pytest.mark.parametrize("dataset,moves", [
    ("cifar10", {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}),
    ("digits", {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}),
    ("mnist", {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}),
    ("fashion_mnist", {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 9: 7}),
])
def test_semantic_moves_only_mapped_classes_to_their_lookalike(dataset, moves):
    assigned = corrupt_labels(LABELS, 10, 0.4, "semantic", seed=1, dataset=dataset)
    for cls in range(10):
        rows = LABELS == cls
        if cls in moves:
            assert set(np.unique(assigned[rows])) == {cls, moves[cls]}
            assert abs(np.mean(assigned[rows] != cls) - 0.4) < 0.05
        else:
            assert np.all(assigned[rows] == cls)


def test_semantic_cifar100_stays_within_superclass_and_unknown_dataset_refused():
    from mislabel.data.noise import CIFAR100_SUPERCLASS

    assert np.all(np.bincount(CIFAR100_SUPERCLASS, minlength=20) == 5)
    labels = np.repeat(np.arange(100), 100)
    assigned = corrupt_labels(labels, 100, 0.4, "semantic", seed=1, dataset="cifar100")
    moved = assigned != labels
    assert abs(moved.mean() - 0.4) < 0.02
    superclass = np.asarray(CIFAR100_SUPERCLASS)
    assert np.all(superclass[assigned[moved]] == superclass[labels[moved]])
    with pytest.raises(UserError, match="no class mapping for 'tiny_imagenet'"):
        corrupt_labels(labels, 100, 0.4, "semantic", seed=1, dataset="tiny_imagenet")
