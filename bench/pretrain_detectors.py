"""Regenerate the shipped detectors in detector_model/pretrained/ from Fashion-MNIST dynamics.

    python bench/pretrain_detectors.py          # 13 min measured on the 2 shared cores (load 7-9)

Phase 1 (LeNet-5, 25 epochs, the fixed 10,000-image subset of bench/detection.py's full plan) on
seed 100 with 30% uniform and 30% flip noise gives the training dynamics (the same runs as the
benchmark's detector sources, so its cache is shared), and seed 101 with the same two settings gives
held-out runs. Three detectors of the benchmark's DENOISE_VARIANT architecture are trained:
``fashion_mnist_uniform`` (uniform run), ``fashion_mnist_flip`` (flip run) and ``default`` (both).
Each gets a card ``<name>.json`` (data, noise, model, epochs, recording mode, features,
architecture, held-out AUC/mAP) and a stored stratified sample of each held-out run
(``heldout_<noise>.npz``, the arrays of training_dynamics.npz a detector reads, plus the flips),
from which tests/test_pretrained.py recomputes the card's held-out numbers.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: one thread per worker process

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from detection import (DENOISE_VARIANT, PLANS, VARIANTS, _logged, _run_config, job_phase1, run_stage,  # noqa: E402
                       variant_flags)
from fashion_subset import prepare_fashion_subset  # noqa: E402

PRETRAINED = ROOT / "detector_model" / "pretrained"
DATASET = "fashion_mnist"
TRAIN_SEED, HELDOUT_SEED = 100, 101
NOISE = (("uniform", "0.3"), ("flip", "0.3"))
DETECTORS = {"fashion_mnist_uniform": ("uniform",), "fashion_mnist_flip": ("flip",), "default": ("uniform", "flip")}
DETECTOR_EPOCHS = 10   # held-out AUC stops moving after a few epochs on ~9,000-18,000 sequences
HELDOUT_SAMPLE = 1500  # rows of each held-out run stored for the test (~150 KB compressed)


def job_train(work: Path, plan: dict, name: str, noises: tuple[str, ...], variant: str) -> str:
    import train_detector

    spec = VARIANTS[variant]
    folders = [str(_run_config(work, plan, DATASET, TRAIN_SEED, n, r).td_dir) for n, r in NOISE if n in noises]
    out = work / "pretrained" / f"{name}.pth.tar"
    out.parent.mkdir(parents=True, exist_ok=True)
    with _logged(work / "logs" / f"pretrain_{name}.log"):
        train_detector.main(["--r", "0.3", "--dataset", DATASET, "--files_path", *folders, "--out", str(out),
                             "--overwrite", "--epochs", str(DETECTOR_EPOCHS), *variant_flags(spec)])
    return str(out)


def store_heldout(folder: Path, out: Path) -> None:
    """A stratified sample of a held-out run: channel 0 of td (all a detector reads), margin, pred, flips."""
    from util import load_dynamics

    dyn = load_dynamics(folder)
    rng = np.random.default_rng(0)
    share = HELDOUT_SAMPLE / dyn.num_samples
    rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(dyn.flipped == kind))[:int(round(share * np.sum(dyn.flipped == kind)))]
                                   for kind in (True, False)]))
    np.savez_compressed(out, td=dyn.td[rows, :, :1], labels=dyn.labels[rows, :1], margin=dyn.margin[rows],
                        pred=dyn.pred[rows], indices=dyn.indices[rows], flipped=dyn.flipped[rows])


def heldout_metrics(detector: Path, sample: Path) -> dict:
    """AUC and mAP of ``detector`` on a stored held-out sample: what the card states and the test checks."""
    from detector_model.lstm import load_detector
    from detector_model.metrics import detection_metrics
    from detector_model.predict import detector_scores
    from util import Dynamics

    with np.load(sample, allow_pickle=False) as arrays:
        dyn = Dynamics(**{k: arrays[k] for k in ("td", "labels", "margin", "pred", "indices")},
                       flipped=arrays["flipped"].astype(bool))
    model, config = load_detector(detector)
    metrics = detection_metrics(detector_scores(model, config, dyn), dyn.flipped)
    return {"auc": round(metrics["auc"], 6), "map": round(metrics["map"], 6), "num_samples": int(dyn.num_samples),
            "num_flipped": int(dyn.flipped.sum())}


def card(name: str, noises: tuple[str, ...], plan: dict, detector: Path, variant: str) -> dict:
    import torch

    blob = torch.load(detector, map_location="cpu", weights_only=True)
    data = plan["data"][DATASET]
    return {
        "detector": f"{name}.pth.tar",
        "data": f"Fashion-MNIST, fixed subset of {data.train_subset:,} training images (bench/detection.py); "
                "10% held out by the run for early stopping",
        "noise": " + ".join(f"{n} {r}" for n, r in NOISE if n in noises) + f" (synthetic, seed {TRAIN_SEED})",
        "model": f"{data.net_type} (LeNet-5), SGD lr {data.lr} (Nesterov 0.9, steps at 50%/75%), batch {data.batch_size}",
        "epochs": data.epochs,
        "recording_mode": "train (dynamics from the training forward pass)",
        "features": blob["config"]["features"],
        "architecture": {key: blob["config"][key] for key in ("arch", "hidden_size", "num_layers", "readout",
                                                              "bidirectional", "seq_len")},
        "variant": variant,
        "detector_epochs": DETECTOR_EPOCHS,
        "heldout_split": {k: round(blob["metrics"][k], 6) for k in ("auc", "map")}
        | {"what": "10% stratified split of the training sequences, used to pick the best epoch"},
        "heldout_runs": {noise: heldout_metrics(detector, PRETRAINED / f"heldout_{noise}.npz") | {
            "what": f"stored sample heldout_{noise}.npz of a run never trained on (seed {HELDOUT_SEED}, {noise} 0.3)"}
            for noise, _ in NOISE},
        "regenerate": "python bench/pretrain_detectors.py",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default=DENOISE_VARIANT, choices=sorted(VARIANTS),
                        help="architecture from bench/detection.py VARIANTS")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/mislabel_bench_detection", help="shared with bench/detection.py")
    args = parser.parse_args()
    plan = PLANS["full"]
    work = Path(args.workdir) / "full"
    prepare_fashion_subset(work, plan["data"][DATASET].train_subset)
    runs = [(DATASET, seed, n, r) for seed in (TRAIN_SEED, HELDOUT_SEED) for n, r in NOISE]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        run_stage(pool, "phase 1", [(job_phase1, work, plan, *run) for run in runs])
        trained = run_stage(pool, "detectors", [(job_train, work, plan, name, noises, args.variant)
                                                for name, noises in DETECTORS.items()])
    PRETRAINED.mkdir(parents=True, exist_ok=True)
    for noise, ratio in NOISE:
        store_heldout(_run_config(work, plan, DATASET, HELDOUT_SEED, noise, ratio).td_dir,
                      PRETRAINED / f"heldout_{noise}.npz")
    for _, path in trained:
        name = Path(path).name.removesuffix(".pth.tar")
        shutil.copyfile(path, PRETRAINED / f"{name}.pth.tar")
        info = card(name, DETECTORS[name], plan, PRETRAINED / f"{name}.pth.tar", args.variant)
        (PRETRAINED / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
        print(f"{name}: held-out runs " + ", ".join(f"{k} AUC {v['auc']:.4f} mAP {v['map']:.4f}"
                                                    for k, v in info["heldout_runs"].items()))


if __name__ == "__main__":
    main()
