"""What recording dynamics costs phase 1: wall time of the same training without a recorder, with
``--td_mode train`` (record from the training pass) and with ``--td_mode eval`` (an extra no-grad
pass over the training set each epoch).

All three runs use the Runner's data, split, model and batches and ``mislabel.training.loop.fit``;
the only difference is the ``recorder`` argument (``None`` for the baseline, which users cannot
ask for: phase 1 exists to record). The variants alternate within each repeat so that load from
other jobs on a shared machine hits them alike; the table gives the median over repeats. "fit s"
is training with per-epoch validation (what phase 1 does before writing files); "in recorder s"
is the time spent inside ``Recorder.update`` and ``next_epoch`` during that fit (timed around
each call, so it does not drift with the load the way a difference of two wall times does);
"save s" is ``Recorder.save`` of the npz afterwards.

    OMP_NUM_THREADS=1 python bench/phase1_overhead.py --net_type lenet --depth 5 --num_epochs 20 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

import torch

from mislabel.training.recorder import Recorder
from mislabel.training.loop import Recipe, Recording, fit
from runner import RunConfig, Runner
from common import cpu_name

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("no recording", "td_mode train", "td_mode eval")


class TimedRecorder(Recorder):
    """The Recorder, with the seconds spent in its per-batch and per-epoch calls added up."""

    seconds = 0.0

    def update(self, *args) -> None:
        started = time.perf_counter()
        super().update(*args)
        self.seconds += time.perf_counter() - started

    def next_epoch(self) -> None:
        started = time.perf_counter()
        super().next_epoch()
        self.seconds += time.perf_counter() - started


def one_run(runner: Runner, variant: str, epochs: int, folder: Path) -> tuple[float, float, float]:
    """(fit seconds, seconds inside the recorder, save seconds) of one phase-1 training run."""
    labels = torch.as_tensor(runner.assigned_labels)
    model = runner.build_model().to(runner.device)
    train = runner.batches(runner.train_indices, labels, train=True)
    eval_train = runner.batches(runner.train_indices, labels)
    valid = runner.batches(runner.valid_indices, labels)
    recorder = None if variant == "no recording" else TimedRecorder(
        len(runner.train_indices), runner.data.num_classes, epochs, sample_ids=runner.train_indices, store="ram")
    started = time.perf_counter()
    mode = "eval" if variant == "td_mode eval" else "train"
    recording = None if recorder is None else Recording(recorder, mode, eval_train if mode == "eval" else None)
    fit(model, train, valid, runner.config.recipe, recording=recording, description=variant)
    fitted = time.perf_counter()
    if recorder is None:
        return fitted - started, 0.0, 0.0
    recorder.save(folder, metadata=False)
    return fitted - started, recorder.seconds, time.perf_counter() - fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--datadir", default=None)
    parser.add_argument("--net_type", default="lenet")
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--num_epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = RunConfig(dataset=args.dataset, datadir=args.datadir, net_type=args.net_type, depth=args.depth,
                       device=args.device, seed=1, noise_ratio="0.2",
                       recipe=Recipe(epochs=args.num_epochs, batch_size=args.batch_size))
    runner = Runner(config)
    times: dict[str, list[tuple[float, float, float]]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        warm = Runner(RunConfig(**{**config.__dict__, "recipe": Recipe(epochs=1, batch_size=args.batch_size)}))
        one_run(warm, "td_mode train", 1, Path(scratch))  # first-call costs (allocator, kernels) out of the timings
        for _ in range(args.repeats):
            for variant in VARIANTS:
                times[variant].append(one_run(runner, variant, args.num_epochs, Path(scratch)))
    base = statistics.median(run[0] for run in times["no recording"])
    print(f"machine: {os.cpu_count()} CPUs, {cpu_name()}, "
          f"torch threads {torch.get_num_threads()}; {args.dataset} ({len(runner.train_indices)} training rows), "
          f"{args.net_type}{args.depth}, {args.num_epochs} epochs, batch {args.batch_size}, {args.repeats} repeats")
    print("| variant | fit s (median) | fit s (each repeat) | overhead vs no recording | in recorder s (share "
          "of fit) | save s |")
    print("|---|---|---|---|---|---|")
    for variant in VARIANTS:
        fits = [run[0] for run in times[variant]]
        fit, inside, save = (statistics.median(run[i] for run in times[variant]) for i in range(3))
        if variant == "no recording":
            print(f"| {variant} | {fit:.2f} | {', '.join(f'{value:.2f}' for value in fits)} | - | - | - |")
            continue
        print(f"| {variant} | {fit:.2f} | {', '.join(f'{value:.2f}' for value in fits)} | "
              f"{100 * (fit - base) / base:+.1f}% | {inside:.3f} ({100 * inside / fit:.1f}%) | {save:.3f} |")


if __name__ == "__main__":
    main()
