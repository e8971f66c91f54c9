"""Synthetic label noise, drawn only from (seed, dataset, noise_ratio, noise_type).

Five models:
* ``uniform`` (alias ``sym``): the label is redrawn from a transition matrix whose diagonal is
  ``1 - r`` and whose off-diagonal entries are ``r / (K - 1)``; a changed label is therefore
  uniform over the *other* classes, and the expected flip rate is exactly ``r``.
* ``flip`` (alias ``asym``, the seed's pair flip): class ``c`` becomes ``(c + 1) mod K`` with
  probability ``r``.
* ``semantic``: class-structure noise (Patrini et al., CVPR 2017): with probability ``r`` a label
  of a *mapped* class becomes its look-alike (``SEMANTIC_MAPS``); other classes keep their labels,
  so the overall flip rate is ``r`` times the mapped classes' share. What the literature usually
  calls "asymmetric" noise is this one, not ``flip``.
* ``idn``: instance-dependent noise (Xia et al., NeurIPS 2020, "Part-dependent label noise"):
  each sample gets its own flip rate from a normal around ``r`` (std 0.1, truncated to [0, 1]),
  and its wrong class is drawn from the softmax of the standardised, flattened image times a
  random projection of its true class (own class excluded), so look-alike images share mistakes.
* ``confusion``: annotator-confusion (feature-dependent) noise, the family of PMD noise (Zhang et
  al., ICLR 2021, "Learning with feature-dependent label noise: a progressive approach") and of
  the human noise of CIFAR-10N (Wei et al., ICLR 2022, "Learning with noisy labels revisited"):
  mistakes fall on images that look like another class, and go to that class. An independent
  "annotator" model (not the phase-1 network) scores every training image out of fold: images
  sum-pooled to at most 16x16, their 50 leading principal components (whitened; the PCA sees no
  label), and a multinomial logistic regression fitted on the true labels of the other folds of a
  seeded 5-way split (at most 10,000 rows per fold, which bounds the cost). Exactly
  ``round(r * N)`` images are relabelled, each to the annotator's most probable *wrong* class.
  Ambiguity is the annotator's odds ``p(that wrong class) / p(true class)`` (a margin on the log
  scale, which still separates the many images it is sure of). Which images is a seeded draw
  without replacement weighted by those odds (Gumbel-top-k): images it misclassifies are taken
  almost surely, the clear ones almost never, and seeds still differ where the annotator hesitates.
  A plain ranking by ambiguity would give every seed the same flips (no seed-to-seed spread in a
  benchmark); small jitter on a ranking would only reshuffle the cut-off. The thread count plays
  no part (BLAS is pinned to one thread), and the log-odds are rounded to 0.01 before the draw so
  last-bit differences between CPUs and BLAS builds almost never change it.
  Measured with ``OMP_NUM_THREADS=1 python bench/confusion_noise.py`` (2-core x86_64 shared with
  other jobs, load average 7-10, two runs, r = 0.2 and 0.4): digits' 1,437 training images
  0.2-0.5 s, Fashion-MNIST's 60,000 3.3-7.7 s. At r = 0.2 (digits / Fashion-MNIST): annotator
  accuracy 0.95 / 0.82; its mean true-class probability 0.66 / 0.32 for the flipped images against
  0.98 / 0.85 for the kept ones; seeds 1 and 2 flip sets with Jaccard overlap 0.49 / 0.45.
  Needs the images in memory, as ``idn``.
"""
from __future__ import annotations

import zlib

import numpy as np

from mislabel.core.user_input import UserError

__all__ = ["CLASS_STRUCTURED_TYPES", "NOISE_TYPES", "SEMANTIC_MAPS", "annotator_probabilities",
           "canonical_noise_type", "corrupt_labels", "pooled_pixels", "semantic_map"]

NOISE_TYPES = {"uniform": "uniform", "sym": "uniform", "flip": "flip", "asym": "flip",
               "semantic": "semantic", "idn": "idn", "confusion": "confusion"}
# Types whose flips gather on a look-alike class per class: what DivideMix calls "asymmetric" noise.
CLASS_STRUCTURED_TYPES = frozenset({"flip", "semantic", "confusion"})
IDN_RATE_STD = 0.1  # Xia et al.'s spread of per-sample flip rates around r
CONFUSION_FOLDS = 5  # out-of-fold probabilities: each image scored by a model that never saw its label
CONFUSION_SIDE = 16  # images are sum-pooled to at most this side: keeps the PCA cheap at CIFAR sizes
CONFUSION_COMPONENTS = 50  # PCA dimensions the annotator model sees
CONFUSION_FIT_ROWS = 10_000  # rows each fold's model is fitted on, at most: bounds the cost on large sets

_DIGIT_MAP = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
# CIFAR-100's superclass of each fine label (0-99, alphabetical class order): semantic noise moves a
# label to the next fine class of the same superclass, circularly.
CIFAR100_SUPERCLASS = (4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15,
                       3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4,
                       2, 0, 17, 4, 18, 17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
                       16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13)


def _cifar100_map() -> dict[int, int]:
    members: dict[int, list[int]] = {}
    for fine, coarse in enumerate(CIFAR100_SUPERCLASS):
        members.setdefault(coarse, []).append(fine)
    return {group[i]: group[(i + 1) % len(group)] for group in members.values() for i in range(len(group))}


# Source class -> look-alike class, per dataset. CIFAR-10: truck->automobile, bird->airplane,
# deer->horse, cat<->dog. MNIST/digits: 2->7, 3->8, 5<->6, 7->1. Fashion-MNIST (our choice of
# look-alikes): T-shirt/top<->shirt, pullover<->coat, sandal->sneaker, ankle boot->sneaker.
SEMANTIC_MAPS: dict[str, dict[int, int]] = {
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    "cifar100": _cifar100_map(),
    "mnist": _DIGIT_MAP,
    "digits": _DIGIT_MAP,
    "fashion_mnist": {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 9: 7},
}


def canonical_noise_type(noise_type: str) -> str:
    try:
        return NOISE_TYPES[noise_type]
    except KeyError:
        raise UserError(f"unknown noise_type {noise_type!r}; use uniform (alias sym), flip (alias asym), "
                        "semantic, idn or confusion") from None


def semantic_map(dataset: str) -> dict[int, int]:
    try:
        return SEMANTIC_MAPS[dataset]
    except KeyError:
        raise UserError(f"semantic noise has no class mapping for {dataset!r} (it has one for "
                        f"{', '.join(SEMANTIC_MAPS)}); use uniform, flip, idn or confusion noise for it") from None


def noise_rng(seed: int, dataset: str, noise_ratio: float, noise_type: str) -> np.random.Generator:
    """A generator keyed on everything that defines the corruption, and nothing else.

    Hashing the strings with CRC32 (not Python's salted ``hash``) keeps the draw identical
    across processes and machines.
    """
    key = f"{dataset}|{canonical_noise_type(noise_type)}|{noise_ratio:.6f}"
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def _idn_labels(true_labels: np.ndarray, num_classes: int, noise_ratio: float, images: np.ndarray | None,
                rng: np.random.Generator) -> np.ndarray:
    """Xia et al.'s generator, one class at a time so only one [D, K] projection is ever in memory."""
    from scipy.stats import truncnorm  # here: scipy.stats alone costs half a second to import

    if images is None:
        raise UserError("idn noise needs the images in memory, and this dataset is read from image files; "
                        "use uniform, flip or semantic noise for it")
    features = np.asarray(images, dtype=np.float32).reshape(len(true_labels), -1)
    features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)
    low, high = (0.0 - noise_ratio) / IDN_RATE_STD, (1.0 - noise_ratio) / IDN_RATE_STD
    rates = truncnorm.rvs(low, high, loc=noise_ratio, scale=IDN_RATE_STD, size=len(true_labels), random_state=rng)
    draws = rng.random(len(true_labels))
    assigned = true_labels.copy()
    for cls in range(num_classes):
        projection = rng.standard_normal((features.shape[1], num_classes), dtype=np.float32)
        rows = np.flatnonzero(true_labels == cls)
        if len(rows) == 0:
            continue
        logits = features[rows] @ projection
        logits[:, cls] = -np.inf
        logits -= logits.max(axis=1, keepdims=True)
        wrong = np.exp(logits)
        wrong /= wrong.sum(axis=1, keepdims=True)
        # Stay with probability 1 - rate, else move to class j with probability rate * softmax_j.
        cumulative = np.cumsum(wrong * rates[rows, None], axis=1)
        moved = draws[rows] < rates[rows]
        target = np.minimum((cumulative < draws[rows, None]).sum(axis=1), num_classes - 1)
        assigned[rows[moved]] = target[moved]
    return assigned


def pooled_pixels(images: np.ndarray) -> np.ndarray:
    """``[N, D]`` float64 features: the images sum-pooled to at most ``CONFUSION_SIDE`` a side."""
    pixels = np.asarray(images)
    if pixels.ndim >= 3:
        height, width = pixels.shape[-2:]
        fy, fx = -(-height // CONFUSION_SIDE), -(-width // CONFUSION_SIDE)
        pooled = np.zeros((*pixels.shape[:-2], height // fy, width // fx))
        for dy in range(fy):
            for dx in range(fx):  # in place: no float copy of the full-size images
                pooled += pixels[..., dy : height // fy * fy : fy, dx : width // fx * fx : fx]
        pixels = pooled
    return np.asarray(pixels, dtype=np.float64).reshape(len(pixels), -1)


def annotator_probabilities(images: np.ndarray, true_labels: np.ndarray, num_classes: int,
                            rng: np.random.Generator) -> np.ndarray:
    """``[N, K]`` out-of-fold class probabilities of the independent "annotator" model.

    PCA (fitted on all images: it never sees a label) to ``CONFUSION_COMPONENTS`` whitened
    dimensions, then a multinomial logistic regression per fold of a seeded ``CONFUSION_FOLDS``-way
    split, scoring only the images it was not fitted on. BLAS runs on one thread so the sums, and
    hence the probabilities, do not depend on the machine's thread count.
    """
    from sklearn.linear_model import LogisticRegression  # here: sklearn's import is slow
    from threadpoolctl import threadpool_limits

    probabilities = np.zeros((len(true_labels), num_classes))
    folds = rng.permutation(len(true_labels)) % CONFUSION_FOLDS
    with threadpool_limits(limits=1):
        features = pooled_pixels(images)
        features -= features.mean(axis=0)
        variances, axes = np.linalg.eigh(features.T @ features / len(features))
        variances, axes = variances[::-1][:CONFUSION_COMPONENTS], axes[:, ::-1][:, :CONFUSION_COMPONENTS]
        kept = variances > 1e-9 * variances[0]  # constant pixels (digits' borders) add nothing
        components = features @ (axes[:, kept] / np.sqrt(variances[kept]))
        for fold in range(CONFUSION_FOLDS):
            scored, fitted = folds == fold, np.flatnonzero(folds != fold)
            if len(fitted) > CONFUSION_FIT_ROWS:
                fitted = np.sort(rng.choice(fitted, CONFUSION_FIT_ROWS, replace=False))
            classes = np.unique(true_labels[fitted])
            if not scored.any() or len(classes) == 0:
                continue
            if len(classes) == 1:  # a tiny or one-class set: the annotator can only say that class
                probabilities[np.flatnonzero(scored), classes[0]] = 1.0
                continue
            model = LogisticRegression(max_iter=1000).fit(components[fitted], true_labels[fitted])
            probabilities[np.ix_(scored, model.classes_)] = model.predict_proba(components[scored])
    return probabilities


def _confusion_labels(true_labels: np.ndarray, num_classes: int, noise_ratio: float, images: np.ndarray | None,
                      rng: np.random.Generator) -> np.ndarray:
    """Relabel ``round(r * N)`` images, drawn by the annotator's odds of a wrong class, to that class."""
    if images is None:
        raise UserError("confusion noise needs the images in memory, and this dataset is read from image files; "
                        "use uniform, flip or semantic noise for it")
    probabilities = annotator_probabilities(images, true_labels, num_classes, rng)
    rows = np.arange(len(true_labels))
    true_probability = probabilities[rows, true_labels]
    probabilities[rows, true_labels] = -1.0
    target = probabilities.argmax(axis=1)
    log_odds = np.log(np.maximum(probabilities[rows, target], 1e-12)) - np.log(np.maximum(true_probability, 1e-12))
    # Gumbel-top-k: the k largest of log(weight) + Gumbel noise are a draw without replacement with
    # probability proportional to weight. Rounding to 0.01 absorbs last-bit differences between machines.
    keys = np.round(log_odds, 2) + rng.gumbel(size=len(rows))
    flipped = np.argsort(-keys, kind="stable")[: round(noise_ratio * len(rows))]
    assigned = true_labels.copy()
    assigned[flipped] = target[flipped]
    return assigned


def corrupt_labels(true_labels: np.ndarray, num_classes: int, noise_ratio: float, noise_type: str,
                   seed: int, dataset: str, images: np.ndarray | None = None) -> np.ndarray:
    """Return the assigned (noisy) labels; ``assigned != true_labels`` marks the flips.

    ``images`` (``[N, ...]``, any numeric dtype) is read by ``idn`` and ``confusion`` noise only.
    """
    if not 0.0 <= noise_ratio < 1.0:
        raise UserError(f"noise_ratio {noise_ratio} is outside [0, 1); pass e.g. 0.2 for 20% noise")
    noise_type = canonical_noise_type(noise_type)
    true_labels = np.asarray(true_labels, dtype=np.int64)
    mapping = semantic_map(dataset) if noise_type == "semantic" else None
    if noise_ratio == 0.0 or num_classes < 2:
        return true_labels.copy()
    rng = noise_rng(seed, dataset, noise_ratio, noise_type)
    if noise_type == "idn":
        return _idn_labels(true_labels, num_classes, noise_ratio, images, rng)
    if noise_type == "confusion":
        return _confusion_labels(true_labels, num_classes, noise_ratio, images, rng)
    flip = rng.random(len(true_labels)) < noise_ratio
    if noise_type == "semantic":
        lookalike = np.arange(num_classes)
        for source, target in mapping.items():
            if source < num_classes and target < num_classes:
                lookalike[source] = target
        return np.where(flip, lookalike[true_labels], true_labels)
    if noise_type == "uniform":
        shift = rng.integers(1, num_classes, size=len(true_labels))
    else:
        shift = np.ones(len(true_labels), dtype=np.int64)
    return np.where(flip, (true_labels + shift) % num_classes, true_labels)
