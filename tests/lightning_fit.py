"""A tiny Lightning fit with the DynamicsCallback, for tests/test_integrations_lightning.py.

The test runs it in-process on one device, and as two gloo processes (DDP) forked (``ddp_fork``:
the ranks inherit the loaded modules, so the run takes a second rather than two interpreter
start-ups) from a fresh interpreter with one OpenMP thread. Each rank also saves every training batch's
logits, targets and indices as it computed them (``batches_rank<r>.pt``), so the test can feed the very
same values to a plain Recorder.
"""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mislabel.integrations.lightning import DynamicsCallback, IndexedDataset

# 45 samples in batches of 8: two ranks get 23 each, so the distributed sampler pads with a repeat
SAMPLES, FEATURES, CLASSES, EPOCHS, BATCH = 45, 8, 3, 3, 8


def dataset(as_dicts: bool) -> list:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(SAMPLES, FEATURES, generator=generator)
    labels = torch.randint(0, CLASSES, (SAMPLES,), generator=generator)
    if as_dicts:
        return [{"x": x, "labels": y} for x, y in zip(inputs, labels)]
    return list(zip(inputs, labels))


class TinyClassifier(pl.LightningModule):
    """A linear classifier whose training_step follows the callback's convention and logs what it returns."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out
        self.net = torch.nn.Linear(FEATURES, CLASSES)
        self.batches: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch, batch_idx: int) -> dict:
        if isinstance(batch, dict):
            inputs, targets, indices = batch["x"], batch["labels"], batch["index"]
        else:  # (inputs, targets, indices), or a pair when a test leaves the indices out
            inputs, targets, indices = batch[0], batch[1], batch[-1]
        logits = self.net(inputs)
        self.batches.append((self.current_epoch, logits.detach().clone(), targets.clone(), indices.clone()))
        return {"loss": F.cross_entropy(logits, targets), "logits": logits}

    def on_train_end(self) -> None:
        torch.save(self.batches, self.out / f"batches_rank{self.global_rank}.pt")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


def fit(out: Path, devices: int = 1, strategy: str = "auto", as_dicts: bool = False,
        **callback_options) -> DynamicsCallback:
    out.mkdir(parents=True, exist_ok=True)   # the batch logs go there even when no dynamics do
    pl.seed_everything(0, verbose=False)
    callback = DynamicsCallback(SAMPLES, CLASSES, out=out, **callback_options)
    model = TinyClassifier(out)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=devices, strategy=strategy, callbacks=[callback],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=out)
    trainer.fit(model, DataLoader(IndexedDataset(dataset(as_dicts)), batch_size=BATCH, shuffle=True))
    return callback
