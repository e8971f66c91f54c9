"""The gated default score: the LSTM where a run's mistakes follow its classes, AUM where they scatter.

Why: the LSTM with class context wins by wide margins where the wrong labels share a class structure
(pair flips, look-alike class maps: the run's own confusion shows the structure), and loses where a
per-sample average already ranks well: uniform noise, instance-dependent noise, annotators'
confusions of ambiguous images. There AUM (Pleiss et al., 2020) is the better evidence and the class
context only adds false suspects (BENCHMARKS.md, bench/detection.py). The run itself says which case
it is: its *concentration* (``mislabel.scoring.summary.concentration``), the share of the model's
disagreements with the labels
that go to the single most frequent wrong class of their label's class, near 1 when mistakes follow
a class structure and near 1/(K-1) when they scatter. So the score is

    w * percentile(LSTM probability) + (1 - w) * percentile(base score),  w = sigmoid(k * (concentration - c)),

where the base is AUM with each epoch weighted by how far the network's agreement with the labels stood
above chance then (``summary.agreement_weighted_aum``: the epochs before a network learned anything say
nothing; detectors trained before it was introduced keep plain AUM, their gate's ``base``),

with the centre ``c`` and steepness ``k`` fitted on the source runs (``fit_gate``): the pair of
``CENTRES`` x ``STEEPNESS`` with the least mean regret, AUC and mAP short of the better of the two
inputs, over the runs. (The least *worst-run* regret, ``objective="worst"``, was measured too and
not shipped: it fits softer gates that lost both the mean and the worst cell of the benchmark grids,
bench/gate_alternatives.py.) The LSTM scores it is fitted on are *out of fold* (each run scored by an
LSTM that never saw it, ``mislabel.scoring.detector_training``), so the gate learns what the LSTM is worth
on unseen runs. Two numbers fitted on tens of runs: little to overfit, but not nothing to vary. The
benchmark's two corpora picked centres of 0.38 and 0.44 (BENCHMARKS.md): a run whose concentration
lies between them is where the gate is least sure.

The gated values are a ranking. So that "score >= 0.5" marks the run's estimated number of wrong
labels (``mislabel.scoring.count``: what denoise's ``remove_ratio auto`` removes and find_issues
flags), the ranking is mapped onto (0, 1] with exactly that many samples at 0.5 or above, most
suspicious first.

Stored inside the detector file as ``config["gate"]`` (floats, strings and lists), so it loads with
``torch.load(..., weights_only=True)`` and every caller of the detector gets it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mislabel.core.user_input import UserError
from mislabel.scoring.count import estimate_noisy_count
from mislabel.scoring.features import percentile
from mislabel.scoring.summary import SampleSummary

__all__ = ["CENTRES", "DEFAULT_BASE", "GATE_BASES", "GATE_FORMAT", "GATE_OBJECTIVES", "STEEPNESS", "check_gate",
           "fit_gate", "gate_weight", "gated_scores"]

GATE_FORMAT = "mislabel-gate/1"
# The gate's base score, read off the run's summary; a detector file names its own ("aum" before the
# weighting existed), so a file keeps scoring as it was fitted.
GATE_BASES = {"aum": lambda summary: summary.aum, "weighted_aum": lambda summary: summary.weighted_aum}
DEFAULT_BASE = "weighted_aum"
CENTRES = tuple(float(c) for c in np.round(np.linspace(0.2, 0.7, 26), 2))
# No hard switch: a run near the centre gets both kinds of evidence, not a coin toss between them.
STEEPNESS = (5.0, 10.0, 20.0, 40.0)
_WEIGHTS = np.linspace(0.0, 1.0, 11)  # the LSTM's weight, on which each source run's AUC and mAP are read
# How the source runs' regrets ([runs, 2]: AUC and mAP) become the one number a gate is fitted to make
# least: their mean (shipped), or the worst run's AUC regret and mAP regret, averaged.
GATE_OBJECTIVES = {"mean": lambda regrets: float(regrets.mean()),
                   "worst": lambda regrets: float(regrets.max(axis=0).mean())}


def gate_weight(gate: dict, run_concentration: float) -> float:
    """The LSTM's weight for a run of this concentration."""
    return float(1.0 / (1.0 + np.exp(-gate["steepness"] * (run_concentration - gate["centre"]))))


def _mixed(weight: float, lstm_scores: np.ndarray, aum_scores: np.ndarray) -> np.ndarray:
    return weight * percentile(np.asarray(lstm_scores, np.float64)) + (1 - weight) * percentile(aum_scores)


def fit_gate(lstm_scores: Sequence[np.ndarray], aum_scores: Sequence[np.ndarray], concentrations: Sequence[float],
             flipped: Sequence[np.ndarray], names: Sequence[str] = (), base: str = DEFAULT_BASE,
             objective: str = "mean") -> dict:
    """The gate of least regret over the source runs (summed up by ``objective``, a key of
    GATE_OBJECTIVES), given per run its out-of-fold LSTM scores, its ``base`` scores (a key of
    GATE_BASES), its ``concentration`` and its flips. Returns the dict stored as a detector config's
    ``"gate"``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if objective not in GATE_OBJECTIVES:
        raise UserError(f"objective {objective!r} is not one of {', '.join(GATE_OBJECTIVES)}")
    summed_up = GATE_OBJECTIVES[objective]

    curves = []
    for lstm, aum_run, truth in zip(lstm_scores, aum_scores, flipped):
        mixes = [_mixed(w, lstm, aum_run) for w in _WEIGHTS]
        curves.append(np.array([[roc_auc_score(truth, m), average_precision_score(truth, m)] for m in mixes]))
    best = None
    for centre in CENTRES:
        for steepness in STEEPNESS:
            gate = {"centre": centre, "steepness": steepness}
            read = [np.array([np.interp(gate_weight(gate, c), _WEIGHTS, curve[:, m]) for m in (0, 1)])
                    for curve, c in zip(curves, concentrations)]
            regrets = np.array([np.maximum(curve[0], curve[-1]) - at for curve, at in zip(curves, read)])
            regret = summed_up(regrets)
            if best is None or regret < best[0] - 1e-12:
                best = (regret, centre, steepness, regrets)
    return {"format": GATE_FORMAT, "base": base, "centre": best[1], "steepness": best[2],
            "mean_regret": GATE_OBJECTIVES["mean"](best[3]), "worst_regret": GATE_OBJECTIVES["worst"](best[3]),
            "trained_on": list(names)}


def check_gate(gate: object, source: str) -> dict:
    """A stored gate is used only if it is ours and its numbers are finite."""
    if not isinstance(gate, dict) or gate.get("format") != GATE_FORMAT or gate.get("base") not in GATE_BASES:
        raise UserError(f"{source}: its gate is not a {GATE_FORMAT} dict over {' or '.join(GATE_BASES)}; the file "
                        "is damaged, retrain it")
    for key in ("centre", "steepness"):
        value = gate.get(key)
        if not isinstance(value, float) or not np.isfinite(value):
            raise UserError(f"{source}: its gate's {key} is {value!r}, not a finite float; the file is damaged, "
                            "retrain it")
    return gate


def gated_scores(gate: dict, lstm_probability: np.ndarray, summary: SampleSummary, count: int | None = None
                 ) -> np.ndarray:
    """float64 [N] in (0, 1]: the gated ranking, ``count`` samples on top (>= 0.5), in the gated order;
    higher = more suspicious. The run's base score and concentration come from its ``summary``; ``count``
    defaults to the run's estimated number of wrong labels; callers that already hold it (the flags of
    ``rank``, find_issues, denoise) pass it, so it is counted once."""
    # A run that memorised is scored on its epochs before the onset, a shape of dynamics the LSTM's corpus
    # (from-scratch runs) never showed it: there AUM alone (bench/regimes.py, linear heads trained long).
    weight = 0.0 if summary.onset is not None else gate_weight(gate, summary.concentration)
    mixed = _mixed(weight, lstm_probability, GATE_BASES[gate["base"]](summary))
    if count is None:
        count = estimate_noisy_count(summary, resamples=0).estimate  # the count alone: no interval to draw
    rank = np.empty(len(mixed), np.int64)
    rank[np.argsort(-mixed, kind="stable")] = np.arange(len(mixed))
    above = 1.0 - 0.5 * rank / max(count, 1)
    below = 0.5 * (len(mixed) - 1 - rank) / max(len(mixed) - count, 1)
    return np.where(rank < count, above, below)
