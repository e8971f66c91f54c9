"""Does acting on the suspects pay off? Each cleaning action and method retrained on the detection grid (issue 22 §2).

    python bench/cleaning.py                      # digits: every grid cell; Fashion-MNIST: FASHION_CELLS
    python bench/cleaning.py --render             # the table of whatever is cached, nothing trained

Reads the phase-1 runs bench/detection.py wrote under --workdir (run that first) and retrains
each with phase 1's own recipe, early-stopped on the noisy validation split as
a user would have it, once per row:

* noisy: phase 1's own test accuracy (no retraining);
* oracle: without exactly the flipped labels (the most any removal can give);
* the default detector (trained on the *other* dataset, as in the detection grid), acting on the
  estimated number of wrong labels (``remove_ratio auto``: ``mislabel.scoring.count``) with every
  action of ``mislabel.scoring.cleaning``: remove, relabel, hybrid, downweight;
* AUM, correctness and, where the run has held-out probabilities, cleanlab: removing as many
  (``DATASET_ROWS``: AUM only on Fashion-MNIST).

Gap closed = (mean accuracy - mean noisy) / (mean oracle - mean noisy), ratio of means over the
seeds. Retrainings are cached in the run folders (``bench_clean/<row>``); a rerun does what is
missing. ``--workers`` single-threaded processes share the CPU.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: one thread per worker process

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for the scripts it shares

import numpy as np

from common import logged, machine, run_stage
from detection import detector_path, other_dataset, run_config
from detection_plans import DEFAULT_VARIANT, GRID_SETTINGS, PLANS

ROOT = Path(__file__).resolve().parents[1]

# Fashion-MNIST retrainings cost ~100 s each on one core: the cells where removal widened the gap
# before (BENCHMARKS.md, issue 22) and the annotator-like cell, and of the baselines AUM only (the
# strongest on these runs' detection grid; no held-out probabilities for cleanlab).
FASHION_CELLS = (("uniform", "0.2"), ("semantic", "0.4"), ("idn", "0.2"), ("confusion", "0.4"))
ACTION_ROWS = ("remove", "relabel", "hybrid", "downweight")
BASELINE_ROWS = ("aum", "correctness", "cleanlab")
# the oracle and the detector's actions first: they decide the targets; the baselines' removals after
ROWS = ("oracle", *ACTION_ROWS, *BASELINE_ROWS)
DATASET_ROWS = {"digits": ROWS, "fashion_mnist": ("oracle", *ACTION_ROWS, "aum")}
SUMMARY_KEYS = ("row", "test_accuracy", "num_suspects", "num_flipped", "estimated", "num_removed", "num_relabelled",
                "num_downweighted", "labels_correct_after")


def cells(plan: dict, datasets: list[str], settings: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(dataset, noise, ratio) of every cell of ``datasets``, only those of ``settings`` ("noise:ratio") when given."""
    chosen = {"digits": GRID_SETTINGS, "fashion_mnist": FASHION_CELLS}
    return [(d, n, r) for d in datasets for n, r in chosen[d] if settings is None or f"{n}:{r}" in settings]


def job_clean(work: Path, plan: dict, dataset: str, seed: int, noise: str, ratio: str, row: str) -> None:
    """Retrain one run with one row's labels into its cache folder (cleanlab: only where the run has
    held-out probabilities)."""
    from mislabel.core.dynamics import load_dynamics
    from mislabel.reports.summary import write_summary
    from mislabel.scoring.baselines import aum, cleanlab, correctness
    from mislabel.scoring.cleaning import clean_labels, oracle_labels
    from mislabel.scoring.scores import top_suspects
    from mislabel.training.crossval import load_pred_probs
    from runner import Runner

    if cached(work, plan, dataset, seed, noise, ratio, row) is not None:
        return
    config = run_config(work, plan, dataset, seed, noise, ratio)
    dyn = load_dynamics(config.td_dir)
    held_out = load_pred_probs(config.td_dir, dyn)
    if row == "cleanlab" and held_out is None:
        return
    folder = config.stage_dir("bench_clean", row)
    with logged(work / "logs" / f"clean_{dataset}_{noise}{ratio}_s{seed}_{row}.log"):
        detector = detector_path(work, other_dataset(plan, dataset), DEFAULT_VARIANT)
        suspects = top_suspects(detector, dyn, "auto", pred_probs=None if held_out is None else held_out[0])
        if row == "oracle":
            cleaned = oracle_labels(suspects.summary, dyn.flipped)
            rows = np.flatnonzero(~cleaned.keep)
        elif row in ACTION_ROWS:
            rows = suspects.rows
            cleaned = clean_labels(suspects.summary, rows, row)
        else:
            scores = {"aum": lambda: aum(dyn), "correctness": lambda: correctness(dyn),
                      "cleanlab": lambda: cleanlab(held_out[0], dyn.assigned)}[row]()
            rows = np.argsort(-scores, kind="stable")[:len(suspects.rows)]
            cleaned = clean_labels(suspects.summary, rows, "remove")
        runner = Runner(config)
        with runner.claimed(folder):
            summary = {"row": row, "num_suspects": int(len(rows)), "num_flipped": int(dyn.flipped.sum()),
                       "estimated": suspects.count.estimate,
                       "flipped_share": float(dyn.flipped[rows].mean()) if len(rows) else None, **cleaned.describe(),
                       "labels_correct_after": float((cleaned.labels == dyn.true_labels)[cleaned.keep].mean()),
                       **runner.retrain_cleaned(folder, dyn, cleaned)}
            write_summary(folder, summary)


def cached(work: Path, plan: dict, dataset: str, seed: int, noise: str, ratio: str, row: str) -> dict | None:
    """A finished retraining's summary, or None."""
    from mislabel.reports.summary import read_summary

    return read_summary(run_config(work, plan, dataset, seed, noise, ratio).stage_dir("bench_clean", row))


def collect(work: Path, plan: dict) -> dict:
    """Every cached retraining of every cell (whatever this invocation ran), with phase 1's accuracy."""
    everything = cells(plan, ["digits", "fashion_mnist"])
    rows = []
    for d, n, r in everything:
        for s in plan["seeds"]:
            if (noisy := noisy_accuracy(work, plan, d, s, n, r)) is None:
                continue
            rows.append(dict(dataset=d, seed=s, noise=n, ratio=r, row="noisy", test_accuracy=noisy))
            rows += [dict(dataset=d, seed=s, noise=n, ratio=r, **{key: summary[key] for key in SUMMARY_KEYS})
                     for row in ROWS if (summary := cached(work, plan, d, s, n, r, row)) is not None]
    return dict(cells=everything, rows=rows)


def noisy_accuracy(work: Path, plan: dict, dataset: str, seed: int, noise: str, ratio: str) -> float | None:
    """Phase 1's test accuracy, or None when bench/detection.py has not run that phase 1."""
    from mislabel.reports.summary import read_summary

    summary = read_summary(run_config(work, plan, dataset, seed, noise, ratio).td_dir)
    return None if summary is None else float(summary["test_accuracy"])


def render(results: dict) -> str:
    """The markdown table: per cell, accuracy per row (mean ± std over seeds) and the gap each closes."""
    rows = results["rows"]
    table_rows = ["noisy", *ROWS]
    lines = [f"Command: `{results['command']}`. Machine: {results['machine']}; {results['seconds'] / 60:.0f} min "
             f"wall for {results['jobs']} retrainings ({results['reused']} cached). Test accuracy (%), mean ± std "
             "over the seeds, then (in brackets) the share of the noisy → oracle gap the row closes (ratio of means); "
             "count = mean estimated wrong labels / mean true flips.\n",
             "| dataset | noise | seeds | count (est. / true) | " + " | ".join(table_rows) + " |",
             "|---|---|---|---|" + "---|" * len(table_rows)]
    gaps: dict[str, list[tuple[float, bool, str]]] = {name: [] for name in ROWS[1:]}   # (gap, oracle >= 1, cell)
    losses: dict[str, list[str]] = {name: [] for name in ROWS[1:]}
    small: list[str] = []
    for dataset, noise, ratio in results["cells"]:
        mine = [r for r in rows if (r["dataset"], r["noise"], r["ratio"]) == (dataset, noise, ratio)]
        acc = {name: np.array([100 * r["test_accuracy"] for r in mine if r["row"] == name]) for name in table_rows}
        if not len(acc["noisy"]) or not len(acc["oracle"]):
            continue
        counts = [r for r in mine if r["row"] == "remove"]
        count = (f"{np.mean([r['estimated'] for r in counts]):,.0f} / "
                 f"{np.mean([r['num_flipped'] for r in counts]):,.0f}" if counts else "n/a")
        noisy, oracle = acc["noisy"].mean(), acc["oracle"].mean()
        gain = oracle - noisy
        label = f"{dataset} {noise} {ratio}"
        if gain < 1.0:
            small.append(f"{label} (oracle +{gain:.2f})")
        cells = []
        for name, values in acc.items():
            text = f"{values.mean():.2f} ± {values.std():.2f}" if len(values) else "n/a"
            if name in ROWS[1:] and len(values):
                gap = (values.mean() - noisy) / gain if gain > 0 else float("nan")
                gaps[name].append((gap, gain >= 1.0, label))
                if gain >= 1.0 and values.mean() < noisy - max(acc["noisy"].std(), values.std()):
                    losses[name].append(f"{label} ({values.mean() - noisy:+.2f})")
                text += f" ({gap:+.0%})" + ("" if len(values) == len(acc["noisy"]) else f" [{len(values)} seeds]")
            cells.append(text)
        lines.append(f"| {dataset} | {noise} {ratio} | {len(acc['noisy'])} | {count} | " + " | ".join(cells) + " |")
    lines.append("\nPer row: the mean gap closed over its cells, then over the cells where the oracle gains ≥ 1 "
                 "point; its worst cell; and the cells where the oracle gains ≥ 1 point but the row loses accuracy "
                 "by more than the seeds' std:")
    for name in ROWS[1:]:
        if gaps[name]:
            closed = np.array([gap for gap, _, _ in gaps[name]])
            large = [gap for gap, big, _ in gaps[name] if big]
            worst = min(gaps[name])
            lines.append(f"- {name}: {np.nanmean(closed):+.0%} over {len(closed)} cells, "
                         f"{np.nanmean(large) if large else float('nan'):+.0%} over the {len(large)} with oracle ≥ 1 "
                         f"point; worst {worst[2]} ({worst[0]:+.0%}); loses in: {', '.join(losses[name]) or 'none'}")
    lines.append(f"\nCells where the oracle itself gains under 1 point: {', '.join(small) or 'none'}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/mislabel_bench_detection", help="bench/detection.py's --workdir")
    parser.add_argument("--workers", type=int, default=2, help="parallel single-threaded jobs (default 2)")
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion_mnist"])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS, help="which retrainings to run")
    parser.add_argument("--settings", nargs="+", metavar="NOISE:RATIO", help="only these cells, e.g. uniform:0.2")
    parser.add_argument("--render", action="store_true", help="print the table of the cached retrainings only")
    args = parser.parse_args()
    plan = PLANS["full"]
    work = Path(args.workdir) / plan["name"]
    out = work / "cleaning_results.json"
    if args.render:
        last = json.loads(out.read_text()) if out.is_file() else dict(command="(partial)", machine=machine(),
                                                                      seconds=0.0, jobs=0, reused=0)
        print(render({**last, **collect(work, plan)}))
        return
    started = time.perf_counter()
    grid = [(d, s, n, r) for d, n, r in cells(plan, args.datasets, args.settings) for s in plan["seeds"]]
    jobs = [(job_clean, work, plan, *run, row) for row in args.rows for run in grid if row in DATASET_ROWS[run[0]]]
    reused = sum(cached(work, plan, *run, row) is not None for _, _, _, *run, row in jobs)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        run_stage(pool, "retraining", jobs)
    command = " ".join(["python bench/cleaning.py", *sys.argv[1:]])
    results = dict(command=command, machine=machine(), seconds=time.perf_counter() - started, jobs=len(jobs),
                   reused=reused, **collect(work, plan))
    out.write_text(json.dumps(results, indent=1))
    print(render(results))


if __name__ == "__main__":
    main()
