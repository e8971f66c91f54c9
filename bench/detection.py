"""Detection benchmark on real data: noise grid x seeds, transfer, learned control, denoising; writes BENCHMARKS.md.

    python bench/detection.py --quick      # one seed, three noise settings, small runs
    python bench/detection.py              # the full grid (PLANS["full"]): about 1 hour on 2 cores

For each dataset (digits, fashion_mnist) phase 1 runs on every (noise, seed) of the plan, once with
the grid's recipe and once with find_issues' own (FIND_ISSUES_RECIPES). Detectors
(one per VARIANTS entry) and the learned control (logistic regression on the baselines' scores,
fitted on exactly the default variant's source runs) are trained on each dataset's source runs
(seed SOURCE_SEED: the broad CORPUS of noise types, rates, networks and run lengths), and each
evaluated run is scored by every baseline and by the detectors and control trained on the *other*
dataset: the shipped default is never evaluated on a dataset it saw. What retraining gains from
the rankings (each cleaning action, the baselines, the oracle) is bench/cleaning.py's, on these
runs. Runs and detectors are cached under --workdir/<plan>/ (a rerun only does what
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
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

from tqdm.auto import tqdm

from common import logged, machine, replace_section, run_stage
from detection_report import render_sections
from fashion_subset import prepare_fashion_subset, subset_folder
from detection_plans import (CLEANLAB_FOLDS, CORPUS, DEFAULT_VARIANT, HARD_SETTINGS, PLANS, SOURCE_SEED,
                             VARIANTS, DataPlan, SourceRun)

ROOT = Path(__file__).resolve().parents[1]

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
            prepare_fashion_subset(work, run.plan.train_subset, run.plan.classes,
                                   _own_count(plan, run.plan) is not None)


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
    probs = load_pred_probs(folder, dyn)
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
    return (run_config(work, plan, *args[:4]).td_dir / PRED_PROBS_FILE).is_file()  # job_crossval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the ~5 minute plan instead of the full grid")
    parser.add_argument("--workers", type=int, default=2, help="parallel single-threaded jobs (default 2)")
    parser.add_argument("--workdir", default="/tmp/mislabel_bench_detection", help="runs, detectors, logs")
    parser.add_argument("--fresh", action="store_true", help="delete this plan's cached runs first")
    parser.add_argument("--benchmarks", default=str(ROOT / "BENCHMARKS.md"), help="file to write the sections into")
    parser.add_argument("--no_write", action="store_true", help="print the sections instead of writing them")
    parser.add_argument("--phase1_only", action="store_true", help="run (or complete) the phase-1 runs, then stop")
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
    recipe_grid = [(d, s, n, r, "find_issues") for d in plan["recipes"] for n, r in plan["settings"]
                   for s in plan["seeds"]]
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
    from mislabel.scoring.lstm import load_detector

    detectors = {(source, variant): load_detector(detector_path(work, source, variant))
                 for source in plan["data"] for variant in VARIANTS}
    detection = [row for run in tqdm(grid + recipe_grid, desc="scoring", unit="run")
                 for row in score_run(work, plan, detectors, *run)]
    total = time.perf_counter() - started
    command = "python bench/detection.py" + (" --quick" if args.quick else "") + f" --workers {args.workers}"
    results = dict(plan=plan_name, command=command, machine=machine(), seconds=total, stages=stages,
                   jobs=len(reused), reused=sum(reused), detection=detection)
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    text = render_sections(results, plan, VARIANTS, DEFAULT_VARIANT, SOURCE_SEED, HARD_SETTINGS)
    if args.no_write:
        print(text)
    else:
        replace_section(Path(args.benchmarks), f"detection-{plan_name}", text)
        print(f"wrote the {plan_name} sections into {args.benchmarks} ({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
