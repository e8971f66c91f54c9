"""Regenerate the shipped detectors and learned control in mislabel/scoring/pretrained/ from Fashion-MNIST dynamics.

    python bench/pretrain_detectors.py          # a few minutes when bench/detection.py's cache exists
    python bench/pretrain_detectors.py --print_target   # the folder it writes, and nothing else

``default`` is bench/detection.py's DEFAULT_VARIANT trained on its Fashion-MNIST source corpus (the
very job, so the benchmark's Fashion-MNIST-trained default and the shipped one are the same file),
and ``control.pth.tar`` the learned control fitted on the same runs. ``fashion_mnist_uniform`` and
``fashion_mnist_flip`` are the same architecture trained on a single 30% uniform or flip run.
Held-out runs (seed 101, 30% uniform and flip, the benchmark's Fashion-MNIST recipe) are never
trained on. Each detector gets a card ``<name>.json`` (data, noise, model, features, architecture,
held-out AUC/mAP; the default's card also states the control's) and a stored stratified sample of
each held-out run (``heldout_<noise>.npz``, the arrays of training_dynamics.npz a detector reads,
plus the flips), from which tests/test_pretrained.py recomputes the cards' numbers. The target
folder is the one the library reads its default detector and control from (``DEFAULT_DETECTOR``
and ``DEFAULT_CONTROL``), never a path of its own.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: one thread per worker process

import argparse
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

import numpy as np

from common import logged, run_stage
from detection import (control_path, corpus, detector_path, job_detector, job_phase1, prepare_data,
                       run_config, variant_recipe)
from detection_plans import DEFAULT_VARIANT, PLANS, VARIANTS
from mislabel.scoring.control import DEFAULT_CONTROL
from mislabel.scoring.lstm import DEFAULT_DETECTOR

ROOT = Path(__file__).resolve().parents[1]

PRETRAINED = DEFAULT_DETECTOR.parent   # where the library reads the shipped detectors from
DATASET = "fashion_mnist"
TRAIN_SEED, HELDOUT_SEED = 100, 101
NOISE = (("uniform", "0.3"), ("flip", "0.3"))
SINGLE_RUN = {"fashion_mnist_uniform": ("uniform", "0.3"), "fashion_mnist_flip": ("flip", "0.3")}
HELDOUT_SAMPLE = 1500  # rows of each held-out run stored for the test (~150 KB compressed)


def job_train(work: Path, plan: dict, name: str, variant: str) -> str:
    """``default``: the benchmark's own job (corpus + control); the others: one source run each."""
    from mislabel.scoring.detector_training import train_detector

    if name == "default":
        job_detector(work, plan, DATASET, variant)
        return str(detector_path(work, DATASET, variant))
    noise, ratio = SINGLE_RUN[name]
    out = work / "pretrained" / f"{name}.pth.tar"
    out.parent.mkdir(parents=True, exist_ok=True)
    with logged(work / "logs" / f"pretrain_{name}.log"):
        train_detector([run_config(work, plan, DATASET, TRAIN_SEED, noise, ratio).td_dir],
                       variant_recipe(VARIANTS[variant]), out=out, overwrite=True)
    return str(out)


def store_heldout(folder: Path, out: Path) -> None:
    """A stratified sample of a held-out run: channel 0 of td (all a detector reads), margin, pred, flips."""
    from mislabel.core.dynamics import load_dynamics

    dyn = load_dynamics(folder)
    rng = np.random.default_rng(0)
    share = HELDOUT_SAMPLE / dyn.num_samples
    rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(dyn.flipped == kind))
                                   [:int(round(share * np.sum(dyn.flipped == kind)))] for kind in (True, False)]))
    np.savez_compressed(out, td=dyn.td[rows, :, :1], labels=dyn.labels[rows, :1], margin=dyn.margin[rows],
                        pred=dyn.pred[rows], indices=dyn.indices[rows], flipped=dyn.flipped[rows])


def _stored(sample: Path):
    from mislabel.core.dynamics import Dynamics

    with np.load(sample, allow_pickle=False) as arrays:
        return Dynamics(**{k: arrays[k] for k in ("td", "labels", "margin", "pred", "indices")},
                        flipped=arrays["flipped"].astype(bool))


def _rounded(metrics: dict, dyn) -> dict:
    return {"auc": round(metrics["auc"], 6), "map": round(metrics["map"], 6), "num_samples": int(dyn.num_samples),
            "num_flipped": int(dyn.flipped.sum())}


def heldout_metrics(detector: Path, sample: Path) -> dict:
    """AUC and mAP of ``detector`` on a stored held-out sample: what the card states and the test checks."""
    from mislabel.scoring.lstm import load_detector
    from mislabel.scoring.metrics import detection_metrics
    from mislabel.scoring.predict import detector_scores

    dyn = _stored(sample)
    model, config = load_detector(detector)
    return _rounded(detection_metrics(detector_scores(model, config, dyn), dyn.flipped), dyn)


def control_card(control: Path) -> dict:
    """The learned control's entry in the default detector's card: same source runs, held-out numbers."""
    from mislabel.scoring.control import control_scores, load_control
    from mislabel.scoring.metrics import detection_metrics

    blob = load_control(control)
    heldout = {}
    for noise, _ in NOISE:
        dyn = _stored(PRETRAINED / f"heldout_{noise}.npz")
        heldout[noise] = _rounded(detection_metrics(control_scores(blob, dyn), dyn.flipped), dyn)
    return {"file": control.name, "what": "logistic regression on the within-run percentiles of "
            + ", ".join(blob["scores"]) + ", fitted on the default detector's source runs",
            "coef": [round(float(c), 6) for c in blob["coef"]], "heldout_runs": heldout}


def card(name: str, plan: dict, detector: Path, variant: str) -> dict:
    import torch

    blob = torch.load(detector, map_location="cpu", weights_only=True)
    data = plan["data"][DATASET]
    if name == "default":
        runs = corpus(plan, DATASET)
        noise = (f"the benchmark's Fashion-MNIST source corpus: {len(runs)} runs, "
                 + ", ".join(f"{r.noise} {r.ratio}" for r in runs) + f" (synthetic, seed {TRAIN_SEED})")
        model = ("LeNet-5 variants (lenet, lenet_mnist), 5-40 epochs, batch 64-128, lr 0.05; "
                 "bench/detection.py CORPUS lists each run's recipe")
    else:
        noise = "{} {} (synthetic, seed {})".format(*SINGLE_RUN[name], TRAIN_SEED)
        model = (f"{data.net_type} (LeNet-5), SGD lr {data.lr} (Nesterov 0.9, steps at 50%/75%), "
                 f"batch {data.batch_size}, {data.epochs} epochs")
    return {
        "detector": f"{name}.pth.tar",
        "data": f"Fashion-MNIST, fixed subset of {data.train_subset:,} training images (bench/detection.py); "
                "10% held out by each run for early stopping",
        "noise": noise,
        "model": model,
        "recording_mode": "train (dynamics from the training forward pass; one corpus run in eval mode)",
        "features": blob["config"]["features"],
        "architecture": {key: blob["config"][key] for key in ("arch", "hidden_size", "num_layers", "readout",
                                                              "bidirectional", "seq_len")},
        "variant": variant,
        "gate": ({key: blob["config"]["gate"][key] for key in ("base", "centre", "steepness")}
                 | {"folds": VARIANTS[variant]["gate_folds"],
                    "what": "LSTM vs the gate's base (AUM, or AUM weighted by the agreement above chance) by "
                            "the run's concentration of mistakes (mislabel/scoring/gate.py)"}
                 if "gate" in blob["config"] else None),
        "heldout_split": {k: round(blob["metrics"][k], 6) for k in ("auc", "map")}
        | {"what": "10% stratified split of the training sequences, used to pick the best epoch"},
        "heldout_runs": {noise: heldout_metrics(detector, PRETRAINED / f"heldout_{noise}.npz") | {
            "what": f"stored sample heldout_{noise}.npz of a run never trained on (seed {HELDOUT_SEED}, {noise} 0.3)"}
            for noise, _ in NOISE},
        "regenerate": "python bench/pretrain_detectors.py",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default=DEFAULT_VARIANT, choices=sorted(VARIANTS),
                        help="architecture from bench/detection.py VARIANTS")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/mislabel_bench_detection", help="shared with bench/detection.py")
    parser.add_argument("--print_target", action="store_true", help="print the folder the files go to, then stop")
    args = parser.parse_args()
    if args.print_target:
        print(PRETRAINED)
        return
    plan = PLANS["full"]
    work = Path(args.workdir) / "full"
    prepare_data(work, plan)
    runs = [(DATASET, TRAIN_SEED, r.noise, r.ratio) for r in corpus(plan, DATASET)]
    runs += [(DATASET, HELDOUT_SEED, n, r) for n, r in NOISE]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        run_stage(pool, "phase 1", [(job_phase1, work, plan, *run) for run in runs])
        trained = run_stage(pool, "detectors", [(job_train, work, plan, name, args.variant)
                                                for name in ("default", *SINGLE_RUN)])
    PRETRAINED.mkdir(parents=True, exist_ok=True)
    for noise, ratio in NOISE:
        store_heldout(run_config(work, plan, DATASET, HELDOUT_SEED, noise, ratio).td_dir,
                      PRETRAINED / f"heldout_{noise}.npz")
    for (_, (name, _)), path in trained:
        shutil.copyfile(path, PRETRAINED / f"{name}.pth.tar")
        info = card(name, plan, PRETRAINED / f"{name}.pth.tar", args.variant)
        if name == "default":
            shutil.copyfile(control_path(work, DATASET), DEFAULT_CONTROL)
            info["learned_control"] = control_card(DEFAULT_CONTROL)
        (PRETRAINED / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
        print(f"{name}: held-out runs " + ", ".join(f"{k} AUC {v['auc']:.4f} mAP {v['map']:.4f}"
                                                    for k, v in info["heldout_runs"].items()))


if __name__ == "__main__":
    main()
