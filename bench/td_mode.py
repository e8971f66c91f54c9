"""Which --td_mode to default to: record from the training pass (train) or an extra clean pass (eval)?

For each mode: phase 1 on a detector-training run (seed 1, 30% uniform noise) and on a run the
detector never sees (seed 2, 20% flip noise), the LSTM detector trained on the first and scored
on the second, and every baseline of mislabel.scoring.baselines scored on the second. Prints a
markdown table (AUC on the unseen run; wall time of its phase 1) for BENCHMARKS.md.

    python bench/td_mode.py --dataset digits --net_type conv4 --depth 4 --num_epochs 20
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

from mislabel.scoring.baselines import BASELINES
from mislabel.scoring.lstm import load_detector
from mislabel.scoring.metrics import detection_metrics
from mislabel.scoring.predict import get_order
from mislabel.commands.cli import check_args
from mislabel.core.dynamics import load_dynamics
from common import cpu_name

ROOT = Path(__file__).resolve().parents[1]

RUNS = {"detector": ("1", "0.3", "uniform"), "unseen": ("2", "0.2", "flip")}


def phase1(results: Path, mode: str, seed: str, ratio: str, noise: str, args: argparse.Namespace) -> tuple[Path, float]:
    flags = ["generate_td", "--dataset", args.dataset, "--seed", seed, "--noise_ratio", ratio, "--noise_type", noise,
             "--net_type", args.net_type, "--depth", str(args.depth), "--num_epochs", str(args.num_epochs),
             "--td_mode", mode, "--device", args.device, "--results_dir", str(results), *args.extra]
    if args.datadir:
        flags += ["--datadir", args.datadir]
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "runner.py"), *flags], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return check_args(flags).config.td_dir, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--datadir", default=None)
    parser.add_argument("--net_type", default="conv4")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--num_epochs", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more runner.py flags")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for mode in ("train", "eval"):
            results = Path(scratch) / mode
            detector_run, _ = phase1(results, mode, *RUNS["detector"], args)
            unseen_run, seconds = phase1(results, mode, *RUNS["unseen"], args)
            detector = Path(scratch) / f"{mode}.pth.tar"
            subprocess.run([sys.executable, str(ROOT / "train_detector.py"), "--r", "0.3", "--dataset", args.dataset,
                            "--files_path", str(detector_run), "--out", str(detector), "--device", args.device],
                           check=True, capture_output=True, text=True)
            dyn = load_dynamics(unseen_run)
            aucs = {"detector": get_order(*load_detector(detector), dyn).auc}
            aucs.update({name: detection_metrics(score(dyn), dyn.flipped)["auc"] for name, score in BASELINES.items()})
            rows.append((mode, seconds, aucs))
    names = list(rows[0][2])
    print(f"machine: {os.cpu_count()} CPUs, {cpu_name()}")
    print("| td_mode | phase-1 wall s (unseen run) | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for mode, seconds, aucs in rows:
        print(f"| {mode} | {seconds:.1f} | " + " | ".join(f"{aucs[name]:.4f}" for name in names) + " |")


if __name__ == "__main__":
    main()
