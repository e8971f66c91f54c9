"""``generate_td --budget MINUTES``: as many epochs of the chosen network as fit the budget.

generate_td names its network and depth (positional arguments), so the budget decides only the
epochs, up to the recipe's ``--num_epochs``: a few timed SGD steps of that network on this device
(``mislabel.training.budget.time_step``), plus, for datasets streamed from image files, the decoding speed
of a few files, predict an epoch. The choice is kept in the run folder (``budget.json``), so
rerunning an interrupted command continues the same number of epochs instead of timing again.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch.distributed as dist

from mislabel.core import distributed
from mislabel.training.budget import Clock, fitting_epochs, minutes, time_step
from mislabel.reports.summary import read_summary
from mislabel.core.files import atomic_write

__all__ = ["BUDGET_FILE", "epochs_within_budget"]

BUDGET_FILE = "budget.json"
DECODE_SAMPLE = 32   # files decoded to measure the decoding speed of a streamed dataset


def _decode_seconds(files: list[str]) -> float:
    """Seconds to decode one image file, from an evenly spaced sample."""
    from mislabel.data.decode import open_rgb  # here, as below: in-memory data needs no torchvision

    picks = [files[i] for i in sorted({round(i * (len(files) - 1) / (DECODE_SAMPLE - 1)) for i in range(DECODE_SAMPLE)})]
    started = time.perf_counter()
    for path in picks:
        open_rgb(path)
    return (time.perf_counter() - started) / len(picks)


def _predict_epochs(runner, budget_minutes: float, clock: Clock) -> tuple[int, str]:
    config, data = runner.config, runner.data
    world = distributed.world_size()
    batch = max(2, config.recipe.batch_size // world)
    step = time_step(config.net_type, config.depth, data.num_classes, data.in_channels, data.image_size, batch,
                     str(runner.device), config.widen_factor)
    steps = math.ceil(len(runner.train_indices) / world / batch)
    per_epoch = steps * step + math.ceil(len(runner.valid_indices) / batch) * step / 3
    if data.train_images is None:
        from mislabel.data.file_batches import auto_workers

        share = -(-len(runner.train_indices) // world)  # each rank decodes its share, as FileBatches does
        workers = auto_workers(share, batch, world) if config.num_workers is None else config.num_workers
        decoding = _decode_seconds(data.train_files) * len(runner.train_indices) / world / max(1, workers)
        per_epoch = max(per_epoch, decoding)
    after = math.ceil(len(data.test_labels) / batch) * step / 3
    left = budget_minutes * 60 - clock.elapsed()
    epochs = fitting_epochs(left, per_epoch, after, config.recipe.epochs)
    note = (f"budget {budget_minutes:g} min: {config.net_type}{config.depth} takes ~{per_epoch:.3g} s an epoch here, "
            f"so {max(epochs, 1)} of {config.recipe.epochs} epochs (predicted {minutes(max(epochs, 1) * per_epoch + after)})")
    if epochs < 1:
        note += "; warning: even one epoch exceeds the budget; raise --budget or pick a smaller network"
    return max(epochs, 1), note


def epochs_within_budget(runner, budget_minutes: float, clock: Clock) -> None:
    """Set ``runner.config.recipe.epochs`` to what fits the budget (every rank the same: rank 0 times)."""
    if read_summary(runner.config.td_dir) is not None and not runner.config.overwrite:
        return  # a finished run: training refuses it, and nothing may be written
    record = Path(runner.config.td_dir) / BUDGET_FILE
    key = {"budget": budget_minutes, "epochs": runner.config.recipe.epochs, "world": distributed.world_size()}
    stored = json.loads(record.read_text()) if record.is_file() else None
    if stored is not None and stored.get("key") == key and not runner.config.overwrite:
        epochs, note = stored["epochs"], f"budget {budget_minutes:g} min: {stored['epochs']} epochs, as first chosen"
    elif distributed.is_main():
        epochs, note = _predict_epochs(runner, budget_minutes, clock)
    else:
        epochs, note = 0, ""
    if distributed.world_size() > 1:
        shared = [epochs]
        dist.broadcast_object_list(shared, src=0)
        epochs = shared[0]
    if distributed.is_main():
        print(note)
        os.makedirs(record.parent, exist_ok=True)
        text = json.dumps({"key": key, "epochs": epochs}) + "\n"
        atomic_write(record, lambda tmp: Path(tmp).write_text(text))
    runner.config.recipe.epochs = epochs
