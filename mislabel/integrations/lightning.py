"""PyTorch Lightning: record training dynamics by adding one callback.

    from mislabel.integrations.lightning import DynamicsCallback, IndexedDataset

    loader = DataLoader(IndexedDataset(train_set), batch_size=128, shuffle=True)   # batches gain indices
    trainer = L.Trainer(max_epochs=20, callbacks=[DynamicsCallback(len(train_set), 10, out="my_run")])
    trainer.fit(model, loader)                  # my_run/ then holds training_dynamics.npz
    table = mislabel.rank("my_run")

The convention: a training batch is ``(inputs, targets, indices)`` or a dict with ``"index"`` and
``"labels"`` (or ``"label"``), and ``training_step`` returns ``{"loss": loss, "logits": logits}``.
``IndexedDataset`` makes such batches from ``(inputs, target)`` or dict items; ``logits`` need not
be detached. Under DDP (``strategy="ddp"``, any launcher) every rank records its own batches, the
padding of Lightning's distributed sampler is recorded once, and rank 0 alone writes the folder
(see ``mislabel.integrations.recording``). Built on ``lightning.pytorch``; a Trainer of the older
``pytorch_lightning`` package runs it as well.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from mislabel.core.user_input import UserError
from mislabel.integrations import missing_extra
from mislabel.integrations.indexed import INDEX_KEY, IndexedDataset
from mislabel.integrations.recording import DynamicsRecording

try:
    import lightning.pytorch as pl
except ImportError as err:
    raise missing_extra("lightning", err) from None

__all__ = ["DynamicsCallback", "IndexedDataset"]

LABEL_KEYS = ("labels", "label")   # where a dict batch may hold the assigned labels
NO_INDICES = ("the training batch carries no sample indices; DynamicsCallback needs batches (inputs, targets, "
              f"indices) or dicts with {INDEX_KEY!r} and 'labels': wrap the training set in "
              "mislabel.integrations.IndexedDataset")


def _targets_and_indices(batch) -> tuple:
    if isinstance(batch, Mapping):
        label_key = next((key for key in LABEL_KEYS if key in batch), None)
        if INDEX_KEY in batch and label_key is not None:
            return batch[label_key], batch[INDEX_KEY]
    elif isinstance(batch, Sequence) and len(batch) == 3:
        return batch[1], batch[2]
    raise UserError(NO_INDICES)


class DynamicsCallback(DynamicsRecording, pl.Callback):
    """A Lightning ``Callback`` that records each training batch's logits and, when training ends,
    saves the run folder (rank 0). Parameters as ``DynamicsRecording``'s: ``num_samples``,
    ``num_classes``, ``out``, then optionally ``num_epochs`` (``None``: the Trainer's ``max_epochs``),
    ``true_labels`` and ``Recorder`` options."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer.max_epochs if trainer.max_epochs not in (None, -1) else None, "max_epochs")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        targets, indices = _targets_and_indices(batch)
        if not isinstance(outputs, Mapping) or "logits" not in outputs:
            raise UserError("training_step must return {'loss': loss, 'logits': logits} for the DynamicsCallback; "
                            f"it returned {type(outputs).__name__}"
                            + (f" with keys {sorted(outputs)}" if isinstance(outputs, Mapping) else ""))
        self._record(outputs["logits"], targets, indices)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end_epoch()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish()
