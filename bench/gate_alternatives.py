"""What else was tried for the default score (issues 24 and 30), in bench/detection.py's transfer setting.

    python bench/gate_alternatives.py                  # after bench/detection.py (reads its runs and detectors)
    python bench/gate_alternatives.py --concentration  # only each grid cell's concentration (no training)

For each dataset's source corpus the `gated` detector's own training is rerun (``train_detector`` with
bench/detection.py's recipe, deterministic), and the out-of-fold LSTM scores, base scores and
concentrations its gate is fitted on are kept. Each way of combining the LSTM with the hand-made scores
is fitted on them and applied to the *other* dataset's grid runs (seeds 1-3, the grid recipe and
find_issues' recipes), with the LSTM of bench/detection.py's `gated` detector:
- ``gate``: the shipped rule (mislabel/scoring/gate.py): the LSTM against the agreement-weighted AUM
  by concentration, fitted for the least mean regret over the source runs; it must equal the stored
  detector's gate (checked);
- ``gate, least worst-run regret``: the same rule fitted with ``objective="worst"``;
- ``hard switch``: the shipped centre with steepness 1000 (the LSTM or the base, nothing between);
- ``stack``: a logistic regression over the within-run percentiles of the LSTM, AUM, confidence,
  correctness and loss, each also multiplied by three run statistics (the share of predictions equal
  to the label in the first and the last quarter of training, and concentration), every run weighing
  the same; ``stack without run statistics``: the five percentiles alone;
- ``LSTM + control``: the mean of the LSTM's and the learned control's within-run percentiles.
Prints, per candidate and recipe, the grid's mean AUC and mAP and its worst cell: how far its mean over
seeds falls short of the best of every baseline and the LSTM itself in that cell.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for the scripts it shares

import numpy as np
import pandas as pd

from common import machine
from detection import control_path, detector_path, other_dataset, run_config, source_folders, variant_recipe
from detection_plans import PLANS, VARIANTS
from mislabel.core.dynamics import Dynamics, load_dynamics
from mislabel.scoring.baselines import BASELINES, aum, confidence, correctness, loss
from mislabel.scoring.control import control_scores, load_control
from mislabel.scoring.features import correct, percentile
from mislabel.scoring.gate import GATE_BASES, fit_gate, gate_weight
from mislabel.scoring.summary import concentration, summarize
from mislabel.scoring.lstm import load_detector
from mislabel.scoring.predict import detector_scores

ROOT = Path(__file__).resolve().parents[1]

WORK = Path("/tmp/mislabel_bench_detection/full")
STACKED = {"aum": aum, "confidence": confidence, "correctness": correctness, "loss": loss}   # the stack's inputs


def gate_inputs(folders: list[str]) -> dict:
    """What ``train_detector`` fits the `gated` detector's gate on (out-of-fold LSTM scores, base
    scores, concentrations and flips per source run), taken from the library's own cross-fit."""
    from unittest import mock

    from mislabel.scoring import gate as gate_module
    from mislabel.scoring.detector_training import train_detector

    with mock.patch.object(gate_module, "fit_gate", wraps=gate_module.fit_gate) as fitted:
        train_detector(folders, variant_recipe(VARIANTS["gated"]))
    lstm, base, concentrations, flipped, names = fitted.call_args.args
    return dict(lstm_scores=lstm, aum_scores=base, concentrations=concentrations, flipped=flipped, names=names)


def statistics(dyn: Dynamics) -> np.ndarray:
    quarter = max(1, dyn.num_epochs // 4)
    right = correct(dyn)
    return np.array([right[:, :quarter].mean(), right[:, -quarter:].mean(), concentration(dyn)])


def stack_inputs(lstm: np.ndarray, dyn: Dynamics, with_statistics: bool) -> np.ndarray:
    ranked = np.stack([percentile(lstm)] + [percentile(fn(dyn)) for fn in STACKED.values()], axis=1)
    if not with_statistics:
        return ranked
    crossed = (ranked[:, :, None] * statistics(dyn)[None, None, :]).reshape(len(ranked), -1)
    return np.concatenate([ranked, crossed], axis=1)


def fit_stack(runs: list[tuple[np.ndarray, Dynamics]], with_statistics: bool):
    from sklearn.linear_model import LogisticRegression

    inputs = [stack_inputs(lstm, dyn, with_statistics) for lstm, dyn in runs]
    x, y = np.concatenate(inputs), np.concatenate([dyn.flipped for _, dyn in runs]).astype(int)
    weight = np.concatenate([np.full(len(i), len(x) / (len(i) * len(inputs))) for i in inputs])
    mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-9)
    model = LogisticRegression(C=0.05, class_weight="balanced", max_iter=3000)
    model.fit((x - mean) / std, y, sample_weight=weight)
    return lambda lstm, dyn, _: model.decision_function((stack_inputs(lstm, dyn, with_statistics) - mean) / std)


def gated(gate: dict):
    def mixed(lstm: np.ndarray, _: Dynamics, summary) -> np.ndarray:
        weight = gate_weight(gate, summary.concentration)
        return weight * percentile(lstm) + (1 - weight) * percentile(GATE_BASES[gate["base"]](summary))
    return mixed


def concentration_table(plan: dict) -> None:
    """Each grid cell's concentration (min-max over seeds), grid recipe and find_issues' recipes."""
    print("| dataset | setting | grid recipe | find_issues' recipe |\n|---|---|---|---|")
    for dataset in plan["data"]:
        for noise, ratio in plan["settings"]:
            spans = []
            for rows in ("grid", "find_issues"):
                values = [concentration(load_dynamics(run_config(WORK, plan, dataset, seed, noise, ratio, rows).td_dir))
                          for seed in plan["seeds"]]
                spans.append(f"{min(values):.2f}-{max(values):.2f}")
            print(f"| {dataset} | {noise} {ratio} | {spans[0]} | {spans[1]} |")


def main() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    plan = PLANS["full"]
    if "--concentration" in sys.argv[1:]:
        concentration_table(plan)
        return
    rows = []
    for source in plan["data"]:
        folders = source_folders(WORK, plan, source, "corpus")
        inputs = gate_inputs(folders)
        model, config = load_detector(detector_path(WORK, source, "gated"))
        gate = fit_gate(**inputs)
        if (gate["centre"], gate["steepness"]) != (config["gate"]["centre"], config["gate"]["steepness"]):
            raise SystemExit(f"{source}: the refitted gate {gate} is not the stored detector's {config['gate']}")
        worst = fit_gate(**inputs, objective="worst")
        print(f"{source}'s corpus: shipped gate centre {gate['centre']}, steepness {gate['steepness']} (regret "
              f"mean {gate['mean_regret']:.4f}, worst {gate['worst_regret']:.4f}); least worst-run regret: centre "
              f"{worst['centre']}, steepness {worst['steepness']} (mean {worst['mean_regret']:.4f}, worst "
              f"{worst['worst_regret']:.4f})", flush=True)
        runs = [(lstm, load_dynamics(f)) for lstm, f in zip(inputs["lstm_scores"], folders)]
        control = load_control(control_path(WORK, source))
        # each candidate: (the LSTM's scores, the run, its summary) -> the run's combined scores
        candidates = {"gate (shipped)": gated(gate), "gate, least worst-run regret": gated(worst),
                      "hard switch (steepness 1000)": gated(dict(gate, steepness=1000.0)),
                      "stack": fit_stack(runs, True), "stack without run statistics": fit_stack(runs, False),
                      "LSTM + control": lambda lstm, dyn, _: (percentile(lstm)
                                                              + percentile(control_scores(control, dyn)))}
        lstm_alone = {key: value for key, value in config.items() if key != "gate"}
        target = other_dataset(plan, source)
        for recipe in ("grid", "find_issues") if target in plan["recipes"] else ("grid",):
            for noise, ratio in plan["settings"]:
                for seed in plan["seeds"]:
                    dyn = load_dynamics(run_config(WORK, plan, target, seed, noise, ratio, recipe).td_dir)
                    lstm = detector_scores(model, lstm_alone, dyn)
                    summary = summarize(dyn)   # once per run, for every gate; the whole run, as detection.py
                    scores = {"LSTM": lstm} | {name: fn(dyn) for name, fn in BASELINES.items()}
                    scores |= {name: fn(lstm, dyn, summary) for name, fn in candidates.items()}
                    rows += [dict(recipe=recipe, dataset=target, cell=f"{noise} {ratio}", method=name,
                                  reference=name not in candidates, auc=roc_auc_score(dyn.flipped, value),
                                  map=average_precision_score(dyn.flipped, value))
                             for name, value in scores.items()]
    frame = pd.DataFrame(rows)
    print(f"\nMachine: {machine()}. Command: `python bench/gate_alternatives.py`.\n")
    print("| candidate | recipe | mean AUC | mean mAP | worst cell, AUC short of the best reference | "
          "worst cell, mAP short | cells within 0.005 AUC |\n|---|---|---|---|---|---|---|")
    for recipe, of_recipe in frame.groupby("recipe", sort=False):
        cells = of_recipe.groupby(["dataset", "cell", "method"])[["auc", "map"]].mean()
        best = (of_recipe[of_recipe.reference].groupby(["dataset", "cell", "method"])[["auc", "map"]].mean()
                .groupby(level=[0, 1]).max())
        for name in dict.fromkeys(of_recipe[~of_recipe.reference].method):
            short = (best - cells.xs(name, level="method")).clip(lower=0)
            mine = cells.xs(name, level="method")
            worst = {m: f"{short[m].max():.3f} ({' '.join(short[m].idxmax())})" for m in ("auc", "map")}
            print(f"| {name} | {recipe} | {mine.auc.mean():.4f} | {mine['map'].mean():.4f} | {worst['auc']} | "
                  f"{worst['map']} | {int((short.auc <= 0.005).sum())} of {len(short)} |")


if __name__ == "__main__":
    main()
