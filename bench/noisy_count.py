"""How many labels are wrong: each estimator's count against the truth on the detection grid (issue 22 §1).

    OMP_NUM_THREADS=1 python bench/noisy_count.py             # the grid table (seeds 1-3), markdown
    OMP_NUM_THREADS=1 python bench/noisy_count.py --windows   # the window sweep that chose DEFAULT_WINDOW
    OMP_NUM_THREADS=1 python bench/noisy_count.py --ratios    # SOURCE_RUN_RATIOS and how often they hold

Reads the phase-1 runs bench/detection.py wrote under --workdir (nothing is trained here). Per grid
cell (dataset x noise setting, mean over the seeds present): the true number of flips; the
confident-joint count of ``mislabel.scoring.count`` on the run's dynamics (default window, the
first 30% of the epochs and the whole run); on held-out probabilities where the run has them
(``crossval``), with cleanlab's own ``num_label_issues`` beside it; the old rule (the LSTM's
probability >= 0.5, the default detector trained on the other dataset) where that detector file
exists; and how many runs have the truth inside the default's likely range. ``--windows`` sweeps
the averaging window over the detectors' training runs (seed SOURCE_SEED) only, so the choice never
sees an evaluated run; the default is the window with the smallest worst error over the grid's
recipes. ``--ratios`` measures the likely range the same way: the 5th and 95th percentiles of
true / estimated count over every seed-SOURCE_SEED run, then how many evaluated runs it holds.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for the scripts it shares

import numpy as np

from common import machine
from detection import detector_path, other_dataset, run_config
from detection_plans import DEFAULT_VARIANT, GRID_SETTINGS, PLANS, SOURCE_SEED
from mislabel.core.dynamics import load_dynamics
from mislabel.scoring.count import DEFAULT_WINDOW, estimate_noisy_count
from mislabel.scoring.summary import summarize
from mislabel.training.crossval import load_pred_probs

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = tuple(dict.fromkeys(GRID_SETTINGS + (("confusion", "0.2"), ("confusion", "0.4"))))
WINDOWS = ((0.0, 0.1), (0.0, 0.2), (0.0, 0.25), (0.0, 0.3), (0.0, 0.4), (0.0, 0.5), (0.0, 0.75), (0.0, 1.0), (0.5, 1.0))


def counts(folder: Path, detector: Path | None) -> dict[str, float | None]:
    """Every estimator's count on one run, and the truth; None where an estimator has no input."""
    dyn = load_dynamics(folder)
    probs = load_pred_probs(folder, dyn)
    summary = summarize(dyn)
    default = estimate_noisy_count(summary)
    truth = float(dyn.flipped.sum())
    row: dict[str, float | None] = {"truth": truth, "covered": float(default.likely[0] <= truth <= default.likely[1]),
                                    "cl_dyn": default.estimate,
                                    "cl_dyn_early": estimate_noisy_count(summarize(dyn, window=(0.0, 0.3))).estimate,
                                    "cl_dyn_whole": estimate_noisy_count(summarize(dyn, window=(0.0, 1.0))).estimate,
                                    "cl_heldout": None, "cleanlab": None, "old_rule": None}
    if probs is not None:
        from cleanlab.count import num_label_issues

        row["cl_heldout"] = estimate_noisy_count(summary, pred_probs=probs[0]).estimate
        row["cleanlab"] = float(num_label_issues(dyn.assigned, probs[0]))
    row["auto"] = row["cl_heldout"] if row["cl_heldout"] is not None else row["cl_dyn"]
    if detector is not None and detector.is_file():
        row["old_rule"] = lstm_count(dyn, detector)
    return row


def lstm_count(dyn, detector: Path) -> float:
    """The rule ``remove_ratio auto`` used before the count: samples the LSTM (ungated) gives >= 0.5."""
    from mislabel.scoring.metrics import DETECTOR_THRESHOLD
    from mislabel.scoring.predict import detector_scores
    from mislabel.scoring.scores import load_detectors

    loaded = load_detectors([detector])[0]
    ungated = {key: value for key, value in loaded.config.items() if key != "gate"}
    return float(np.count_nonzero(detector_scores(loaded.model, ungated, dyn) >= DETECTOR_THRESHOLD))


COLUMNS = (("auto", "remove_ratio auto (held-out where present)"), ("cl_dyn", "CL, dynamics (default window)"),
           ("cl_dyn_early", "CL, dynamics (first 30%)"), ("cl_dyn_whole", "CL, dynamics (whole run)"),
           ("cl_heldout", "CL, held-out probs"), ("cleanlab", "cleanlab num_label_issues"),
           ("old_rule", "old rule (LSTM >= 0.5)"))


def grid_table(work: Path, plan: dict) -> None:
    from mislabel.reports.summary import read_summary

    print(f"Machine: {machine()}. Default window {DEFAULT_WINDOW}; mean over the seeds present; error = mean "
          "estimate / true count - 1.\n")
    print("| dataset | noise | seeds | true | " + " | ".join(title for _, title in COLUMNS) + " | truth in default's "
          "likely range |")
    print("|---|---|---|---|" + "---|" * (len(COLUMNS) + 1))
    worst: dict[str, list[float]] = {key: [] for key, _ in COLUMNS}
    for dataset in plan["data"]:
        detector = detector_path(work, other_dataset(plan, dataset), DEFAULT_VARIANT)
        for noise, ratio in SETTINGS:
            rows = [counts(folder, detector) for seed in plan["seeds"]  # summary.json: a finished run
                    if read_summary(folder := run_config(work, plan, dataset, seed, noise, ratio).td_dir) is not None]
            if not rows:
                print(f"| {dataset} | {noise} {ratio} | 0 | not run yet |" + " |" * (len(COLUMNS) + 1))
                continue
            truth = np.mean([row["truth"] for row in rows])
            cells = []
            for key, _ in COLUMNS:
                values = [row[key] for row in rows]
                if any(value is None for value in values):
                    cells.append("n/a")
                    continue
                error = np.mean(values) / truth - 1
                worst[key].append(error)
                cells.append(f"{np.mean(values):,.0f} ({error:+.0%})")
            covered = sum(int(row["covered"]) for row in rows)
            print(f"| {dataset} | {noise} {ratio} | {len(rows)} | {truth:,.0f} | " + " | ".join(cells)
                  + f" | {covered}/{len(rows)} |")
    print("\nWorst |error| over the cells it covers (cells within ±15%):")
    for key, title in COLUMNS:
        errors = np.abs(worst[key])
        if len(errors):
            print(f"- {title}: {errors.max():.0%} ({int((errors <= 0.15).sum())}/{len(errors)} cells)")


def grid_recipe(plan: dict, summary: dict, num_classes: int | None) -> bool:
    """Whether a run (its summary.json) was trained with the grid's recipe of its dataset: the same
    network, length and recording mode, and for Fashion-MNIST the same 10-class subset size."""
    data = plan["data"].get(summary.get("dataset"))
    if data is None or (summary.get("net_type"), summary.get("depth"), summary.get("epochs"), summary.get("td_mode")) \
            != (data.net_type, data.depth, data.epochs, data.td_mode):
        return False
    size = summary.get("num_train", 0) + summary.get("num_valid", 0)
    return data.train_subset is None or (size == data.train_subset and num_classes == 10)


def window_sweep(work: Path, plan: dict) -> None:
    """Each window's error on every seed-SOURCE_SEED run; worst and mean over the runs with the grid's recipe."""
    from mislabel.reports.summary import read_summary

    print(f"Machine: {machine()}. Seed {SOURCE_SEED} runs only; * = the grid's recipe.\n")
    print("| run | recipe | true | " + " | ".join(f"{a:g}-{b:g}" for a, b in WINDOWS) + " |")
    print("|---|---|---|" + "---|" * len(WINDOWS))
    errors: dict[bool, list[list[float]]] = {True: [], False: []}
    for folder in sorted((work / "runs").glob(f"*/computation4td_seed{SOURCE_SEED}")):
        summary = read_summary(folder)
        if summary is None or summary.get("dataset") not in plan["data"]:
            continue
        dyn = load_dynamics(folder)
        grid = grid_recipe(plan, summary, dyn.num_classes)
        truth = float(dyn.flipped.sum())
        row = [estimate_noisy_count(summarize(dyn, window=window)).estimate / truth - 1 for window in WINDOWS]
        errors[grid].append(row)
        print(f"| {folder.parent.name} | {'*' if grid else ''} | {truth:,.0f} | "
              + " | ".join(f"{e:+.0%}" for e in row) + " |")
    for grid, label in ((True, "grid recipes"), (False, "other recipes")):
        if errors[grid]:
            table = np.abs(np.array(errors[grid]))
            print(f"\n{label} ({len(table)} runs): worst " + ", ".join(f"{w[0]:g}-{w[1]:g}: {e:.0%}" for w, e in
                                                                       zip(WINDOWS, table.max(axis=0)))
                  + "; mean " + ", ".join(f"{e:.0%}" for e in table.mean(axis=0)))


def ratio_sweep(work: Path, plan: dict) -> None:
    """The likely range from every seed-SOURCE_SEED run (true / estimated count, 5th and 95th
    percentiles), then the share of the other runs whose truth it holds."""
    from mislabel.reports.summary import read_summary

    ratios: dict[bool, list[float]] = {True: [], False: []}
    for folder in sorted((work / "runs").glob("*/computation4td_seed*")):
        summary = read_summary(folder)
        if summary is None or summary.get("dataset") not in plan["data"]:
            continue
        dyn = load_dynamics(folder)
        estimate = estimate_noisy_count(summarize(dyn)).estimate
        ratios[summary.get("seed") == SOURCE_SEED].append(float(dyn.flipped.sum()) / max(1, estimate))
    low, high = np.percentile(ratios[True], [5, 95])
    held = np.mean([(low <= r <= high) for r in ratios[False]])
    print(f"Machine: {machine()}. {len(ratios[True])} seed-{SOURCE_SEED} runs: true / estimated count 5th percentile "
          f"{low:.2f}, 95th {high:.2f} (SOURCE_RUN_RATIOS); it holds the truth of {held:.0%} of the "
          f"{len(ratios[False])} evaluated runs ({round(held * len(ratios[False]))}).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/mislabel_bench_detection", help="bench/detection.py's --workdir")
    parser.add_argument("--windows", action="store_true", help="sweep the averaging window on the source runs")
    parser.add_argument("--ratios", action="store_true", help="measure the likely range on the source runs")
    args = parser.parse_args()
    plan = PLANS["full"]
    work = Path(args.workdir) / plan["name"]
    (window_sweep if args.windows else ratio_sweep if args.ratios else grid_table)(work, plan)


if __name__ == "__main__":
    main()
