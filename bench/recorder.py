"""Recorder cost on synthetic logits: peak RSS, record time and save time, our stores vs the
paper's dict-of-lists bookkeeping.

The baseline models what the paper's code does (runner.generate_training_dynamics and
util.transfor_and_save of github.com/Christophe-Jia/mislabel-detection), step for step:
record: softmax of the batch to a float32 numpy array, then per sample ``td[idx].append(row)``
(the row is a view into the batch's array); save: rows sorted by sample id and stacked with
``np.asarray`` to [N, E, C] float32, cast to float16, classes ranked by mean probability, then a
per-sample loop that puts the assigned class first and the others in that order, and
``np.savez_compressed`` of ``td`` and ``labels``. Its save time is split into those three stages.

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
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

import numpy as np
import torch
from common import cpu_name

ROOT = Path(__file__).resolve().parents[1]

BATCH = 1024


def batches(samples: int, classes: int, epoch: int):
    """Shuffled batches of synthetic logits with fixed per-sample labels; generated outside the timed calls."""
    labels = torch.randint(0, classes, (samples,), generator=torch.Generator().manual_seed(12345))
    generator = torch.Generator().manual_seed(epoch)
    order = torch.randperm(samples, generator=generator)
    for rows in order.split(BATCH):
        yield torch.randn(len(rows), classes, generator=generator) * 3, labels[rows], rows


def paper_save(folder: Path, table: dict[int, list[np.ndarray]], assigned: np.ndarray) -> dict[str, float]:
    """The paper's conversion and save of its dict of per-sample lists; seconds per stage."""
    seconds = {}
    started = time.perf_counter()
    probs = np.asarray([table[row] for row in sorted(table)]).astype(np.float16)      # [N, E, C]
    seconds["convert"] = time.perf_counter() - started
    started = time.perf_counter()
    ranking = np.argsort(-probs.mean(axis=1), axis=1)
    td = np.ones_like(probs)
    labels = np.ones_like(probs[:, 0, :], dtype=np.int16)
    for row, classes in enumerate(ranking):
        label = assigned[row]
        labels[row, 0], td[row, :, 0] = label, probs[row, :, label].tolist()
        channel = 1
        for cls in classes:
            if cls != label:
                labels[row, channel], td[row, :, channel] = cls, probs[row, :, cls].tolist()
                channel += 1
    seconds["reorder"] = time.perf_counter() - started
    started = time.perf_counter()
    np.savez_compressed(folder / "training_dynamics.npz", labels=labels, td=td)
    seconds["compress_write"] = time.perf_counter() - started
    return seconds


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_store(store: str, samples: int, epochs: int, classes: int, folder: Path) -> dict:
    baseline = peak_rss_mb()
    record = save = 0.0
    stages: dict[str, float] = {}
    if store == "dict":
        table: dict[int, list[np.ndarray]] = {}
        assigned = np.zeros(samples, dtype=np.int64)
        for epoch in range(epochs):
            for logits, targets, rows in batches(samples, classes, epoch):
                started = time.perf_counter()
                probs = torch.softmax(logits, dim=1).detach().cpu().numpy()
                for j in range(len(rows)):
                    row = rows[j].item()
                    history = table.get(row, [])
                    history.append(probs[j])
                    table[row] = history
                record += time.perf_counter() - started
                assigned[rows.numpy()] = targets.numpy()
        stages = paper_save(folder, table, assigned)
        save = sum(stages.values())
    else:
        from mislabel.training.recorder import Recorder

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
            "peak_over_start_mb": peak - baseline, "bytes_per_value": (peak - baseline) * 2**20 / values,
            "save_stages_s": stages}


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
    print(f"machine: {os.cpu_count()} CPUs, {cpu_name()}; "
          f"N={args.samples}, E={args.epochs}, C={args.classes}")
    print("| store | rows run | record s | save s | peak RSS MB (whole process) | peak growth MB | bytes/value |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        scale = args.samples / r["samples"]
        label = f"{r['store']} (x{scale:g} extrapolated)" if scale != 1 else r["store"]
        print(f"| {label} | {r['samples']} | {r['record_s'] * scale:.1f} | {r['save_s'] * scale:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {r['peak_over_start_mb'] * scale:.0f} | {r['bytes_per_value']:.2f} |")
    for r in results:
        if r["save_stages_s"]:
            scale = args.samples / r["samples"]
            parts = ", ".join(f"{name} {value * scale:.1f} s" for name, value in r["save_stages_s"].items())
            print(f"{r['store']} save stages (x{scale:g} extrapolated): {parts}")
    ours = {r["store"]: r["save_s"] * args.samples / r["samples"] for r in results}
    print("save speed-up vs dict: " + ", ".join(f"{store} {ours['dict'] / ours[store]:.1f}x"
                                                 for store in ("ram", "memmap")))


if __name__ == "__main__":
    main()
