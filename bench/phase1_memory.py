"""Peak memory (RSS) and wall time of phase 1, next to what the libraries alone cost.

Each row is one fresh child process, measured by ``os.wait4`` (the per-child form of
``getrusage(RUSAGE_CHILDREN)``): its peak resident set size and its wall time. Rows:

* ``import torch`` and ``import torch, torchvision``: the floor any phase-1 process pays;
* ``import runner``: what the Runner's module imports before doing anything;
* ``refused argument``: ``runner.py generate_td --noise_ratio 2`` (checked before torch loads);
* ``phase 1``: ``runner.py generate_td``, CIFAR ResNet-32, ``--epochs`` epochs (default 5, the
  issue's job), on the CPU, on the embedded digits (1,437 training images of 8x8, loaded through
  sklearn) and on 1,500 digits as CIFAR (the first 1,500 of sklearn's 1,797 digits scaled to
  32x32 RGB and written as CIFAR-10 pickle batches, the other 297 as the test batch; read from
  disk as ``cifar10``).

``--root`` measures another checkout of the repository (e.g. an older commit unpacked with
``git archive``), so two versions compare on the same machine and load.

    OMP_NUM_THREADS=1 python bench/phase1_memory.py [--root CHECKOUT] [--epochs 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASE1 = ["generate_td", "--seed", "1", "--noise_ratio", "0.2", "--noise_type", "uniform", "--net_type", "resnet",
          "--depth", "32", "--device", "cpu"]
CIFAR_TRAIN = 1500  # the job: 1,500 digits as CIFAR


def write_digits_as_cifar(datadir: Path) -> None:
    """sklearn's digits as ``cifar10/cifar-10-batches-py``: 8x8 grey -> 32x32 RGB, five train batches.

    Run in a child process (``--write_cifar``): a child forked from a parent that holds numpy and
    sklearn starts with their pages, and its peak RSS would count them.
    """
    import numpy as np
    from sklearn.datasets import load_digits

    from common import write_cifar10

    digits = load_digits()
    grey = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    rgb = np.repeat(np.kron(grey, np.ones((4, 4), dtype=np.uint8))[:, None], 3, axis=1).reshape(len(grey), -1)
    files = {f"data_batch_{i + 1}": rows for i, rows in enumerate(np.array_split(np.arange(CIFAR_TRAIN), 5))}
    files["test_batch"] = np.arange(CIFAR_TRAIN, len(grey))
    write_cifar10(datadir, {name: (digits.target[rows], rgb[rows]) for name, rows in files.items()},
                  [str(c) for c in range(10)])


def measure(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit code) of ``command`` run as one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return usage.ru_maxrss / 1024, time.perf_counter() - started, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to measure (default: this one)")
    parser.add_argument("--epochs", type=int, default=5, help="phase-1 epochs (the issue's job: 5; the peak is "
                                                               "reached in the first, so fewer measure the same)")
    parser.add_argument("--write_cifar", type=Path, help=argparse.SUPPRESS)  # the child that writes the data
    args = parser.parse_args()
    if args.write_cifar:
        write_digits_as_cifar(args.write_cifar)
        return
    from common import cpu_name

    root = args.root.resolve()
    with tempfile.TemporaryDirectory() as results, tempfile.TemporaryDirectory() as datadir:
        subprocess.run([sys.executable, __file__, "--write_cifar", datadir], check=True)
        rows = {
            "import torch": [sys.executable, "-c", "import torch"],
            "import torch, torchvision": [sys.executable, "-c", "import torch, torchvision"],
            "import runner": [sys.executable, "-c", "import runner"],
            "refused argument": [sys.executable, "runner.py", "generate_td", "--noise_ratio", "2"],
            "phase 1, digits (8x8)": [sys.executable, "runner.py", *PHASE1, "--num_epochs", str(args.epochs),
                                      "--dataset", "digits", "--results_dir", results],
            "phase 1, 1,500 digits as CIFAR (32x32)": [sys.executable, "runner.py", *PHASE1, "--num_epochs",
                                                       str(args.epochs), "--dataset", "cifar10", "--datadir", datadir,
                                                       "--results_dir", results],
        }
        print(f"checkout {root}; python {platform.python_version()}; {cpu_name()}, "
              f"{os.cpu_count()} cores; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
        print("| process | peak RSS MiB | wall s | exit |")
        print("|---|---:|---:|---:|")
        for name, command in rows.items():
            rss, seconds, code = measure(command, root)
            print(f"| {name} | {rss:.0f} | {seconds:.1f} | {code} |", flush=True)


if __name__ == "__main__":
    main()
