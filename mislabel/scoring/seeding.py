"""Seeded flips: a run that checks itself.

Error seeding (Mills, 1972, "On the statistical validation of computer programs"): before training,
change a small share of the labels on purpose; after training, how the run treats those known-wrong
labels tells, on this very run, which score separates wrong labels best (``choose_score``), how many
real wrong labels there are (``seeded_count``) and which share of them the flagged set holds. AUM's
threshold samples (Pleiss et al., 2020) are a relative: a fake class whose samples are all wrong.

The catch is difficulty. A random image given a random class is easier to catch than an annotator's
slip, which lands on an ambiguous image and on the class it resembles; what the seeds say about the
real mistakes is biased towards the seeds' own difficulty (issue 36). We cannot know which kind the
user's mistakes are, so the seeds come in two *kinds* that bracket them:

* ``random``: a uniformly drawn image moved to a uniformly drawn other class (uniform noise's kind);
* ``ambiguous``: an image drawn with weight on those between two classes, moved to its look-alike class,
  the nearest other class centroid in a cheap proxy view (the user's features or the images' principal
  components): annotator confusion's kind.

Every estimate is then made per kind, and a result is taken only where both kinds agree or as the range
between them: the score whose *worse* kind ranks best, a count range from the two kinds' estimates.
Numpy only; bench/regimes.py measures all of it across training regimes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mislabel.core.user_input import UserError

__all__ = ["DEFAULT_SEED_RATE", "MAX_SEED_RATE", "MIN_SEEDS", "SEED_KINDS", "SEEDED_CANDIDATES", "SeededChoice",
           "SeededLabels", "choose_score", "proxy_features", "seed_flips", "seeded_rows"]

# 3% of the labels: enough seeds of each kind to rank the candidate scores on a 1,500-image set, few
# enough that training on them does not visibly change the model (bench/regimes.py).
DEFAULT_SEED_RATE = 0.03
MAX_SEED_RATE = 0.2     # more would train on a visibly worse label set than the user's
MIN_SEEDS = 10          # per kind: fewer cannot tell two scores apart, and no choice is made from them
SEED_KINDS = ("random", "ambiguous")
PROXY_COMPONENTS = 32   # principal components of the images or features where look-alike classes are found
PROXY_FIT_ROWS = 5_000  # rows the principal components are fitted on, at most: bounds the cost on large sets
AMBIGUITY_SHARPNESS = 8.0  # weight exp(8 * log ambiguity): an image halfway between two classes is ~250x
#                            likelier to be drawn than one at a third of the way
SEEDED_CANDIDATES = ("aum", "loss", "confidence", "correctness")   # besides the detector: the grid's winners


class SeededLabels(NamedTuple):
    """What ``seed_flips`` returns: unpacks as ``labels, indices, kinds``."""

    labels: np.ndarray    # int64 [N]: the labels to train on
    indices: np.ndarray   # int64 [S]: the rows changed on purpose, sorted
    kinds: np.ndarray     # int8 [S]: each seed's kind, an index into SEED_KINDS


def proxy_features(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """float32 [N, <= PROXY_COMPONENTS]: whitened principal components of flattened ``values`` (images or
    features, any shape [N, ...]), the cheap view in which ``seed_flips`` finds each image's look-alike class."""
    flat = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    flat = flat - flat.mean(axis=0)
    rows = np.random.default_rng(seed).permutation(len(flat))[:PROXY_FIT_ROWS]
    _, singular, basis = np.linalg.svd(flat[rows], full_matrices=False)
    keep = min(PROXY_COMPONENTS, int(np.count_nonzero(singular > singular[0] * 1e-6)) if singular.size else 0)
    if keep == 0:
        return np.zeros((len(flat), 1), np.float32)
    projected = flat @ basis[:keep].T
    return (projected / projected.std(axis=0).clip(1e-6)).astype(np.float32)


def _lookalike(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the nearest *other* class centroid (its look-alike class) and its ambiguity: its
    distance to its own class centroid over that to the look-alike (near 1: between two classes)."""
    present = np.bincount(labels, minlength=num_classes)
    sums = np.zeros((num_classes, features.shape[1]), np.float64)
    np.add.at(sums, labels, features)
    centroids = sums / np.maximum(present, 1)[:, None]
    distances = ((features.astype(np.float64) ** 2).sum(axis=1)[:, None] - 2 * features @ centroids.T
                 + (centroids ** 2).sum(axis=1)[None, :]).clip(0)
    distances[:, present == 0] = np.inf
    rows = np.arange(len(labels))
    own = distances[rows, labels].copy()
    distances[rows, labels] = np.inf
    target = distances.argmin(axis=1)
    return target, np.sqrt(own) / np.sqrt(distances[rows, target]).clip(1e-12)


def _check_rate(rate: object) -> float:
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(rate, bool) or not 0.0 <= value <= MAX_SEED_RATE:
        raise UserError(f"seed rate must be a number in [0, {MAX_SEED_RATE}]; got {rate!r}")
    return value


def seed_flips(labels: np.ndarray, rate: float = DEFAULT_SEED_RATE, seed: int = 0,
               features: np.ndarray | None = None, num_classes: int | None = None) -> SeededLabels:
    """Labels with ``rate`` of them changed on purpose: half ``random`` seeds, half ``ambiguous`` ones.

    :param labels: int [N] the labels to train on (the user's, possibly already wrong in places).
    :param rate: share of rows to change, in [0, MAX_SEED_RATE]; 0 changes nothing.
    :param seed: the draw's random seed: the same inputs and seed give the same seeds.
    :param features: [N, ...] a view of each sample (its pixels, an embedding) in which look-alike classes
        are near; ``None``: every seed is ``random`` (no look-alike class can be found).
    :param num_classes: K (default: one more than the largest label).
    :returns: ``SeededLabels(labels, indices, kinds)``. Report the labels you passed in, not these: the
        seeds are this tool's, never the user's.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)) \
            or (labels.size and labels.min() < 0):
        raise UserError("labels must be a 1-D array of non-negative integer class ids")
    rate = _check_rate(rate)
    labels = labels.astype(np.int64)
    classes = int(num_classes if num_classes is not None else (labels.max() + 1 if labels.size else 0))
    count = int(round(rate * len(labels)))
    if count == 0 or classes < 2:
        return SeededLabels(labels.copy(), np.zeros(0, np.int64), np.zeros(0, np.int8))
    rng = np.random.default_rng([int(seed), 0x5EED])
    target = (labels + rng.integers(1, classes, size=len(labels))) % classes
    ambiguous = 0
    if features is not None:
        features = np.asarray(features, dtype=np.float32).reshape(len(labels), -1)
        if not np.isfinite(features).all():
            raise UserError("features for seeding hold NaN or inf; pass finite features or features=None")
        lookalike, ambiguity = _lookalike(proxy_features(features, seed), labels, classes)
        ambiguous = count // 2
        keys = AMBIGUITY_SHARPNESS * np.log(np.clip(ambiguity, 1e-6, None)) + rng.gumbel(size=len(labels))
        hard = np.argsort(-keys, kind="stable")[:ambiguous]    # Gumbel-top-k: a weighted draw without replacement
        target[hard] = lookalike[hard]
    else:
        hard = np.zeros(0, np.int64)
    easy = rng.choice(np.setdiff1d(np.arange(len(labels)), hard), size=count - ambiguous, replace=False)
    rows = np.concatenate([easy, hard])
    kinds = np.concatenate([np.zeros(len(easy), np.int8), np.ones(len(hard), np.int8)])
    order = np.argsort(rows)
    new_labels = labels.copy()
    new_labels[rows] = target[rows]
    return SeededLabels(new_labels, rows[order].astype(np.int64), kinds[order])


def seeded_rows(indices: np.ndarray, seeded: np.ndarray) -> np.ndarray:
    """Row positions of the dataset ids ``seeded`` among a run's ``indices``, in ``seeded``'s order; refused
    when an id is not in the run, repeats or is not a whole number, so a wrong list never checks nothing."""
    seeded = np.asarray(seeded)
    if seeded.ndim != 1 or (seeded.size and not np.issubdtype(seeded.dtype, np.integer)):
        raise UserError("seeded must be a 1-D sequence of the dataset indices seed_flips returned")
    if len(np.unique(seeded)) != len(seeded):
        raise UserError("seeded repeats an index; pass the indices seed_flips returned, each once")
    order = np.argsort(indices, kind="stable")
    found = np.minimum(np.searchsorted(indices[order], seeded), max(len(indices) - 1, 0))
    missing = seeded[indices[order][found] != seeded] if len(indices) else seeded
    if len(missing):
        raise UserError(f"seeded index {int(missing[0])} is not a sample of this run; pass the indices seed_flips "
                        "returned for the labels this run trained on")
    return order[found].astype(np.int64)


# ----------------------------------------------------------------------------------------------
# What the seeds say: the score to trust
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeededChoice:
    """Which score a run's seeds chose, and how each candidate ranked each kind of seed."""

    method: str                                # the chosen candidate
    seed_auc: dict[str, dict[str, float]]      # candidate -> kind -> AUC of those seeds against clean-ranked rows
    num_seeds: dict[str, int]                  # kind -> seeds of that kind
    reason: str


def seed_auc(values: np.ndarray, seeds: np.ndarray, unseeded: np.ndarray) -> float:
    """AUC of the rows ``seeds`` against the ``unseeded`` rows this score puts in its lower half (the rows
    it calls clean): the real wrong labels, which a good score puts high, stay out of the negatives, so
    they do not pull every score towards 0.5 (issue 36)."""
    others = values[unseeded]
    negatives = np.sort(others[others <= np.median(others)])
    below = np.searchsorted(negatives, values[seeds], side="left")
    ties = np.searchsorted(negatives, values[seeds], side="right") - below
    return float((below + 0.5 * ties).sum() / (len(seeds) * max(len(negatives), 1)))


def choose_score(scores: dict[str, np.ndarray], seeds: np.ndarray, kinds: np.ndarray, default: str,
                 margin: float = 0.01) -> SeededChoice:
    """The candidate of ``scores`` (name -> [N], higher = more suspicious) whose *worse* kind of seed it
    ranks best (a choice that holds whether the real mistakes are like the easy or the hard seeds), unless
    ``default`` is within ``margin`` of it: a few dozen seeds are a noisy judge, so the default gives way
    only to a clear winner. Kinds with fewer than MIN_SEEDS seeds are not used."""
    if default not in scores:
        raise UserError(f"the default score {default!r} is not among the candidates {sorted(scores)}")
    size = len(next(iter(scores.values())))
    unseeded = np.setdiff1d(np.arange(size), seeds)
    counts = {kind: int(np.count_nonzero(kinds == code)) for code, kind in enumerate(SEED_KINDS)}
    usable = [code for code, kind in enumerate(SEED_KINDS) if counts[kind] >= MIN_SEEDS]
    aucs = {name: {SEED_KINDS[code]: seed_auc(np.asarray(values, np.float64), seeds[kinds == code], unseeded)
                   for code in usable} for name, values in scores.items()}
    if not usable:
        return SeededChoice(default, aucs, counts, f"fewer than {MIN_SEEDS} seeds of each kind: the default kept")
    worst = {name: min(by_kind.values()) for name, by_kind in aucs.items()}
    best = max(worst, key=lambda name: (worst[name], name == default))
    if worst[best] - worst[default] <= margin:
        return SeededChoice(default, aucs, counts, f"no candidate beat the default by more than {margin}")
    return SeededChoice(best, aucs, counts, f"ranked its harder kind of seeds best ({worst[best]:.3f} against the "
                                            f"default's {worst[default]:.3f})")
