"""Benchmark: DivideMix without label repair vs with 5% and 10% detector-guided repair.

    python bench/dividemix.py            # digits and Fashion-MNIST, 40% symmetric noise, seeds 0 1 2
    python bench/dividemix.py --quick    # digits only, seed 0, short runs: minutes on two CPU cores
    python bench/dividemix.py --noise_type flip --noise 0.45   # class-pair noise near its breaking point

Per dataset and seed: phase 1 (generate_td) on the noisy labels gives the dynamics to rank; one
LSTM detector, trained once on a *different* noisy digits run (seed 100, 30% uniform, as in
`./run.sh demo`), ranks them (on Fashion-MNIST it is a transfer, the paper's setting); repair uses
the true labels (synthetic noise); DivideMix then trains on the noisy labels and on each repaired
set. Prints a markdown table of test accuracy (the last epoch's, mean ± std over seeds) and writes
it with every run's numbers to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from data_debug_dm import train as dividemix_train
from fashion_subset import prepare_fashion_subset
from mislabel.scoring.detector_training import train_detector
from mislabel.training.loop import Recipe
from runner import Runner, RunConfig
from mislabel.core.files import atomic_write

# Short recipes: the point is the comparison between label sets, not the best absolute accuracy.
FULL = dict(datasets=["digits", "fashion_mnist"], seeds=[0, 1, 2], td_epochs=30, dm_epochs=60, warm_up=10)
QUICK = dict(datasets=["digits"], seeds=[0], td_epochs=20, dm_epochs=12, warm_up=4)


@dataclass(frozen=True)
class DataPlan:
    """Network and optimiser per dataset; epoch counts here override the plan's when set."""
    net_type: str
    depth: int
    lr: float = 0.1            # phase 1 (SGD); DivideMix keeps its own default unless dm_lr is set
    batch_size: int = 128      # phase 1
    dm_lr: float | None = None
    td_epochs: int | None = None
    dm_epochs: int | None = None
    warm_up: int | None = None


# conv4 (batch norm) reaches ~97% on clean digits in seconds, but one DivideMix epoch on 28x28
# images costs over a minute on a CPU core; LeNet-5 costs a few seconds on 3,000 Fashion-MNIST
# images. LeNet has no batch norm: it needs lr 0.05 (batch 64) to learn under 40% noise, as in
# bench/detection.py, and DivideMix's CIFAR lr 0.02 left it near 25% after the warm-up.
DATA = {"digits": DataPlan("conv4", 4),
        "fashion_mnist": DataPlan("lenet_mnist", 5, lr=0.05, batch_size=64, dm_lr=0.05,
                                  td_epochs=25, dm_epochs=30, warm_up=5)}
FASHION_SUBSET = 3_000  # images of the 60,000 (bench/fashion_subset.py); the full 10,000-image test set


def phase1(dataset: str, datadir: str, seed: int, noise: str, noise_type: str, epochs: int, out: Path) -> Path:
    data = DATA[dataset]
    config = RunConfig(dataset=dataset, datadir=datadir, seed=seed, noise_ratio=noise, noise_type=noise_type,
                       device="auto", results_dir=str(out), overwrite=True, net_type=data.net_type, depth=data.depth,
                       recipe=Recipe(epochs=epochs, batch_size=data.batch_size, lr=data.lr))
    return Runner(config).train_for_td_computation()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits, seed 0, short runs")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    parser.add_argument("--datasets", nargs="+", help="override the datasets")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--noise", default="0.4", help="noise ratio of the runs DivideMix trains on")
    parser.add_argument("--noise_type", default="uniform",
                        help="phase 1's noise type (uniform, flip, semantic, idn, confusion); DivideMix gets the same")
    parser.add_argument("--fashion_subset", type=int, default=FASHION_SUBSET,
                        help="train on this many Fashion-MNIST images (a fixed subset); 0 = all 60,000 from --datadir")
    parser.add_argument("--datadir", default=str(Path(__file__).resolve().parents[1]),
                        help="with --fashion_subset 0: folder with fashion_mnist/ (else the Debian system copy)")
    parser.add_argument("--out", default="bench_results/dividemix")
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    plan.update({key: value for key, value in (("seeds", args.seeds), ("datasets", args.datasets)) if value})
    out = Path(args.out)
    datadirs = {dataset: args.datadir for dataset in plan["datasets"]}
    if "fashion_mnist" in datadirs and args.fashion_subset:
        prepare_fashion_subset(out / f"fashion{args.fashion_subset}", args.fashion_subset)
        datadirs["fashion_mnist"] = str(out / f"fashion{args.fashion_subset}" / "data")

    detector_run = phase1("digits", args.datadir, 100, "0.3", "uniform", plan["td_epochs"], out / "detector_run")
    detector = out / "digits_0.3_lstm_detector.pth.tar"
    train_detector([detector_run], out=detector, overwrite=True)

    results = []
    for dataset in plan["datasets"]:
        data = DATA[dataset]
        epochs = {key: getattr(data, key) or plan[key] for key in ("td_epochs", "dm_epochs", "warm_up")}
        for seed in plan["seeds"]:
            td_dir = phase1(dataset, datadirs[dataset], seed, args.noise, args.noise_type, epochs["td_epochs"], out)
            common = ["--dataset", dataset, "--data_path", datadirs[dataset], "--seed", str(seed), "--r", args.noise,
                      "--noise_mode", args.noise_type, "--net_type", data.net_type, "--depth", str(data.depth),
                      "--num_epochs", str(epochs["dm_epochs"]), "--warm_up", str(epochs["warm_up"]),
                      "--results_dir", str(out), "--overwrite"] + (["--lr", str(data.dm_lr)] if data.dm_lr else [])
            variants = [("none", [])] + [(f"{ratio:g}", ["--repair_ratio", f"{ratio:g}", "--td_dir", str(td_dir),
                                                          "--detector_file", str(detector)])
                                         for ratio in args.ratios]
            for name, extra in variants:
                folder = dividemix_train.run(common + extra)
                summary = json.loads((folder / "summary.json").read_text())
                results.append({"dataset": dataset, "seed": seed, "repair": name,
                                "test_accuracy": summary["test_accuracy"],
                                "test_accuracy_last10_mean": summary["test_accuracy_last10_mean"],
                                "training_labels_correct": summary["training_labels_correct"],
                                "labels_fixed": (summary["repair"] or {}).get("num_now_correct", 0)})
    lines = ["| dataset | repair | test acc. (last epoch) | labels correct | labels fixed | seeds |",
             "|---|---|---|---|---|---|"]
    for dataset in plan["datasets"]:
        for name in ["none"] + [f"{ratio:g}" for ratio in args.ratios]:
            rows = [r for r in results if r["dataset"] == dataset and r["repair"] == name]
            acc = np.array([r["test_accuracy"] for r in rows]) * 100
            correct = np.mean([r["training_labels_correct"] for r in rows]) * 100
            fixed = np.mean([r["labels_fixed"] for r in rows])
            lines.append(f"| {dataset} | {name} | {acc.mean():.2f} ± {acc.std():.2f} | {correct:.1f}% | "
                         f"{fixed:.1f} | {len(rows)} |")
    table = "\n".join(lines)
    print(table)
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(json.dumps(
        {"plan": plan, "noise": args.noise, "noise_type": args.noise_type,
         "data": {name: asdict(DATA[name]) for name in plan["datasets"]},
         "fashion_subset": args.fashion_subset, "results": results}, indent=2) + "\n"))
    atomic_write(out / "table.md", lambda tmp: Path(tmp).write_text(table + "\n"))


if __name__ == "__main__":
    main()
