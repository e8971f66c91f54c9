"""Regimes in the detectors' corpus (issue 30): does a detector that has seen heads on frozen features,
short fine-tunes and plain loops rank those runs better than the shipped one, which learned from
from-scratch CNN runs only?

    python bench/pretrain_detectors.py --workers 1    # the shipped default's Fashion-MNIST corpus runs
    python bench/regimes.py --stage runs               # the regimes grid (seeds 1-3)
    python bench/regimes_corpus.py                     # source runs, the detector, the table
    python bench/regimes_corpus.py --write             # and puts the table into BENCHMARKS.md

Three detectors, each scored as ``rank`` scores with it, on the grid's runs (digits is the transfer the
shipped default is judged by: it never saw digits): "previous", the default shipped before (its gate over
plain AUM); "refitted", the default variant (bench/detection_plans.py) trained on the same corpus by
today's code (its gate over the agreement-weighted AUM, ``mislabel.scoring.summary``); "with regimes",
the same trained on that corpus plus regimes runs on Fashion-MNIST at a seed no grid run uses
(SOURCE_SEED) and noise rates no grid cell uses.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.regimes import (CACHE, TRAINERS, RunSpec, ensure_run, grid, load_seeding, previous_default,  # noqa: E402
                           run_folder)

# Regime runs at rates no cell of the grid uses: plain loops, heads on frozen ImageNet features (short and
# trained until they memorise), a head on and a fine-tune of a network pretrained on the other dataset;
# the EfficientNet fine-tune at two rates only (5-7 minutes a run on one core).
SOURCE_RUNS = tuple((regime, noise, ratio)
                    for regime in ("scratch_plain", "probe", "probe_long", "probe_other", "finetune_other")
                    for noise, ratio in (("uniform", 0.35), ("flip", 0.3), ("confusion", 0.2), ("idn", 0.4))
                    ) + (("finetune", "uniform", 0.35), ("finetune", "confusion", 0.2))
DETECTION_WORK = Path("/tmp/mislabel_bench_detection/full")   # bench/pretrain_detectors.py's default workdir
DETECTOR = CACHE / "detectors" / "with_regimes.pth.tar"


def source_specs() -> list[RunSpec]:
    """SOURCE_RUNS on Fashion-MNIST (the shipped default's dataset), at the corpus's seed."""
    from bench.detection_plans import SOURCE_SEED

    return [RunSpec(regime, "fashion_mnist", noise, ratio, SOURCE_SEED) for regime, noise, ratio in SOURCE_RUNS]


def shipped_corpus() -> list[str]:
    """The run folders the shipped default learned from (bench/detection.py's Fashion-MNIST corpus)."""
    from bench.detection import source_folders
    from bench.detection_plans import DEFAULT_VARIANT, PLANS, VARIANTS

    folders = source_folders(DETECTION_WORK, PLANS["full"], "fashion_mnist", VARIANTS[DEFAULT_VARIANT]["sources"])
    missing = [f for f in folders if not (Path(f) / "training_dynamics.npz").is_file()]
    if missing:
        sys.exit(f"error: {len(missing)} corpus runs are missing (e.g. {missing[0]}); "
                 "run python bench/pretrain_detectors.py --workers 1 first")
    return folders


def train_with_regimes() -> Path:
    from bench.detection import variant_recipe
    from bench.detection_plans import DEFAULT_VARIANT, VARIANTS
    from mislabel.scoring.detector_training import train_detector

    if DETECTOR.is_file():
        return DETECTOR
    data_cache: dict = {}
    folders = shipped_corpus() + [str(ensure_run(spec, data_cache)) for spec in source_specs()]
    DETECTOR.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_detector(folders, variant_recipe(VARIANTS[DEFAULT_VARIANT]), out=DETECTOR, overwrite=True)
    print(f"with_regimes detector: {len(folders)} runs, {time.perf_counter() - started:.0f} s", flush=True)
    return DETECTOR


def default_auc(spec: RunSpec, detector: Path | None) -> float:
    """The default score's AUC (rank, unseeded view) with ``detector`` on the run's unseeded rows."""
    from mislabel import rank
    from mislabel.scoring.metrics import detection_metrics

    noisy, true, seeds = load_seeding(spec)
    table = rank(run_folder(spec), detector=detector, methods=("detector",)).sort_values("index")
    rows = ~np.isin(table["index"].to_numpy(), seeds.indices)
    real = (noisy != true)[table["index"].to_numpy()][rows]
    return detection_metrics(table["detector"].to_numpy()[rows], real)["auc"]


def best_other(spec: RunSpec) -> float:
    """The best other score's AUC, from bench/regimes.py's report (its evaluation.json of the run)."""
    from bench.regimes_report import SHOWN
    numbers = json.loads((run_folder(spec) / "evaluation.json").read_text())
    return max(numbers[f"auc {name}"] for name in SHOWN if name != "detector")


def table(specs: list[RunSpec], detectors: dict[str, Path | None]) -> str:
    """Per cell, each detector's default AUC and how far it falls short of the best other score."""
    rows = [{"regime": s.regime, "data": s.dataset, "noise": f"{s.noise} {s.ratio}", "best other": best_other(s),
             **{name: default_auc(s, path) for name, path in detectors.items()}} for s in specs]
    cells = pd.DataFrame(rows).groupby(["regime", "data", "noise"], sort=False).mean()
    short = {name: (cells["best other"] - cells[name]).clip(lower=0) for name in detectors}
    lines = ["| regime | data | noise | " + " | ".join(detectors) + " | best other | "
             + " | ".join(f"{name} short by" for name in detectors) + " |",
             "|---|---|---|" + "---|" * (2 * len(detectors) + 1)]
    for key, cell in cells.iterrows():
        lines.append("| " + " | ".join(key) + " | " + " | ".join(f"{cell[name]:.3f}" for name in detectors)
                     + f" | {cell['best other']:.3f} | " + " | ".join(f"{short[name][key]:.3f}" for name in detectors)
                     + " |")
    summary = []
    for data in ("digits", "fashion_mnist"):
        part = cells.index.get_level_values("data") == data
        summary.append(f"{data}: " + "; ".join(
            f"{name} mean AUC {cells[name][part].mean():.4f}, worst cell short by {short[name][part].max():.3f}, "
            f"within 0.005 in {int((short[name][part] <= 0.005).sum())} of {int(part.sum())}" for name in detectors))
    return "\n".join(lines) + "\n\n" + "  \n".join(summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="put the table into BENCHMARKS.md")
    parser.add_argument("--regimes", nargs="+", default=list(TRAINERS))
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion_mnist"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    args = parser.parse_args()
    detectors = {"previous": previous_default(),
                 "refitted": DETECTION_WORK / "detectors" / "fashion_mnist_gated.pth.tar",
                 "with regimes": train_with_regimes()}
    specs = [s for s in grid(args.regimes, args.datasets, args.seeds) if (run_folder(s) / "evaluation.json").is_file()]
    from bench.common import machine
    text = (f"{machine()}  \nCommand: `python bench/regimes_corpus.py {' '.join(sys.argv[1:])}` (after the two "
            f"commands in its docstring); {len(specs)} grid runs; AUC of the default score (`rank`, no seeds) on "
            "the unseeded rows, mean over seeds.\n\n" + table(specs, detectors))
    print(text)
    if args.write:
        from bench.common import replace_section
        replace_section(ROOT / "BENCHMARKS.md", "regimes-corpus", text + "\n")


if __name__ == "__main__":
    main()
