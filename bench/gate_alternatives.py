"""What else was tried for the default score of issue 24, in bench/detection.py's transfer setting.

    python bench/gate_alternatives.py                  # after bench/detection.py (reads its runs and detectors)
    python bench/gate_alternatives.py --concentration  # only each grid cell's concentration (no training)

For each dataset's source corpus the `context` LSTM is cross-fitted (three folds of runs, each scored
by an LSTM trained on the other two: the out-of-fold scores the gate is fitted on), then each way of
combining the LSTM with the hand-made scores is fitted on those scores and applied to the *other*
dataset's grid runs (seeds 1-3, the grid recipe), scored by bench/detection.py's `context` detector:
- ``gate``: the shipped rule (mislabel/scoring/gate.py), the LSTM against AUM by concentration;
- ``hard switch``: the same centre with steepness 1000 (the LSTM or AUM, nothing between);
- ``stack``: a logistic regression over the within-run percentiles of the LSTM, AUM, confidence,
  correctness and loss, each also multiplied by three run statistics (the share of predictions equal
  to the label in the first and the last quarter of training, and concentration), every run weighing
  the same; ``stack without run statistics``: the five percentiles alone;
- ``LSTM + control``: the mean of the LSTM's and the learned control's within-run percentiles.
Prints, per candidate, the grid's mean AUC and mAP and its worst cell: how far its mean over seeds
falls short of the best of the baselines and the LSTM itself in that cell.
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
from mislabel.scoring.baselines import aum, confidence, correctness, loss
from mislabel.scoring.control import control_scores, load_control
from mislabel.scoring.features import correct, percentile
from mislabel.scoring.gate import fit_gate, gate_weight
from mislabel.scoring.summary import concentration
from mislabel.scoring.lstm import load_detector
from mislabel.scoring.predict import detector_scores

ROOT = Path(__file__).resolve().parents[1]

FOLDS = 3
WORK = Path("/tmp/mislabel_bench_detection/full")
BASELINES = {"aum": aum, "confidence": confidence, "correctness": correctness, "loss": loss}


def out_of_fold(folders: list[str]) -> dict[str, np.ndarray]:
    """The `context` LSTM's scores of every source run, each from an LSTM that never saw it."""
    from mislabel.scoring.detector_training import train_detector

    recipe = variant_recipe(VARIANTS["context"])
    scores = {}
    for fold in range(FOLDS):
        trained = train_detector([f for i, f in enumerate(folders) if i % FOLDS != fold], recipe)
        for folder in folders[fold::FOLDS]:
            scores[folder] = detector_scores(trained.model, trained.config, load_dynamics(folder))
    return scores


def statistics(dyn: Dynamics) -> np.ndarray:
    quarter = max(1, dyn.num_epochs // 4)
    right = correct(dyn)
    return np.array([right[:, :quarter].mean(), right[:, -quarter:].mean(), concentration(dyn)])


def stack_inputs(lstm: np.ndarray, dyn: Dynamics, with_statistics: bool) -> np.ndarray:
    ranked = np.stack([percentile(lstm)] + [percentile(fn(dyn)) for fn in BASELINES.values()], axis=1)
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
    return lambda lstm, dyn: model.decision_function((stack_inputs(lstm, dyn, with_statistics) - mean) / std)


def gated(gate: dict):
    return lambda lstm, dyn: (gate_weight(gate, concentration(dyn)) * percentile(lstm)
                              + (1 - gate_weight(gate, concentration(dyn))) * percentile(aum(dyn)))


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
        oof = out_of_fold(folders)
        runs = [(oof[f], load_dynamics(f)) for f in folders]
        gate = fit_gate([lstm for lstm, _ in runs], [aum(d) for _, d in runs], [concentration(d) for _, d in runs],
                        [d.flipped for _, d in runs])
        control = load_control(control_path(WORK, source))
        candidates = {"gate": gated(gate), "hard switch": gated(dict(gate, steepness=1000.0)),
                      "stack": fit_stack(runs, True), "stack without run statistics": fit_stack(runs, False),
                      "LSTM + control": lambda lstm, dyn: percentile(lstm) + percentile(control_scores(control, dyn))}
        model, config = load_detector(detector_path(WORK, source, "context"))
        target = other_dataset(plan, source)
        for noise, ratio in plan["settings"]:
            for seed in plan["seeds"]:
                dyn = load_dynamics(run_config(WORK, plan, target, seed, noise, ratio).td_dir)
                lstm = detector_scores(model, config, dyn)
                scores = {"LSTM": lstm} | {name: fn(dyn) for name, fn in BASELINES.items()}
                scores |= {name: fn(lstm, dyn) for name, fn in candidates.items()}
                rows += [dict(dataset=target, cell=f"{noise} {ratio}", method=name, reference=name not in candidates,
                              auc=roc_auc_score(dyn.flipped, value), map=average_precision_score(dyn.flipped, value))
                         for name, value in scores.items()]
    frame = pd.DataFrame(rows)
    cells = frame.groupby(["dataset", "cell", "method"])[["auc", "map"]].mean()
    references = frame[frame.reference].groupby(["dataset", "cell", "method"])[["auc", "map"]].mean()
    best = references.groupby(level=[0, 1]).max()
    print(f"Machine: {machine()}. Command: `python bench/gate_alternatives.py`.\n")
    print("| candidate | mean AUC | mean mAP | worst cell, AUC short of the best reference | worst cell, mAP short |")
    print("|---|---|---|---|---|")
    for name in dict.fromkeys(frame[~frame.reference].method):
        mine = cells.xs(name, level="method")
        short = best - mine
        worst = {m: f"{short[m].max():.3f} ({' '.join(short[m].idxmax())})" for m in ("auc", "map")}
        print(f"| {name} | {mine.auc.mean():.4f} | {mine['map'].mean():.4f} | {worst['auc']} | {worst['map']} |")


if __name__ == "__main__":
    main()
