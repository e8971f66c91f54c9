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


@pytest.fixture(scope="module")
def digits():
    """All 1,797 sklearn digits as uint8 [N, 1, 8, 8] images (0-255, as the digits loader scales them)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None], bunch.target.astype(np.int64)


@pytest.mark.parametrize("ratio", [0.1, 0.4])
def test_confusion_flips_exactly_round_r_n_to_the_annotators_wrong_class(digits, ratio):
    from mislabel.data.noise import annotator_probabilities, noise_rng

    images, labels = digits
    assigned = corrupt_labels(labels, 10, ratio, "confusion", seed=1, dataset="digits", images=images)
    flipped = assigned != labels
    assert flipped.sum() == round(ratio * len(labels))  # so no chosen image kept its own class
    # The same generator state gives the annotator's probabilities the draw used.
    probabilities = annotator_probabilities(images, labels, 10, noise_rng(1, "digits", ratio, "confusion"))
    probabilities[np.arange(len(labels)), labels] = -1.0
    assert np.array_equal(assigned[flipped], probabilities.argmax(axis=1)[flipped])


def test_confusion_is_deterministic_and_seeds_share_only_the_hard_core(digits):
    images, labels = digits
    first = corrupt_labels(labels, 10, 0.2, "confusion", seed=1, dataset="digits", images=images)
    assert np.array_equal(first, corrupt_labels(labels, 10, 0.2, "confusion", seed=1, dataset="digits", images=images))
    second = corrupt_labels(labels, 10, 0.2, "confusion", seed=2, dataset="digits", images=images)
    a, b = first != labels, second != labels
    jaccard = np.sum(a & b) / np.sum(a | b)
    assert 0.2 < jaccard < 0.9, jaccard  # different seeds differ, but both take the ambiguous images


def test_confusion_flips_the_images_an_independent_model_finds_ambiguous(digits):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    images, labels = digits
    assigned = corrupt_labels(labels, 10, 0.2, "confusion", seed=3, dataset="digits", images=images)
    flipped = assigned != labels
    pixels = images.reshape(len(labels), -1) / 255.0
    probabilities = cross_val_predict(LogisticRegression(max_iter=500), pixels, labels, cv=4, method="predict_proba")
    true_probability = probabilities[np.arange(len(labels)), labels]
    assert true_probability[flipped].mean() < true_probability[~flipped].mean() - 0.1
    # Most images this other model gets wrong are among the flipped ones (uniform noise: 20% of them).
    assert flipped[probabilities.argmax(axis=1) != labels].mean() > 0.6
    # Unlike uniform noise, the mistakes gather on look-alike pairs.
    pairs = np.bincount(labels[flipped] * 10 + assigned[flipped], minlength=100).reshape(10, 10)
    assert (np.sort(pairs, axis=1)[:, -1] / pairs.sum(axis=1)).mean() > 0.25


def test_confusion_refused_without_images_and_survives_tiny_sets():
    with pytest.raises(UserError, match="confusion noise needs the images in memory.*uniform, flip or semantic"):
        corrupt_labels(LABELS, 10, 0.2, "confusion", seed=1, dataset="cub_200_2011")
    images, labels = _images(12)
    labels = np.where(np.arange(12) == 11, 2, labels % 2)  # class 2 has one image: some folds never see it
    assigned = corrupt_labels(labels, 3, 0.25, "confusion", seed=1, dataset="x", images=images)
    assert np.sum(assigned != labels) == 3 and assigned.max() < 3


def test_confusion_on_digits_takes_well_under_a_second_or_two(digits):
    import time

    images, labels = digits
    corrupt_labels(labels, 10, 0.2, "confusion", seed=1, dataset="digits", images=images)  # imports sklearn
    start = time.perf_counter()
    corrupt_labels(labels, 10, 0.3, "confusion", seed=4, dataset="digits", images=images)
    assert time.perf_counter() - start < 3.0  # ~0.2 s on an idle core; the bound allows a loaded machine


def test_dividemix_treats_confusion_as_class_structured_noise():
    from data_debug_dm.train import published_lambda_u

    # Its flips gather on each class's look-alike, as semantic noise's: the paper's asymmetric row.
    assert published_lambda_u(0.4, "confusion", 10) == published_lambda_u(0.4, "semantic", 10) == 0.0
    assert published_lambda_u(0.4, "idn", 10) == published_lambda_u(0.4, "uniform", 10) == 25.0
