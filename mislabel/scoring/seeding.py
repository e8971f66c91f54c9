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

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mislabel.core.dynamics import Dynamics
from mislabel.core.files import atomic_write
from mislabel.core.user_input import UserError
from mislabel.scoring.summary import SampleSummary

__all__ = ["CHOICE_MARGIN", "DEFAULT_SEED_RATE", "MAX_SEED_RATE", "MIN_SEEDS", "SEED_KINDS", "SEEDED_CANDIDATES",
           "SEEDS_FILE", "SeededCheck", "SeededChoice", "SeededLabels", "Seeds", "check_seed_rate", "choose_score",
           "flag_line", "load_seeds", "original_label_view", "place_seeded", "proxy_features", "save_seeds",
           "seed_auc", "seed_flips", "seeded_check", "seeded_rows", "acted_on_check", "flipped_recall"]

# 3% of the labels: on a 1,500-image set about 20 seeds of each kind, the fewest that rank the candidate
# scores at all (MIN_SEEDS), and the extra noise stays a small share of what real data carries. Not
# tuned: bench/regimes.py ran at 3% only, so other rates are unmeasured.
DEFAULT_SEED_RATE = 0.03
MAX_SEED_RATE = 0.2     # more would train on a visibly worse label set than the user's
MIN_SEEDS = 10          # per kind: fewer cannot tell two scores apart, and no choice is made from them
SEED_KINDS = ("random", "ambiguous")
PROXY_COMPONENTS = 32   # principal components of the images or features where look-alike classes are found
PROXY_FIT_ROWS = 5_000  # rows the principal components are fitted on, at most: bounds the cost on large sets
AMBIGUITY_SHARPNESS = 8.0  # weight exp(8 * log ambiguity): an image halfway between two classes is ~250x
#                            likelier to be drawn than one at a third of the way
SEEDED_CANDIDATES = ("aum", "loss", "confidence", "correctness")   # besides the detector: the grid's winners
# How much better (AUC on the worse kind of seed) another score must rank the seeds to replace the
# default. A few dozen seeds are a noisy judge: on bench/regimes.py's grid (seven regimes) every smaller
# margin cost mean AUC and the worst cell (0.05: 0.9556 and 0.022 short, against the default's 0.9566 and
# 0.016; BENCHMARKS.md, "The seeds' choice at other margins"). 0.1 is the smallest that cost neither, so
# the seeds overrule only a failure wider than any they misjudged there.
CHOICE_MARGIN = 0.1


class SeededLabels(NamedTuple):
    """What ``seed_flips`` returns: unpacks as ``labels, indices, kinds``."""

    labels: np.ndarray    # int64 [N]: the labels to train on
    indices: np.ndarray   # int64 [S]: the rows changed on purpose, sorted
    kinds: np.ndarray     # int8 [S]: each seed's kind, an index into SEED_KINDS


Seeds = tuple[SeededLabels, np.ndarray]   # a run's seeds and the labels they replaced (aligned to the indices)


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


def check_seed_rate(rate: object) -> float:
    """The seed rate as a float, or a UserError naming the allowed range (the API and --seed_rate alike)."""
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
    rate = check_seed_rate(rate)
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
                 margin: float = CHOICE_MARGIN) -> SeededChoice:
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


# ----------------------------------------------------------------------------------------------
# A seeded run, stored and shown with the user's own labels
# ----------------------------------------------------------------------------------------------

SEEDS_FILE = "seeded_flips.npz"   # in the phase-1 folder: which rows were seeded, their kinds, the user's labels


def save_seeds(folder: str | os.PathLike, seeds: SeededLabels, original: np.ndarray) -> None:
    """The seeds of a run and the labels they replaced (``original``, aligned to ``seeds.indices``),
    beside its dynamics (atomic, no pickle)."""
    rows = seeds.indices

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:   # a file object: np.savez would add .npz to the temporary name
            np.savez(handle, indices=rows, kinds=seeds.kinds, original=np.asarray(original, np.int64),
                     seeded=seeds.labels[rows])

    atomic_write(Path(folder) / SEEDS_FILE, write)


def load_seeds(folder: str | os.PathLike, dyn: Dynamics) -> tuple[SeededLabels, np.ndarray] | None:
    """(the seeds, the user's labels of the seeded rows) of a run folder, None when it was not seeded;
    refused by name when damaged or when its labels are not those ``dyn`` (the run) trained on."""
    path = Path(folder) / SEEDS_FILE
    if not path.is_file():
        return None
    labels = np.full(int(dyn.indices.max()) + 1 if dyn.num_samples else 0, -1, np.int64)  # by dataset index
    labels[dyn.indices] = dyn.assigned
    fix = "it is damaged or from another run; rerun with --overwrite"
    try:
        with np.load(path, allow_pickle=False) as arrays:
            rows, kinds, original, seeded = (np.asarray(arrays[key]) for key in ("indices", "kinds", "original",
                                                                                    "seeded"))
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{path} cannot be read ({err}); {fix}") from None
    if not (rows.ndim == kinds.ndim == original.ndim == seeded.ndim == 1
            and len(rows) == len(kinds) == len(original) == len(seeded)) \
            or not all(np.issubdtype(a.dtype, np.integer) for a in (rows, kinds, original, seeded)) \
            or (len(rows) and (rows.min() < 0 or rows.max() >= len(labels) or kinds.min() < 0
                               or kinds.max() >= len(SEED_KINDS) or original.min() < 0)) \
            or len(np.unique(rows)) != len(rows) or not np.array_equal(labels[rows], seeded):
        raise UserError(f"{path} does not describe this run's seeded labels; {fix}")
    return SeededLabels(np.asarray(labels, np.int64), rows.astype(np.int64), kinds.astype(np.int8)), \
        original.astype(np.int64)


def original_label_view(dyn: Dynamics, summary: SampleSummary, rows: np.ndarray, original: np.ndarray
                        ) -> tuple[Dynamics, SampleSummary]:
    """The run as the user's labels see it: ``rows`` (seeded) given back their ``original`` labels, with
    that label's mean probability over the scored epochs (0 where its class was not recorded: the
    network gave it less than every recorded class), and the most probable other class as the
    suggestion. Every output (tables, actions, the Datalab export) reads this view, so none of them
    shows or acts on a label this tool changed."""
    means = dyn.td[rows].astype(np.float32).mean(axis=1)                        # [S, C], the seeded rows only
    classes = summary.classes[rows]
    own = classes == original[:, None]
    probability = np.where(own.any(axis=1), np.where(own, means, 0).sum(axis=1), 0.0).astype(np.float32)
    others = np.where(own, -1.0, means)
    best_other = others.argmax(axis=1)
    pick = np.arange(len(rows))
    suggested = np.where(others[pick, best_other] >= 0, classes[pick, best_other], original)
    suggested_probability = np.where(others[pick, best_other] >= 0, others[pick, best_other], np.nan)

    def patched(values: np.ndarray, new: np.ndarray) -> np.ndarray:
        out = values.copy()
        out[rows] = new
        return out

    given = patched(summary.given, original)
    labels = dyn.labels.copy()
    labels[rows, 0] = original
    user_summary = replace(summary, given=given, given_probability=patched(summary.given_probability, probability),
                           suggested=patched(summary.suggested, suggested),
                           suggested_probability=patched(summary.suggested_probability, suggested_probability),
                           predicted=patched(summary.predicted, np.where(probability >= np.nan_to_num(
                               suggested_probability, nan=-1.0), original, suggested)))
    return replace(dyn, labels=labels), user_summary


def place_seeded(scores: np.ndarray, rows: np.ndarray, seeded_confidence: np.ndarray) -> np.ndarray:
    """``scores`` with the seeded ``rows`` given places in the ranking for their *original* labels.

    A seed's own score says how the run treats the label this tool made up. Its user's label cannot be
    judged against the other rows' labels: the network was trained away from it, so even a right one
    looks doubtful. Against the other seeds it can: they were all trained away from their labels alike,
    and the least believed of them (lowest ``seeded_confidence``, the mean probability of the original
    label) are the likeliest wrong. So a seed's rank among the seeds becomes the same quantile of the
    unseeded rows' scores: a wrong label under a seed is still found, a right one is not singled out."""
    unseeded = np.setdiff1d(np.arange(len(scores)), rows)
    placed = scores.copy()
    if not len(rows) or not len(unseeded):
        return placed
    position = np.empty(len(rows))
    position[np.argsort(seeded_confidence, kind="stable")] = np.arange(len(rows))
    placed[rows] = np.quantile(scores[unseeded], 1.0 - (position + 0.5) / len(rows))
    return placed


@dataclass(frozen=True)
class SeededCheck:
    """What a seeded run says about itself: the score its seeds chose, and how many seeds (labels known
    to be wrong) reach the flagged line, overall and per kind: the flagged set's recall, measured."""

    choice: SeededChoice
    found: dict[str, int]       # kind -> seeds of that kind at or above the lowest flagged score
    seeds: dict[str, int]       # kind -> seeds of that kind

    @property
    def recall(self) -> float:
        return sum(self.found.values()) / max(sum(self.seeds.values()), 1)

    def describe(self) -> str:
        """One line for summaries and reports."""
        total, found = sum(self.seeds.values()), sum(self.found.values())
        kinds = ", ".join(f"{kind} {self.found[kind]}/{self.seeds[kind]}" for kind in SEED_KINDS if self.seeds[kind])
        return (f"of the {total:,} labels changed on purpose to check this run, {found:,} ({self.recall:.0%}) are "
                f"among the flagged ({kinds}: the share of real mistakes found lies near the kind they resemble)")

    def record(self) -> dict:
        return {"recall": self.recall, "found": self.found, "seeds": self.seeds, "chosen_score": self.choice.method,
                "reason": self.choice.reason, "seed_auc": self.choice.seed_auc}


def seeded_check(choice: SeededChoice, scores: np.ndarray, rows: np.ndarray, kinds: np.ndarray,
                 threshold: float) -> SeededCheck:
    """The seeds (``rows``, ``kinds``) whose ``scores`` (the chosen score, for the labels the run trained
    on) reach ``threshold``, the lowest flagged score."""
    reached = scores[rows] >= threshold
    return SeededCheck(choice, {kind: int(reached[kinds == code].sum()) for code, kind in enumerate(SEED_KINDS)},
                       {kind: int((kinds == code).sum()) for code, kind in enumerate(SEED_KINDS)})


def flag_line(scores: np.ndarray, unseeded: np.ndarray, count: int) -> float:
    """The lowest flagged score: the ``count``-th highest of the unseeded rows (infinity for none)."""
    if count <= 0 or not len(unseeded):
        return float("inf")
    return float(np.sort(scores[unseeded])[::-1][min(count, len(unseeded)) - 1])


def flipped_recall(scores: np.ndarray, threshold: float, flipped: np.ndarray, rows: np.ndarray) -> float | None:
    """The share of the real flipped labels (known flips outside the seeded ``rows``) whose ``scores`` reach
    ``threshold``: the recall the seeds measure, where a benchmark knows it (None without real flips)."""
    real = np.asarray(flipped, dtype=bool).copy()
    real[rows] = False
    return float((scores[real] >= threshold).mean()) if real.any() else None


def acted_on_check(scores: np.ndarray, acted: np.ndarray, rows: np.ndarray, kinds: np.ndarray,
                   flipped: np.ndarray | None) -> dict:
    """``SeededCheck.record`` of a cleaning that acted on the rows ``acted`` by ``scores`` (denoise: its
    detector's top rows; the seeds among them, as they are wrong labels it trained on): the seeds
    (``rows``, ``kinds``) that reach its lowest score, and ``flipped_recall`` where the flips are known."""
    choice = replace(choose_score({"detector": scores}, rows, kinds, "detector"),
                     reason="denoise acts on its detector file's ranking")
    threshold = float(scores[acted].min()) if len(acted) else float("inf")
    record = seeded_check(choice, scores, rows, kinds, threshold).record()
    if flipped is not None:
        record["flipped_recall"] = flipped_recall(scores, threshold, flipped, rows)
    return record
