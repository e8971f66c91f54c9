"""What ``find_issues --backbone efficientnet_lite0 --mode probe`` costs at Fashion-MNIST scale.

The class-folder tree of ``bench/find_issues_scale.py`` (60,000 28 px PNG files, 20% of the labels
replaced; the same tree, reused when written) goes through one whole probe-mode find_issues
command in a fresh process, features included (the side the plan picks for 28 px images, 64 px);
then a rerun in a second output folder holding the first run's feature cache and scan (as a
rerun of the same command would find them; phase 1 and everything after it run again). Wall time,
peak RSS and AUC/mAP of the default score and of the best baseline against the replacements.
``--scratch`` adds the from-scratch recipe the default budget picks for the same tree (~20 min).

    OMP_NUM_THREADS=2 python bench/backbone_speed.py               # ~8 min on the 2-core CPU
    OMP_NUM_THREADS=1 python bench/backbone_speed.py --limit 2000 --no_write
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import replace_section  # noqa: E402
from find_issues_scale import detection, run_find_issues, write_tree  # noqa: E402
from mislabel.training.budget import DEFAULT_BUDGET_MINUTES  # noqa: E402

BACKBONE = "efficientnet_lite0"
SECTION = "backbone-speed"


def render(rows: list[dict], limit: int, command: str) -> str:
    lines = [f"## find_issues with a pretrained backbone: probe mode on {limit:,} Fashion-MNIST images", "",
             f"`{command}` on {platform.node()} ({os.cpu_count()} cores, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}). Whole `find_issues` commands (scan, features, "
             "training, scoring, report) on the class-folder tree of `bench/find_issues_scale.py` (28 px PNG "
             "files, 20% replaced labels); AUC/mAP against the replacements.", "",
             "| noise | run | recipe | wall | predicted | peak RSS | AUC | mAP | best baseline | its AUC | its mAP |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        plan = r["plan"]
        recipe = (f"{plan['backbone']} {plan['mode']} {plan['image_size']}px, {plan['net_type']}{plan['depth']} "
                  f"head, {plan['epochs']} ep" if plan.get("backbone") else
                  f"{plan['net_type']}{plan['depth']}, {plan['epochs']} ep, {plan['image_size']}px")
        predicted = "-" if r["predicted_seconds"] is None else f"{r['predicted_seconds'] / 60:.1f} min"
        lines.append(f"| {r['noise']} | {r['run']} | {recipe} | {r['seconds'] / 60:.1f} min | {predicted} | "
                     f"{r['peak_rss_gib']:.2f} GiB | {r['auc']:.4f} | {r['map']:.4f} | {r['best_baseline']} | "
                     f"{r['baseline_auc']:.4f} | {r['baseline_map']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=60_000, help="use only this many training images")
    parser.add_argument("--noise", nargs="+", default=["uniform"], choices=("uniform", "flip"))
    parser.add_argument("--scratch", action="store_true", help="also the default budget's from-scratch recipe")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mislabel_bench_find_issues"),
                        help="PNG trees (shared with bench/find_issues_scale.py), runs, logs")
    parser.add_argument("--no_write", action="store_true", help="print the section instead of updating BENCHMARKS.md")
    args = parser.parse_args()
    rows = []
    for noise in args.noise:
        data, replaced = write_tree(args.workdir, args.limit, noise)
        first = args.workdir / "runs" / f"{data.name}_{BACKBONE}_probe"
        probe = ["--backbone", BACKBONE, "--device", "cpu"]
        runs = [("features included", first, probe)]
        rerun = args.workdir / "runs" / f"{data.name}_{BACKBONE}_probe_rerun"
        runs.append(("rerun, features cached", rerun, probe))
        if args.scratch:
            runs.append((f"from scratch, --budget {DEFAULT_BUDGET_MINUTES:g}", args.workdir / "runs" /
                         f"{data.name}_budget{DEFAULT_BUDGET_MINUTES:g}", ["--device", "cpu"]))
        for name, out, extra in runs:
            if out == rerun and not rerun.exists():  # what a rerun of the first command finds
                (rerun / "phase1").mkdir(parents=True)
                shutil.copy(first / "scan.json", rerun / "scan.json")
                for cache in (first / "phase1").glob("features_*.npz"):
                    shutil.copy(cache, rerun / "phase1" / cache.name)
            budget = DEFAULT_BUDGET_MINUTES if "--backbone" not in extra else 0.0
            measured = run_find_issues(data, out, budget, extra)
            rows.append({"noise": noise, "run": name, **measured, **detection(out, replaced)})
            print(rows[-1], flush=True)
    command = ("OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " python bench/backbone_speed.py " +
               " ".join(sys.argv[1:])).strip()
    section = render(rows, args.limit, command)
    if args.no_write:
        print(section)
    else:
        replace_section(ROOT / "BENCHMARKS.md", SECTION if args.limit == 60_000 else f"{SECTION}-{args.limit}",
                        section)
        print(f"updated {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
