"""What ``find_issues --budget`` costs in detection, at Fashion-MNIST scale.

Fashion-MNIST's training images (all 60,000, or the first ``--limit`` of a fixed permutation) are
written as a class-folder tree of PNG files, ``<class>/<index>.png``, with 20% of the labels
replaced as a user's folder would hold them (``uniform``: another class uniformly; ``flip``: class
c -> c+1), drawn by ``mislabel.data.noise.corrupt_labels`` from a fixed seed, so every rerun writes the
same tree. ``find_issues`` then runs on each tree twice, with the default budget and with
``--budget 0`` (the full recipe), each in a fresh process whose wall time (scan, training,
scoring, report: the whole command) and peak resident memory (``getrusage`` of its children) are
measured. Detection is scored against the known replacements: AUC and mAP of the default score
and of the best baseline column of ``suspects.csv``. The table goes into BENCHMARKS.md between
this script's markers.

    OMP_NUM_THREADS=2 python bench/find_issues_scale.py     # 60,000 images: ~3 h (full recipe ~70 min a noise type)
    OMP_NUM_THREADS=2 python bench/find_issues_scale.py --full    # the default-budget runs alone: ~20 min
    OMP_NUM_THREADS=1 python bench/find_issues_scale.py --noise flip --full flip --only_full   # one full run
    OMP_NUM_THREADS=1 python bench/find_issues_scale.py --limit 2000 --budget 1 --full_budget 2 --no_write

The full 60,000-image measurement needs an otherwise idle machine (wall time is the result).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from common import replace_section
from mislabel.scoring.baselines import BASELINES
from mislabel.scoring.metrics import detection_metrics
from mislabel.training.budget import DEFAULT_BUDGET_MINUTES
from mislabel.data.formats import FASHION_MNIST_SYSTEM_DIR, read_idx
from mislabel.data.noise import corrupt_labels

ROOT = Path(__file__).resolve().parents[1]

NOISE_RATIO = 0.2
NOISE_SEED = 1
CLASS_NAMES = ("tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
               "ankle_boot")
SECTION = "find-issues-scale"
DONE = "tree.json"   # written last: the tree is complete

# The child process runs the command and reports its own children's peak RSS, so each
# measurement covers exactly one find_issues run (getrusage of children is a running maximum).
_MEASURE = ("import json, resource, subprocess, sys\n"
            "code = subprocess.run(sys.argv[2:]).returncode\n"
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "open(sys.argv[1], 'w').write(json.dumps({'returncode': code, 'peak_rss_kib': peak}))\n")


def write_tree(work: Path, limit: int, noise: str) -> tuple[Path, dict[str, bool]]:
    """The PNG tree of ``limit`` training images with ``noise`` labels; returns it and, per
    relative path, whether its label was replaced. Reused when already complete."""
    root = work / f"fashion{limit}_{noise}{NOISE_RATIO:g}"
    if (root.parent / f"{root.name}.{DONE}").is_file():
        return root, json.loads((root.parent / f"{root.name}.{DONE}").read_text())
    images = read_idx(FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_SYSTEM_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    rows = np.sort(np.random.default_rng(0).permutation(len(labels))[:limit])
    assigned = corrupt_labels(labels[rows], len(CLASS_NAMES), NOISE_RATIO, noise, NOISE_SEED, "fashion_mnist")
    replaced = {}
    for row, label, true in tqdm(zip(rows, assigned, labels[rows]), total=len(rows), desc=f"writing {root.name}",
                                 unit="img", mininterval=10):
        relative = f"{CLASS_NAMES[label]}/{row:05d}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[row]).save(root / relative)
        replaced[relative] = bool(label != true)
    (root.parent / f"{root.name}.{DONE}").write_text(json.dumps(replaced))
    return root, replaced


def run_find_issues(data: Path, out: Path, budget: float, extra: list[str]) -> dict:
    """One find_issues command in a fresh process: wall seconds, peak RSS, its plan and metrics.
    A finished measurement is kept beside the run and reused (a rerun would only time rescoring)."""
    measured = out.parent / f"{out.name}.measured.json"
    if measured.is_file():
        return json.loads(measured.read_text())
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "mislabel.commands.find_issues", str(data), "--out", str(out),
               "--budget", str(budget), "--no_hflip", *extra]
    report = out.parent / f"{out.name}.rusage.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    with open(out.parent / f"{out.name}.log", "w") as log:
        subprocess.run([sys.executable, "-c", _MEASURE, str(report), *command], cwd=ROOT, env=env, stdout=log,
                       stderr=subprocess.STDOUT, check=False)
    seconds = time.monotonic() - started
    usage = json.loads(report.read_text())
    if usage["returncode"] != 0:
        raise SystemExit(f"find_issues failed (exit {usage['returncode']}); see {out.parent / f'{out.name}.log'}")
    record = json.loads((out / "find_issues.json").read_text())
    result = {"seconds": seconds, "peak_rss_gib": usage["peak_rss_kib"] / 2**20, "plan": record["plan"],
              "predicted_seconds": record.get("predicted_seconds")}
    measured.write_text(json.dumps(result))
    return result


def detection(out: Path, replaced: dict[str, bool]) -> dict:
    """AUC/mAP of the default score and of the best baseline (by AUC) against the replaced labels."""
    table = pd.read_csv(out / "suspects.csv", keep_default_na=False)
    truth = table["path"].map(replaced).to_numpy(dtype=bool)
    score = detection_metrics(table["score"].to_numpy(), truth)
    baselines = {name: detection_metrics(table[name].to_numpy(), truth) for name in BASELINES if name in table}
    best = max(baselines, key=lambda name: baselines[name]["auc"])
    return {"auc": score["auc"], "map": score["map"], "best_baseline": best,
            "baseline_auc": baselines[best]["auc"], "baseline_map": baselines[best]["map"]}


def render(results: list[dict], limit: int, budget: float, command: str, only_full: bool = False) -> str:
    title = "the full recipe" if only_full else "default budget vs full recipe"
    lines = [f"## find_issues at Fashion-MNIST scale: {title} ({limit:,} images)", "",
             f"`{command}` on {platform.node()} ({os.cpu_count()} cores, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}). Each run is a whole `find_issues` command (scan, "
             f"training, scoring, report) on a class-folder tree of {limit:,} 28 px PNG files with "
             f"{NOISE_RATIO:.0%} replaced labels; AUC/mAP against the replacements.", "",
             "| noise | budget | recipe | wall | predicted | peak RSS | AUC | mAP | best baseline | its AUC "
             "| its mAP |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        plan = r["plan"]
        recipe = f"{plan['net_type']}{plan['depth']}, {plan['epochs']} ep, {plan['image_size']}px"
        predicted = "-" if r["predicted_seconds"] is None else f"{r['predicted_seconds'] / 60:.1f} min"
        label = "full (`--budget 0`)" if r["budget"] == 0 else f"{r['budget']:g} min"
        lines.append(f"| {r['noise']} | {label} | {recipe} | {r['seconds'] / 60:.1f} min | {predicted} | "
                     f"{r['peak_rss_gib']:.2f} GiB | {r['auc']:.4f} | {r['map']:.4f} | {r['best_baseline']} | "
                     f"{r['baseline_auc']:.4f} | {r['baseline_map']:.4f} |")
    by_noise = {}
    for r in results:
        by_noise.setdefault(r["noise"], {})[r["budget"] == 0] = r
    lines.append("")
    for noise, pair in by_noise.items():
        if len(pair) == 2:
            gap = pair[True]["auc"] - pair[False]["auc"]
            lines.append(f"- {noise}: the {budget:g}-minute default took {pair[False]['seconds'] / 60:.1f} min vs "
                         f"{pair[True]['seconds'] / 60:.1f} min for the full recipe; AUC {gap:+.4f} behind it "
                         f"(target: <= 20 min and within 0.01).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=60_000, help="use only this many training images")
    parser.add_argument("--noise", nargs="+", default=["uniform", "flip"], choices=("uniform", "flip"))
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_MINUTES, help="the budgeted run's minutes")
    parser.add_argument("--full_budget", type=float, default=0.0,
                        help="the reference run's --budget (0 = the full recipe; a small value to test this script)")
    parser.add_argument("--full", nargs="*", default=None, choices=("uniform", "flip"),
                        help="noise types that also get the full-recipe run (default: every --noise; none "
                             "after a bare --full: the full recipe is over an hour a noise type on 2 CPU cores)")
    parser.add_argument("--only_full", action="store_true",
                        help="run only the full-recipe measurements (of --full's noise types) into a section of "
                             "their own, beside an earlier default-budget table")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mislabel_bench_find_issues"),
                        help="PNG trees, runs, logs")
    parser.add_argument("--no_write", action="store_true", help="print the section instead of updating BENCHMARKS.md")
    parser.add_argument("extra", nargs="*", help="further find_issues flags (after --)")
    args = parser.parse_args()
    if not 100 <= args.limit <= 60_000:
        raise SystemExit("--limit must be between 100 and 60000")
    results = []
    for noise in args.noise:
        data, replaced = write_tree(args.workdir, args.limit, noise)
        full = args.full is None or noise in args.full
        budgets = (args.budget, args.full_budget) if full else (args.budget,)
        for budget in budgets[1:] if args.only_full else budgets:
            out = args.workdir / "runs" / f"{data.name}_budget{budget:g}"
            measured = run_find_issues(data, out, budget, args.extra)
            results.append({"noise": noise, "budget": budget, **measured, **detection(out, replaced)})
            print(json.dumps(results[-1]), flush=True)
    command = "python bench/find_issues_scale.py " + " ".join(sys.argv[1:])
    section = render(results, args.limit, args.budget, command.strip(), args.only_full)
    missing = [noise for noise in args.noise if args.full is not None and noise not in args.full]
    if missing and not args.only_full:
        section += (f"\nThe full recipe (`--budget 0`) was not run for {' and '.join(missing)} noise, so the AUC gap "
                    "the target names is not measured there; `python bench/find_issues_scale.py` runs both.\n")
    if args.no_write:
        print(section)
    else:
        key = SECTION if args.limit == 60_000 else f"{SECTION}-{args.limit}"
        replace_section(ROOT / "BENCHMARKS.md", f"{key}-full" if args.only_full else key, section)
        print(f"updated {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
