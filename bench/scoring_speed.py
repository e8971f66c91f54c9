"""How fast the shipped default detector scores a large run: features and LSTM, timed apart.

    python bench/scoring_speed.py                      # 1,000,000 samples x 200 epochs (target: 60 s)
    python bench/scoring_speed.py --samples 20000      # a quick check (the test suite's old timing test)

The run is synthetic (scores do not matter here, only the work): 10 classes, float16 probabilities
of the assigned class and its strongest rival (what --td_topk 1 stores; the detector reads the
assigned class's channel, margins and predictions only), as generate_td would save them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from common import cpu_name  # noqa: E402


def synthetic_run(samples: int, epochs: int, classes: int = 10, seed: int = 0):
    from mislabel.core.dynamics import Dynamics

    rng = np.random.default_rng(seed)
    assigned = rng.integers(0, classes, samples)
    prob = rng.random((samples, epochs), dtype=np.float32).astype(np.float16)
    pred = np.where(prob > 0.3, assigned[:, None], rng.integers(0, classes, (samples, 1))).astype(np.int16)
    labels = np.stack([assigned, (assigned + 1) % classes], axis=1)
    td = np.stack([prob, (1 - prob) * 0.5], axis=2)
    return Dynamics(td=td, labels=labels, margin=(prob * 8 - 4).astype(np.float16), pred=pred,
                    indices=np.arange(samples))


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


def main() -> None:
    from mislabel.scoring.lstm import DEFAULT_DETECTOR

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--detector", default=str(DEFAULT_DETECTOR))
    args = parser.parse_args()
    dyn = synthetic_run(args.samples, args.epochs)
    result = time_scoring(dyn, Path(args.detector))
    print(f"{args.samples:,} samples x {args.epochs} epochs with {Path(args.detector).name}: "
          f"{result['total_s']:.1f} s to score (features alone {result['features_s']:.1f} s; "
          f"{result['threads']} torch threads; {os.cpu_count()} CPUs, {cpu_name()})")
    target = TARGET_SECONDS_PER_MILLION * args.samples / 1_000_000
    print(f"target {target:.1f} s ({TARGET_SECONDS_PER_MILLION:.0f} s per million samples): "
          + ("met" if result["total_s"] <= target and result["scored"] == args.samples else "NOT met"))


if __name__ == "__main__":
    main()
