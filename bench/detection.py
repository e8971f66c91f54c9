"""Detection benchmark on real data: noise grid x seeds, transfer, learned control, denoising; writes BENCHMARKS.md.

    python bench/detection.py --quick      # one seed, three noise settings, small runs
    python bench/detection.py              # the full grid (PLANS["full"]): about 2 hours on 2 cores
    python bench/detection.py --no_denoise # the same without the denoising retrainings: about 1 hour

For each dataset (digits, fashion_mnist) phase 1 runs on every (noise, seed) of the plan, once with
the grid's recipe and once with find_issues' own (FIND_ISSUES_RECIPES). Detectors
(one per VARIANTS entry) and the learned control (logistic regression on the baselines' scores,
fitted on exactly the default variant's source runs) are trained on each dataset's source runs
(seed SOURCE_SEED: the broad CORPUS of noise types, rates, networks and run lengths), and each
evaluated run is scored by every baseline and by the detectors and control trained on the *other*
dataset: the shipped default is never evaluated on a dataset it saw. Each run is then denoised:
the default detector estimates how many labels are wrong (remove_ratio auto) and removes that many;
AUM and correctness remove the same number; the oracle removes exactly the flips; all retrained by
the Runner's own loop. Runs and detectors are cached under --workdir/<plan>/ (a rerun only does what
is missing; --fresh starts over), results go to results.json there, and the markdown sections go
into BENCHMARKS.md between this script's markers. Every method is scored through the library's one
scoring path, ``mislabel.scoring.scores.score``; the tables are rendered by bench/detection_report.py
(``--render results.json`` re-renders them without retraining).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: one thread per worker process

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from common import logged, machine, replace_section, run_stage  # noqa: E402
from detection_report import render_sections  # noqa: E402
from fashion_subset import prepare_fashion_subset, subset_folder  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Plans: what runs where, and why
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataPlan:
    net_type: str
    depth: int
    epochs: int
    train_subset: int | None = None  # fashion_mnist: this many of the 60,000 training images
    batch_size: int = 128
    lr: float = 0.1
    td_mode: str = "train"
    classes: tuple[int, ...] | None = None  # fashion_mnist: only these classes, relabelled 0..k-1


# conv4 learns 8x8 digits to ~97% in seconds but costs ~12 s/epoch on 28x28 images on one core;
# LeNet-5 is ~2 s/epoch on 10,000 Fashion-MNIST images. LeNet has no batch norm: at lr 0.1 it
# stalls near chance under 40% noise, at 0.05 with batch 64 it learns in a few hundred steps.
# Different lengths (60 vs 25 epochs) and models on the two datasets are on purpose: transfer
# must survive both.
DIGITS = DataPlan("conv4", 4, 60)
FASHION = DataPlan("lenet_mnist", 5, 25, 10_000, batch_size=64, lr=0.05)
GRID_SETTINGS = (("uniform", "0.2"), ("uniform", "0.4"), ("flip", "0.2"), ("flip", "0.4"), ("semantic", "0.4"),
                 ("idn", "0.2"), ("idn", "0.4"), ("confusion", "0.2"), ("confusion", "0.4"))
HARD_SETTINGS = (("flip", "0.4"), ("semantic", "0.4"), ("idn", "0.4"), ("confusion", "0.4"))
# find_issues' own recipes for these sets, as its ladder picks them (mislabel.training.plan and
# .budget on the CPU cost table): digits at the default 20-minute budget gets the full recipe,
# ResNet-20 for 30 epochs at batch 64 and lr 0.05; the 10,000 Fashion-MNIST images at a budget of
# 2-5 minutes get LeNet-5 for 20 epochs at batch 128 and lr 0.1 (the full recipe, ResNet-20 at 16
# minutes a run, is too slow for 27 runs here). Trained at the images' own size (find_issues would
# upscale digits to 16 px and Fashion-MNIST to 32 px). Users meet the detector in these runs, so
# the grid is scored on them too: the same settings and seeds, the same detectors.
FIND_ISSUES_RECIPES = {"digits": DataPlan("resnet", 20, 30, batch_size=64, lr=0.05),
                       "fashion_mnist": DataPlan("lenet", 5, 20, 10_000, batch_size=128, lr=0.1)}
PLANS = {
    "full": dict(name="full", seeds=(1, 2, 3), settings=GRID_SETTINGS, data={"digits": DIGITS, "fashion_mnist": FASHION},
                 recipes=FIND_ISSUES_RECIPES, detector_epochs=10, cleanlab=("digits",)),
    "quick": dict(name="quick", seeds=(1,), settings=(("uniform", "0.4"), ("flip", "0.4"), ("idn", "0.4")),
                  data={"digits": DataPlan("conv4", 4, 30),
                        "fashion_mnist": DataPlan("lenet_mnist", 5, 15, 3_000, batch_size=64, lr=0.05)},
                  recipes={}, detector_epochs=8, cleanlab=()),
}
SOURCE_SEED = 100                                   # detectors never see an evaluated run
CLEANLAB_FOLDS = 4


@dataclass(frozen=True)
class SourceRun:
    """One phase-1 run a detector (and the learned control) learns from; ``plan`` None = the dataset's
    grid recipe. Source runs use SOURCE_SEED, so no evaluated run's noise draw is ever seen."""
    noise: str
    ratio: str
    plan: DataPlan | None = None


# The paper's detector learns from one run (uniform 0.3). MIX4 is the previous default's four runs,
# bracketing the grid's 0.2 and 0.4 (flip stops at 0.45: at 0.5 a flipped pair is a coin toss).
PAPER_SOURCE = (SourceRun("uniform", "0.3"),)
MIX4 = (SourceRun("uniform", "0.3"), SourceRun("uniform", "0.5"), SourceRun("flip", "0.3"), SourceRun("flip", "0.45"))
# The broad corpus: MIX4 plus every noise type at rates 0.05-0.5, networks of two or three sizes,
# runs of 15-60 epochs and one run recorded in eval mode, so that no single recipe, noise model or
# length is what the detector learns. No grid cell's (type, rate) is repeated with a grid recipe.
_EASY = (1, 2, 3, 5, 8)
CORPUS = {
    "digits": MIX4 + (
        SourceRun("uniform", "0.1", DataPlan("lenet", 5, 40)),
        SourceRun("uniform", "0.05", DataPlan("resnet", 20, 30)),
        SourceRun("flip", "0.15", DataPlan("lenet", 5, 40)),
        SourceRun("semantic", "0.25", DataPlan("conv4", 4, 30)),
        SourceRun("semantic", "0.35", DataPlan("resnet", 20, 30)),
        SourceRun("semantic", "0.5", DataPlan("lenet", 5, 40)),
        SourceRun("idn", "0.1"),
        SourceRun("idn", "0.3", DataPlan("lenet", 5, 40)),
        SourceRun("idn", "0.5", DataPlan("conv4", 4, 30, td_mode="eval")),
        # Weak models (91%, 86% and 68% test accuracy without noise): digits is easy, and a detector
        # that never saw a clean sample the model gets wrong reads every confusion as a flip.
        SourceRun("uniform", "0.25", DataPlan("conv4", 4, 8, lr=0.01)),
        SourceRun("flip", "0.35", DataPlan("conv4", 4, 8, lr=0.01)),
        SourceRun("idn", "0.35", DataPlan("conv4", 4, 8, lr=0.01)),
        SourceRun("idn", "0.25", DataPlan("resnet", 20, 8, lr=0.02)),
        SourceRun("semantic", "0.45", DataPlan("resnet", 20, 8, lr=0.02)),
        SourceRun("uniform", "0.35", DataPlan("lenet", 5, 15, lr=0.05)),
        SourceRun("uniform", "0.15", DataPlan("resnet", 20, 8, lr=0.02)),
        SourceRun("uniform", "0.45", DataPlan("resnet", 20, 8, lr=0.02)),
        SourceRun("idn", "0.15", DataPlan("lenet", 5, 15, lr=0.05)),
        SourceRun("flip", "0.1", DataPlan("resnet", 20, 8, lr=0.02)),
        # Annotator-confusion noise: the ambiguous images relabelled to the class they resemble.
        SourceRun("confusion", "0.1", DataPlan("lenet", 5, 40)),
        SourceRun("confusion", "0.3"),
        SourceRun("confusion", "0.5", DataPlan("resnet", 20, 30)),
        SourceRun("confusion", "0.25", DataPlan("conv4", 4, 8, lr=0.01)),
        SourceRun("confusion", "0.15", DataPlan("lenet", 5, 15, lr=0.05)),
    ),
    "fashion_mnist": MIX4 + (
        SourceRun("uniform", "0.1", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("uniform", "0.05", DataPlan("lenet_mnist", 5, 15, 10_000, batch_size=128, lr=0.05)),
        SourceRun("flip", "0.15", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("semantic", "0.25", DataPlan("lenet_mnist", 5, 40, 10_000, batch_size=64, lr=0.05)),
        SourceRun("semantic", "0.35", DataPlan("lenet", 5, 25, 10_000, batch_size=64, lr=0.05, td_mode="eval")),
        SourceRun("semantic", "0.5", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("idn", "0.1"),
        SourceRun("idn", "0.3", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("idn", "0.5", DataPlan("lenet_mnist", 5, 40, 10_000, batch_size=64, lr=0.05)),
        SourceRun("uniform", "0.25", DataPlan("lenet_mnist", 5, 5, 10_000, batch_size=64, lr=0.05)),
        SourceRun("flip", "0.35", DataPlan("lenet_mnist", 5, 6, 10_000, batch_size=64, lr=0.05)),
        SourceRun("idn", "0.25", DataPlan("lenet", 5, 6, 10_000, batch_size=64, lr=0.05)),
        # Weak and short runs (66-73% test accuracy without noise): what a small budget or a hard
        # dataset gives, where many clean samples are never learned.
        SourceRun("uniform", "0.35", DataPlan("lenet_mnist", 5, 3, 10_000, batch_size=64, lr=0.01)),
        SourceRun("uniform", "0.15", DataPlan("lenet", 5, 4, 10_000, batch_size=64, lr=0.005)),
        SourceRun("flip", "0.25", DataPlan("lenet", 5, 4, 10_000, batch_size=64, lr=0.005)),
        SourceRun("semantic", "0.3", DataPlan("lenet", 5, 4, 10_000, batch_size=64, lr=0.005)),
        SourceRun("idn", "0.35", DataPlan("lenet_mnist", 5, 3, 10_000, batch_size=64, lr=0.01)),
        SourceRun("idn", "0.15", DataPlan("lenet_mnist", 5, 2, 10_000, batch_size=64, lr=0.02)),
        # Small folders with find_issues' own LeNet recipe (20 epochs, batch 32, lr 0.1): a few hundred
        # steps leave the model weak (under 50% on some runs), the case a user's small dataset gives.
        SourceRun("uniform", "0.12", DataPlan("lenet", 5, 20, 1_000, batch_size=32, lr=0.1)),
        SourceRun("uniform", "0.28", DataPlan("lenet", 5, 20, 2_000, batch_size=32, lr=0.1)),
        SourceRun("flip", "0.22", DataPlan("lenet", 5, 20, 1_000, batch_size=32, lr=0.1)),
        SourceRun("idn", "0.18", DataPlan("lenet", 5, 20, 2_000, batch_size=32, lr=0.1)),
        # Five classes the network tells apart well (trouser, pullover, dress, sandal, bag): runs where
        # nearly every clean sample is learned, as on digits, so correctness is not learned as weak.
        SourceRun("uniform", "0.2", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("uniform", "0.4", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("flip", "0.2", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("flip", "0.4", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("idn", "0.2", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("idn", "0.4", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        # Annotator-confusion noise at several rates, strong and weak models, a small folder.
        SourceRun("confusion", "0.1", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("confusion", "0.3"),
        SourceRun("confusion", "0.5", DataPlan("lenet_mnist", 5, 40, 10_000, batch_size=64, lr=0.05)),
        SourceRun("confusion", "0.25", DataPlan("lenet", 5, 4, 10_000, batch_size=64, lr=0.005)),
        SourceRun("confusion", "0.15", DataPlan("lenet", 5, 20, 1_000, batch_size=32, lr=0.1)),
        SourceRun("confusion", "0.35", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
    ),
}

# Detector variants: the paper's, and what this benchmark measures beyond it. Every variant but the
# paper's pools mean and max over a bidirectional LSTM's outputs and resamples runs to 32 points.
# `rank_mix4` is an older default (four source runs, 2x64 LSTM); `rank_corpus` the same inputs on
# the broad corpus (what the corpus alone brings); `context` adds the class-context inputs (the
# previous default); `context_raw` adds raw probability and margin on top; `gated` is `context`'s
# very LSTM weighed against AUM by how concentrated a run's mistakes are, with a gate fitted on
# out-of-fold LSTM scores of the same corpus (mislabel/scoring/gate.py): the default.
_PAPER_NET = dict(readout="last", bidirectional=False, seq_len=0, hidden_size=64, num_layers=2, epochs=10, lr=1e-3,
                  gate_folds=0)
_POOLED = dict(readout="pool", bidirectional=True, seq_len=32, hidden_size=32, num_layers=1, epochs=8, lr=2e-3,
               gate_folds=0)
_RANK = "correct,prob_rank,margin_rank"
_CONTEXT = _RANK + ",confusion,class_error"
VARIANTS = {
    "paper": dict(_PAPER_NET, features="prob", sources=PAPER_SOURCE),
    "rank_mix4": dict(_POOLED, features=_RANK, hidden_size=64, num_layers=2, epochs=10, lr=1e-3, sources=MIX4),
    "rank_corpus": dict(_POOLED, features=_RANK, sources="corpus"),
    "context": dict(_POOLED, features=_CONTEXT, sources="corpus"),
    "context_raw": dict(_POOLED, features="prob,margin," + _CONTEXT, sources="corpus"),
    "gated": dict(_POOLED, features=_CONTEXT, sources="corpus", gate_folds=3),
}
DEFAULT_VARIANT = "gated"          # what train_detector.py's defaults give and mislabel/scoring/pretrained ships
# Denoising: the detector removes as many samples as it estimates are mislabeled (remove_ratio auto);
# AUM and correctness remove the same number (so only the ranking differs); the oracle removes the flips.
DENOISE_METHODS = ("detector", "aum", "correctness", "oracle")

# ----------------------------------------------------------------------------------------------
# Jobs (each runs in a worker process; output goes to a log file, results to the run folders)
# ----------------------------------------------------------------------------------------------


def corpus(plan: dict, dataset: str) -> tuple[SourceRun, ...]:
    """The source runs of ``dataset``: the broad corpus; the quick plan runs it with the grid recipe."""
    if plan["name"] == "full":
        return CORPUS[dataset]
    return tuple(SourceRun(run.noise, run.ratio) for run in CORPUS[dataset])


def data_plan(plan: dict, dataset: str, seed: int, noise: str, ratio: str, rows: str = "grid") -> DataPlan:
    """The recipe of one run: a source run's own when the corpus gives one, find_issues' for the
    ``rows="find_issues"`` runs, else the grid's."""
    if rows == "find_issues":
        return plan["recipes"][dataset]
    if seed == SOURCE_SEED:
        for run in corpus(plan, dataset):
            if (run.noise, run.ratio) == (noise, ratio) and run.plan is not None:
                return run.plan
    return plan["data"][dataset]


def run_config(work: Path, plan: dict, dataset: str, seed: int, noise: str, ratio: str, rows: str = "grid"):
    """The Runner's RunConfig of one run of the plan: its recipe, data folder and results folder."""
    from runner import RunConfig
    from mislabel.training.loop import Recipe

    data = data_plan(plan, dataset, seed, noise, ratio, rows)
    datadir = None if dataset == "digits" else str(subset_folder(work, data.classes, _own_count(plan, data)))
    return RunConfig(dataset=dataset, datadir=datadir, seed=seed,
                     noise_ratio=ratio, noise_type=noise, net_type=data.net_type, depth=data.depth,
                     td_mode=data.td_mode, results_dir=str(work / "runs"),
                     recipe=Recipe(epochs=data.epochs, batch_size=data.batch_size, lr=data.lr))


def _own_count(plan: dict, data: DataPlan) -> int | None:
    """A Fashion-MNIST source run's subset size when it differs from the grid's (its own folder), else None."""
    return None if data.train_subset == plan["data"]["fashion_mnist"].train_subset else data.train_subset


def prepare_data(work: Path, plan: dict) -> None:
    """Write the Fashion-MNIST subsets the grid and the corpus train on (class subsets, other sizes)."""
    prepare_fashion_subset(work, plan["data"]["fashion_mnist"].train_subset)
    for run in corpus(plan, "fashion_mnist"):
        if run.plan is not None and (run.plan.classes is not None or _own_count(plan, run.plan) is not None):
            prepare_fashion_subset(work, run.plan.train_subset, run.plan.classes, _own_count(plan, run.plan) is not None)


def job_phase1(work: Path, plan: dict, dataset: str, seed: int, noise: str, ratio: str, rows: str = "grid") -> str:
    from mislabel.reports.summary import read_summary
    from runner import Runner

    config = run_config(work, plan, dataset, seed, noise, ratio, rows)
    if read_summary(config.td_dir) is None:
        with logged(work / "logs" / f"phase1_{dataset}_{noise}{ratio}_s{seed}_{rows}.log"):
            Runner(config).train_for_td_computation()
    return str(config.td_dir)


def job_crossval(work: Path, plan: dict, dataset: str, seed: int, noise: str, ratio: str) -> str:
    from mislabel.training.crossval import PRED_PROBS_FILE
    from runner import Runner

    config = run_config(work, plan, dataset, seed, noise, ratio)
    if not (config.td_dir / PRED_PROBS_FILE).is_file():
        with logged(work / "logs" / f"crossval_{dataset}_{noise}{ratio}_s{seed}.log"):
            Runner(config).crossval(CLEANLAB_FOLDS)
    return str(config.td_dir)


def detector_path(work: Path, source: str, variant: str) -> Path:
    return work / "detectors" / f"{source}_{variant}.pth.tar"


def variant_recipe(spec: dict):
    """The detector recipe (architecture and training) of a VARIANTS entry."""
    from mislabel.scoring.detector_training import DetectorRecipe

    return DetectorRecipe(**{key: value for key, value in spec.items() if key != "sources"})


def source_folders(work: Path, plan: dict, source: str, sources) -> list[str]:
    runs = corpus(plan, source) if sources == "corpus" else sources
    return [str(run_config(work, plan, source, SOURCE_SEED, run.noise, run.ratio).td_dir) for run in runs]


def control_path(work: Path, source: str) -> Path:
    return work / "detectors" / f"{source}_control.pth.tar"


def job_detector(work: Path, plan: dict, source: str, variant: str) -> str:
    """Train one variant on ``source``'s runs; the default variant also fits the learned control on
    exactly the same runs (train_detector --control_out)."""
    from mislabel.scoring.detector_training import train_detector

    out = detector_path(work, source, variant)
    if out.is_file():
        return str(out)
    spec = VARIANTS[variant]
    folders = source_folders(work, plan, source, spec["sources"])
    control = control_path(work, source) if variant == DEFAULT_VARIANT else None
    with logged(work / "logs" / f"detector_{source}_{variant}.log"):
        train_detector(folders, variant_recipe(spec), out=out, control_out=control, overwrite=True)
    return str(out)


def other_dataset(plan: dict, dataset: str) -> str:
    others = [name for name in plan["data"] if name != dataset]
    return others[0] if others else dataset


def job_denoise(work: Path, plan: dict, dataset: str, seed: int, noise: str, ratio: str, method: str) -> dict:
    """Retrain without the samples ``method`` picks; returns the test accuracy and how many were removed.

    The default detector trained on the other dataset estimates the count (remove_ratio auto, as
    `denoise` does); AUM and correctness remove that many too; the oracle removes exactly the flips.
    """
    from mislabel.scoring.baselines import aum, correctness
    from mislabel.scoring.scores import top_suspects
    from mislabel.reports.summary import read_summary
    from runner import Runner
    from mislabel.core.dynamics import load_dynamics

    config = run_config(work, plan, dataset, seed, noise, ratio)
    folder = config.stage_dir("bench_denoise", method)
    if (done := read_summary(folder)) is None:
        with logged(work / "logs" / f"denoise_{dataset}_{noise}{ratio}_s{seed}_{method}.log"):
            runner = Runner(config)
            dyn = load_dynamics(config.td_dir)
            detector = detector_path(work, other_dataset(plan, dataset), DEFAULT_VARIANT)
            estimate = top_suspects(detector, dyn, "auto")
            if method == "oracle":
                removed = np.flatnonzero(dyn.flipped)
            elif method == "detector":
                removed = estimate.rows
            else:
                score = aum(dyn) if method == "aum" else correctness(dyn)
                removed = np.argsort(-score, kind="stable")[:len(estimate.rows)]
            kept = np.delete(dyn.indices, removed)
            info = {"method": method, "num_removed": int(len(removed)), "num_flipped": int(dyn.flipped.sum()),
                    "flipped_share_of_removed": float(dyn.flipped[removed].mean()) if len(removed) else None}
            done = runner.retrain_subset(kept, folder, info)
    return {"test_accuracy": float(done["test_accuracy"]), "num_removed": int(done["num_removed"]),
            "num_flipped": int(done["num_flipped"])}


# ----------------------------------------------------------------------------------------------
# Scoring (main process): every method on every evaluated run
# ----------------------------------------------------------------------------------------------


def score_run(work: Path, plan: dict, detectors: dict, dataset: str, seed: int, noise: str, ratio: str,
              rows: str = "grid") -> list[dict]:
    """Every baseline, cleanlab (when the run has cross-validated probabilities), every detector of
    ``detectors`` ((source, variant) -> (model, config)) trained on the other dataset and that
    dataset's learned control, on one run, through the library's ``score``."""
    from mislabel.scoring.baselines import BASELINES
    from mislabel.scoring.scores import Detector, score
    from mislabel.training.crossval import load_pred_probs
    from mislabel.core.dynamics import load_dynamics

    folder = run_config(work, plan, dataset, seed, noise, ratio, rows).td_dir
    dyn = load_dynamics(folder)
    probs = load_pred_probs(folder, dyn.num_samples, int(dyn.assigned.max()) + 1)
    methods = [*BASELINES, "cleanlab"] if probs is not None else list(BASELINES)
    source = other_dataset(plan, dataset)  # transfer only: a run is never scored by what saw its dataset
    transferred = [Detector(variant, detector_path(work, trained_on, variant), model, config, 0.0)
                   for (trained_on, variant), (model, config) in detectors.items() if trained_on == source]
    scored = score(dyn, methods, transferred, pred_probs=None if probs is None else probs[0])
    control = score(dyn, ["control"], control_file=control_path(work, source))
    return [dict(dataset=dataset, noise=noise, ratio=ratio, seed=seed, rows=rows, method=result.name,
                 source=source if result.name not in BASELINES and result.name != "cleanlab" else None,
                 auc=result.metrics["auc"], map=result.metrics["map"]) for result in scored + control]


# ----------------------------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------------------------


def already_done(fn, work: Path, plan: dict, *args) -> bool:
    """Whether ``fn(work, plan, *args)`` will find its output cached (the check each job makes first),
    so the report can say how much of the wall time a rerun did not spend."""
    from mislabel.training.crossval import PRED_PROBS_FILE
    from mislabel.reports.summary import read_summary

    if fn is job_detector:
        return detector_path(work, *args).is_file()
    if fn is job_phase1:
        return read_summary(run_config(work, plan, *args).td_dir) is not None
    config = run_config(work, plan, *args[:4])
    if fn is job_crossval:
        return (config.td_dir / PRED_PROBS_FILE).is_file()
    return read_summary(config.stage_dir("bench_denoise", args[4])) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the ~5 minute plan instead of the full grid")
    parser.add_argument("--workers", type=int, default=2, help="parallel single-threaded jobs (default 2)")
    parser.add_argument("--workdir", default="/tmp/mislabel_bench_detection", help="runs, detectors, logs")
    parser.add_argument("--fresh", action="store_true", help="delete this plan's cached runs first")
    parser.add_argument("--benchmarks", default=str(ROOT / "BENCHMARKS.md"), help="file to write the sections into")
    parser.add_argument("--no_write", action="store_true", help="print the sections instead of writing them")
    parser.add_argument("--phase1_only", action="store_true", help="run (or complete) the phase-1 runs, then stop")
    parser.add_argument("--no_denoise", action="store_true",
                        help="skip the denoising stage (its retrainings are most of the grid's cost); the report says so")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="print the sections of an earlier run's results.json, without running anything")
    args = parser.parse_args()
    if args.render:
        loaded = json.loads(args.render.read_text())
        print(render_sections(loaded, PLANS[loaded["plan"]], VARIANTS, DEFAULT_VARIANT, SOURCE_SEED, HARD_SETTINGS))
        return
    plan_name = "quick" if args.quick else "full"
    plan = PLANS[plan_name]
    work = Path(args.workdir) / plan_name
    if args.fresh and work.exists():
        shutil.rmtree(work)
    started = time.perf_counter()
    prepare_data(work, plan)
    grid = [(d, s, n, r) for d in plan["data"] for n, r in plan["settings"] for s in plan["seeds"]]
    recipe_grid = [(d, s, n, r, "find_issues") for d in plan["recipes"] for n, r in plan["settings"] for s in plan["seeds"]]
    sources = [(d, SOURCE_SEED, run.noise, run.ratio) for d in plan["data"] for run in corpus(plan, d)]
    stages: dict[str, float] = {}
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        mark = time.perf_counter()
        jobs = [(job_phase1, work, plan, *run) for run in sources + grid + recipe_grid]
        reused = [already_done(*job) for job in jobs]
        run_stage(pool, "phase 1", jobs)
        stages["phase 1"] = time.perf_counter() - mark
        if args.phase1_only:
            print(f"phase 1 done ({stages['phase 1'] / 60:.1f} min)")
            return
        mark = time.perf_counter()
        jobs = [(job_detector, work, plan, d, v) for d in plan["data"] for v in VARIANTS]
        jobs += [(job_crossval, work, plan, *run) for run in grid if run[0] in plan["cleanlab"]]
        reused += [already_done(*job) for job in jobs]
        run_stage(pool, "detectors, cleanlab", jobs)
        stages["detectors and cross-validation"] = time.perf_counter() - mark
        denoised = []
        if not args.no_denoise:
            mark = time.perf_counter()
            jobs = [(job_denoise, work, plan, *run, m) for run in grid for m in DENOISE_METHODS]
            reused += [already_done(*job) for job in jobs]
            denoised = run_stage(pool, "denoising", jobs)
            stages["denoising (retraining)"] = time.perf_counter() - mark
    from mislabel.scoring.lstm import load_detector

    detectors = {(source, variant): load_detector(detector_path(work, source, variant))
                 for source in plan["data"] for variant in VARIANTS}
    detection = [row for run in tqdm(grid + recipe_grid, desc="scoring", unit="run")
                 for row in score_run(work, plan, detectors, *run)]
    accuracy = [dict(dataset=d, noise=n, ratio=r, seed=s, method="noisy", test_accuracy=_phase1_accuracy(work, plan, d, s, n, r))
                for d, s, n, r in grid]
    accuracy += [dict(dataset=a[0], seed=a[1], noise=a[2], ratio=a[3], method=a[4], **outcome)
                 for (name, a), outcome in denoised]
    total = time.perf_counter() - started
    command = ("python bench/detection.py" + (" --quick" if args.quick else "") + f" --workers {args.workers}"
               + (" --no_denoise" if args.no_denoise else ""))
    results = dict(plan=plan_name, command=command, machine=machine(), seconds=total, stages=stages,
                   jobs=len(reused), reused=sum(reused),
                   detection=detection, denoise=accuracy)
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    text = render_sections(results, plan, VARIANTS, DEFAULT_VARIANT, SOURCE_SEED, HARD_SETTINGS)
    if args.no_write:
        print(text)
    else:
        replace_section(Path(args.benchmarks), f"detection-{plan_name}", text)
        print(f"wrote the {plan_name} sections into {args.benchmarks} ({total / 60:.1f} min)")


def _phase1_accuracy(work: Path, plan: dict, dataset: str, seed: int, noise: str, ratio: str) -> float:
    from mislabel.reports.summary import read_summary

    return float(read_summary(run_config(work, plan, dataset, seed, noise, ratio).td_dir)["test_accuracy"])


if __name__ == "__main__":
    main()
