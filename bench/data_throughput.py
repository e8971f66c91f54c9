"""Images/s of ResNet-32 training on CIFAR-shaped data: our in-memory batch path vs torchvision's.

    python bench/data_throughput.py                      # 50,000 images, 30 timed training batches
    python bench/data_throughput.py --num_images 5000 --train_batches 10   # a quick look

Both paths read the same files: random uint8 images written as real CIFAR-10 python pickle
batches (as the official archive, Python 2 pickles), so ``torchvision.datasets.CIFAR10`` reads them
from disk and so does our ``read_dataset``. Then, in one run:

* ours: ``load_dataset`` + ``TensorBatches`` (uint8 on the device, crop-with-padding and flips for
  a whole batch with tensor ops);
* torchvision: ``CIFAR10`` + ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``,
  ``Normalize`` per PIL image, in a ``DataLoader`` made each epoch with ``--workers`` processes
  (the seed uses 4; fewer when the machine has fewer CPUs), and with 0 workers for a per-core view.

Two measurements per path: the data path alone over ``--data_batches`` batches (default: a full
epoch, loader start-up included, as each epoch pays it; wall clock and CPU seconds, workers
included), and training steps of the same ResNet-32 (forward, backward, SGD) over
``--train_batches`` batches after ``--warmup`` untimed ones, for ours and the last ``--workers``
setting. A full CPU epoch of ResNet-32 takes minutes, hence the fixed batch count.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

from mislabel.data.datasets import TensorBatches, load_dataset
from mislabel.models import build_model
from mislabel.core.device import pick_device, seed_everything
from common import cpu_name, write_cifar10

ROOT = Path(__file__).resolve().parents[1]

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # torchvision recipes' usual values
NUM_TEST = 100  # test_batch is read by our reader; nothing here times it


# ---------------------------------------------------------------------------------------------
# Setup: CIFAR-10 pickles on disk
# ---------------------------------------------------------------------------------------------

def write_random_cifar10(folder: Path, num_images: int, seed: int) -> None:
    """``folder/cifar10/cifar-10-batches-py/``: ``num_images`` random images in five train batches,
    NUM_TEST in the test batch, random labels (speed does not depend on the values)."""
    rng = np.random.default_rng(seed)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    sizes = [len(part) for part in np.array_split(np.arange(num_images), 5)] + [NUM_TEST]
    files = [f"data_batch_{i + 1}" for i in range(5)] + ["test_batch"]
    write_cifar10(folder, {file: (rng.integers(0, 10, size), rng.integers(0, 256, (size, 3072), dtype=np.uint8))
                           for file, size in zip(files, sizes)}, names)


class UncheckedCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader as is, minus the MD5 check that rejects regenerated files."""

    train_list = [[f"data_batch_{i}", None] for i in range(1, 6)]
    test_list = [["test_batch", None]]
    meta = {"filename": "batches.meta", "key": "label_names", "md5": None}


# ---------------------------------------------------------------------------------------------
# The two data paths, as iterables of (images, labels) on the device
# ---------------------------------------------------------------------------------------------

def ours(datadir: Path, batch_size: int, device: torch.device, seed: int) -> Callable[[int], Iterator]:
    data = load_dataset("cifar10", datadir, seed)
    batches = TensorBatches(data.train_images, data.train_labels, data.mean, data.std, batch_size, device,
                            augment=data.augment, shuffle=True, seed=seed)

    def epoch(number: int) -> Iterator:
        batches.set_epoch(number)
        return ((images, labels) for images, labels, _ in batches)
    return epoch


def torchvision_pil(datadir: Path, batch_size: int, device: torch.device, workers: int,
                    seed: int) -> Callable[[int], Iterator]:
    augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                  transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
    dataset = UncheckedCIFAR10(str(datadir / "cifar10"), train=True, transform=augment)

    def epoch(number: int) -> Iterator:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                             pin_memory=device.type == "cuda",
                                             generator=torch.Generator().manual_seed(seed * 1000 + number))
        return ((images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
                for images, labels in loader)
    return epoch


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def data_only(epoch: Callable[[int], Iterator], limit: int | None, device: torch.device) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and images for `limit` batches (None: the whole epoch), start-up included.

    CPU seconds count the loader's workers too, so they compare the paths' cost even while other
    jobs share the machine and skew the wall clock.
    """
    sync(device)
    started, cpu_started, seen = time.perf_counter(), cpu_seconds(), 0
    batches = epoch(0)
    for step, (images, _) in enumerate(batches):
        if limit is not None and step == limit:
            break
        seen += len(images)
    del batches  # joins the workers, so their CPU time is counted
    sync(device)
    return time.perf_counter() - started, cpu_seconds() - cpu_started, seen


def training(epoch: Callable[[int], Iterator], warmup: int, count: int, device: torch.device,
             seed: int) -> tuple[float, int]:
    """Seconds and images for `count` ResNet-32 SGD steps after `warmup` untimed ones."""
    seed_everything(seed)
    model = build_model("resnet", 32, 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    model.train()
    batches: Iterable = epoch(1)
    started, seen = 0.0, 0
    for step, (images, labels) in enumerate(batches):
        if step == warmup:
            sync(device)
            started = time.perf_counter()
        if step == warmup + count:
            break
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(images) if step >= warmup else 0
    sync(device)
    return time.perf_counter() - started, seen


def main() -> None:
    cpus = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=50_000, help="training images (CIFAR-10 has 50,000)")
    parser.add_argument("--batch_size", type=int, default=128, help="the seed's phase-1 batch size")
    parser.add_argument("--train_batches", type=int, default=30, help="timed training steps per path (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="training measurements per path; the median is shown")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first (allocator, workers)")
    parser.add_argument("--data_batches", type=int, default=None, help="batches for data-only (default: an epoch)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, min(4, cpus)],
                        help="torchvision DataLoader worker counts to compare (the seed uses 4); training is "
                             "timed for the last one (default: 0, and 4 or the CPU count if lower)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads of the main process (default: torch's choice); 1 avoids "
                             "threads stalling on each other's barriers when other jobs share the cores")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train_batches and args.num_images // args.batch_size < args.warmup + args.train_batches:
        parser.error(f"--num_images {args.num_images} gives fewer than --warmup + --train_batches batches of "
                     f"{args.batch_size}; raise --num_images or lower the batch counts")
    device = pick_device(args.device)
    ours_name, seed_name = "ours: TensorBatches", f"torchvision PIL, {args.workers[-1]} workers"
    measured: dict[str, list] = {}  # path -> [data img/s, data CPU s, [training img/s per repeat]]
    with tempfile.TemporaryDirectory(prefix="cifar_bench_") as tmp:
        datadir = Path(tmp)
        started = time.perf_counter()
        write_random_cifar10(datadir, args.num_images, args.seed)
        print(f"wrote {args.num_images} CIFAR-shaped images as pickle batches in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        paths = {ours_name: ours(datadir, args.batch_size, device, args.seed)}
        paths.update({f"torchvision PIL, {w} workers": torchvision_pil(datadir, args.batch_size, device, w, args.seed)
                      for w in args.workers})
        for name, epoch in paths.items():
            seconds, cpu, images = data_only(epoch, args.data_batches, device)
            print(f"{name}: data only, {images} images in {seconds:.2f} s ({cpu:.1f} CPU s)", file=sys.stderr)
            measured[name] = [images / seconds, cpu, []]
        for _ in range(args.repeats if args.train_batches else 0):
            for name in (ours_name, seed_name):  # alternated, so a burst of load elsewhere hits both alike
                seconds, images = training(paths[name], args.warmup, args.train_batches, device, args.seed)
                measured[name][2].append(images / seconds)
                print(f"{name}: training, {images} images in {seconds:.2f} s", file=sys.stderr)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"device: {device} ({device_name}), {cpus} CPUs available, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, intra-op threads {torch.get_num_threads()}")
    print("| path | data only: img/s | data only: CPU s per epoch | ResNet-32 training: img/s (median) |")
    print("|---|---:|---:|---:|")
    for name, (data_rate, cpu, rates) in measured.items():
        print(f"| {name} | {data_rate:,.0f} | {cpu:.1f} | {f'{np.median(rates):,.1f}' if rates else '-'} |")
    (our_rate, our_cpu, our_train), (tv_rate, tv_cpu, tv_train) = measured[ours_name], measured[seed_name]
    ratio = f"{np.median(our_train) / np.median(tv_train):.2f}x" if our_train else "-"
    print(f"| ratio ours / {seed_name} | {our_rate / tv_rate:.1f}x | {tv_cpu / our_cpu:.1f}x less | {ratio} |")


if __name__ == "__main__":
    main()
