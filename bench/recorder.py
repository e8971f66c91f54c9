"""Recorder cost on synthetic logits: peak RSS, record time and save time, our stores vs the
paper's dict-of-lists bookkeeping (one float32 array per sample per epoch, appended in a Python loop).

Each store runs in its own process so that ru_maxrss is that store's peak alone:

    python bench/recorder.py --samples 1000000 --epochs 50 --classes 100          # the issue's size
    python bench/recorder.py --samples 100000 --dict_samples 20000               # smaller machine

The dict-of-lists run uses --dict_samples rows (it does not fit in RAM at full size); its time
and memory are extrapolated linearly to --samples and labelled so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

BATCH = 1024


def batches(samples: int, classes: int, epoch: int):
    """Shuffled batches of synthetic logits; generated outside the timed calls."""
    generator = torch.Generator().manual_seed(epoch)
    order = torch.randperm(samples, generator=generator)
    for rows in order.split(BATCH):
        yield torch.randn(len(rows), classes, generator=generator) * 3, torch.randint(0, classes, (len(rows),)), rows


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_store(store: str, samples: int, epochs: int, classes: int, folder: Path) -> dict:
    baseline = peak_rss_mb()
    record = save = 0.0
    if store == "dict":
        table: dict[int, list[np.ndarray]] = {}
        for epoch in range(epochs):
            for logits, targets, rows in batches(samples, classes, epoch):
                started = time.perf_counter()
                probs = torch.softmax(logits, dim=1).numpy()
                for row, values in zip(rows.tolist(), probs):
                    table.setdefault(row, []).append(values.copy())
                record += time.perf_counter() - started
        started = time.perf_counter()
        np.save(folder / "td.npy", np.stack([np.stack(table[row]) for row in range(samples)]))
        save = time.perf_counter() - started
    else:
        from mislabel.recorder import Recorder

        recorder = Recorder(samples, classes, epochs, path=folder, store=store)
        for epoch in range(epochs):
            for logits, targets, rows in batches(samples, classes, epoch):
                started = time.perf_counter()
                recorder.update(logits, targets, rows)
                record += time.perf_counter() - started
            started = time.perf_counter()
            recorder.next_epoch()
            record += time.perf_counter() - started
        started = time.perf_counter()
        recorder.save(folder, metadata=False)
        save = time.perf_counter() - started
    values = samples * epochs * classes
    peak = peak_rss_mb()
    return {"store": store, "samples": samples, "record_s": record, "save_s": save, "peak_rss_mb": peak,
            "peak_over_start_mb": peak - baseline, "bytes_per_value": (peak - baseline) * 2**20 / values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--dict_samples", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--one", choices=("ram", "memmap", "dict"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
            samples = args.dict_samples if args.one == "dict" else args.samples
            print(json.dumps(run_store(args.one, samples, args.epochs, args.classes, Path(folder))))
        return
    results = []
    for store in ("ram", "memmap", "dict"):
        done = subprocess.run([sys.executable, __file__, "--one", store, "--samples", str(args.samples),
                               "--dict_samples", str(args.dict_samples), "--epochs", str(args.epochs),
                               "--classes", str(args.classes)], check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.splitlines()[-1]))
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
          f"N={args.samples}, E={args.epochs}, C={args.classes}")
    print("| store | rows run | record s | save s | peak RSS MB (whole process) | peak growth MB | bytes/value |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        scale = args.samples / r["samples"]
        label = f"{r['store']} (x{scale:g} extrapolated)" if scale != 1 else r["store"]
        print(f"| {label} | {r['samples']} | {r['record_s'] * scale:.1f} | {r['save_s'] * scale:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {r['peak_over_start_mb'] * scale:.0f} | {r['bytes_per_value']:.2f} |")


if __name__ == "__main__":
    main()
