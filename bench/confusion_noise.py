"""Cost and shape of ``confusion`` noise on digits and Fashion-MNIST (mislabel/data/noise.py).

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/confusion_noise.py                 # digits only
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/confusion_noise.py --datadir DIR   # + Fashion-MNIST

Fashion-MNIST is read from ``DIR/fashion_mnist/`` or Debian's dataset-fashion-mnist
(/usr/share/datasets/fashion-mnist). Per dataset and rate, one line: the wall time of one
``corrupt_labels`` call (sklearn already imported), the realised rate, the annotator's out-of-fold
accuracy, the annotator's mean true-class probability of the flipped and the kept images, and the
Jaccard overlap of the flipped sets of seeds 1 and 2.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

from mislabel.core.user_input import UserError
from mislabel.data.datasets import load_dataset
from mislabel.data.noise import annotator_probabilities, corrupt_labels, noise_rng


def measure(dataset: str, datadir: str | None, ratios: list[float]) -> None:
    data = load_dataset(dataset, datadir, seed=1)
    images, labels = data.train_images.numpy(), data.train_labels.numpy()
    for ratio in ratios:
        start = time.perf_counter()
        first = corrupt_labels(labels, data.num_classes, ratio, "confusion", seed=1, dataset=dataset, images=images)
        seconds = time.perf_counter() - start
        second = corrupt_labels(labels, data.num_classes, ratio, "confusion", seed=2, dataset=dataset, images=images)
        probabilities = annotator_probabilities(images, labels, data.num_classes,
                                                noise_rng(1, dataset, ratio, "confusion"))
        true_probability = probabilities[np.arange(len(labels)), labels]
        flipped, flipped_2 = first != labels, second != labels
        print(f"{dataset} ({len(labels)} images) r={ratio}: {seconds:.2f} s, rate {flipped.mean():.4f}, "
              f"annotator accuracy {np.mean(probabilities.argmax(axis=1) == labels):.3f}, true-class probability "
              f"flipped {true_probability[flipped].mean():.3f} / kept {true_probability[~flipped].mean():.3f}, "
              f"seed 1 vs 2 Jaccard {np.sum(flipped & flipped_2) / np.sum(flipped | flipped_2):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datadir", help="folder holding fashion_mnist/ (Debian's copy is found without it)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.4])
    args = parser.parse_args()
    import sklearn.linear_model  # noqa: F401  (its import is not part of the generation time)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    measure("digits", None, args.ratios)
    with tempfile.TemporaryDirectory() as empty:  # without --datadir only Debian's copy can be found
        try:
            measure("fashion_mnist", args.datadir or empty, args.ratios)
        except UserError as err:
            print(f"fashion_mnist skipped: {err}")


if __name__ == "__main__":
    main()
