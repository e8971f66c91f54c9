"""How fast the shipped default detector scores a large run, and what ``rank()`` costs in time and memory.

    python bench/scoring_speed.py                      # 1,000,000 samples x 200 epochs, 10 classes (target: 60 s)
    python bench/scoring_speed.py --many_classes       # 200,000 samples x 10,000 classes x 50 epochs through
                                                       # rank() (target: 60 s and 2 GiB above the run itself)
    python bench/scoring_speed.py --samples 20000      # a quick check

The runs are synthetic (scores do not matter here, only the work): float16 probabilities of the assigned
class and its strongest rivals, stored top-k as ``--td_topk`` stores them (channel 0 the assigned class,
then ``--topk`` others), margins and predictions, as generate_td would save them. The default case times
the detector's two parts apart (features, then features + LSTM); both cases then time the public
``rank()`` with its default methods (detector, aum, confidence), whose extra memory is the peak resident
set during the call minus the resident set before it (Linux's VmHWM, reset through /proc/self/clear_refs).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

import numpy as np
from common import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def synthetic_run(samples: int, epochs: int, classes: int = 10, topk: int = 1, seed: int = 0):
    """A run in which 70% of the samples are learned at some epoch of the first quarter and kept, the rest
    predicted as one fixed rival class throughout: a run that never memorises, so ``rank()`` reads every
    epoch (the costliest case; ``mislabel.scoring.memorisation``)."""
    from mislabel.core.dynamics import Dynamics

    rng = np.random.default_rng(seed)
    assigned = rng.integers(0, classes, samples)
    prob = rng.random((samples, epochs), dtype=np.float32).astype(np.float16)
    learned_from = rng.integers(0, max(epochs // 4, 1), (samples, 1))
    learned = (np.arange(epochs) >= learned_from) & (rng.random((samples, 1)) < 0.7)
    pred = np.where(learned, assigned[:, None], rng.integers(0, classes, (samples, 1))).astype(np.int16)
    labels = (assigned[:, None] + np.arange(topk + 1)) % classes
    shares = (1 - prob.astype(np.float32)) / np.arange(2, topk + 2)[:, None, None]   # each rival weaker
    td = np.concatenate([prob[:, :, None], np.moveaxis(shares, 0, 2).astype(np.float16)], axis=2)
    return Dynamics(td=td, labels=labels, margin=(prob * 8 - 4).astype(np.float16), pred=pred,
                    indices=np.arange(samples), num_classes=classes)


def time_scoring(dyn, detector_file: Path) -> dict:
    import torch

    from mislabel.scoring.features import build_features
    from mislabel.scoring.lstm import load_detector
    from mislabel.scoring.predict import detector_scores

    model, config = load_detector(detector_file)
    started = time.perf_counter()
    build_features(dyn, config["features"], config["seq_len"])
    features = time.perf_counter() - started
    started = time.perf_counter()
    scores = detector_scores(model, config, dyn)
    total = time.perf_counter() - started
    return {"features_s": features, "total_s": total, "threads": torch.get_num_threads(), "scored": len(scores)}


TARGET_SECONDS_PER_MILLION = 60.0   # issue 14: 10^6 samples x 200 epochs scored within 60 s


def _resident_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def time_rank(dyn, detector_file: Path) -> dict:
    """``rank()`` with its default methods: seconds, and peak resident memory above the one before the call."""
    from mislabel.api import rank

    head = slice(0, 100)  # a first small call pays the imports and the detector's first load
    rank(replace(dyn, td=dyn.td[head], labels=dyn.labels[head], margin=dyn.margin[head], pred=dyn.pred[head],
                 indices=dyn.indices[head]), detector=detector_file)
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # peak resident set := current
        before = _resident_mib("VmRSS")
    except OSError:
        before = None
    started = time.perf_counter()
    table = rank(dyn, detector=detector_file)
    seconds = time.perf_counter() - started
    peak = _resident_mib("VmHWM")
    return {"rank_s": seconds, "rows": len(table),
            "extra_mib": None if before is None or peak is None else peak - before}


def main() -> None:
    from mislabel.scoring.lstm import DEFAULT_DETECTOR

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--many_classes", action="store_true",
                        help="the many-classes case: 200,000 samples x 10,000 classes x 50 epochs, top-5 stored")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--classes", type=int)
    parser.add_argument("--topk", type=int)
    parser.add_argument("--detector", default=str(DEFAULT_DETECTOR))
    args = parser.parse_args()
    defaults = (200_000, 50, 10_000, 5) if args.many_classes else (1_000_000, 200, 10, 1)
    samples, epochs, classes, topk = (given if given is not None else default for given, default in
                                      zip((args.samples, args.epochs, args.classes, args.topk), defaults))
    dyn = synthetic_run(samples, epochs, classes, topk)
    detector = Path(args.detector)
    machine = f"{os.cpu_count()} CPUs, {cpu_name()}, load average {os.getloadavg()[0]:.1f} at the start"
    print(f"{samples:,} samples x {epochs} epochs x {classes:,} classes (top-{topk} stored) with {detector.name}; "
          f"{machine}", flush=True)
    if not args.many_classes:
        result = time_scoring(dyn, detector)
        print(f"detector alone: {result['total_s']:.1f} s to score (features alone {result['features_s']:.1f} s; "
              f"{result['threads']} torch threads)", flush=True)
        target = TARGET_SECONDS_PER_MILLION * samples / 1_000_000
        print(f"target {target:.1f} s ({TARGET_SECONDS_PER_MILLION:.0f} s per million samples): "
              + ("met" if result["total_s"] <= target and result["scored"] == samples else "NOT met"), flush=True)
    result = time_rank(dyn, detector)
    extra = "unknown" if result["extra_mib"] is None else f"{result['extra_mib'] / 1024:.2f} GiB"
    print(f"rank() with detector, aum, confidence: {result['rank_s']:.1f} s, peak memory {extra} above the run "
          f"itself; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
