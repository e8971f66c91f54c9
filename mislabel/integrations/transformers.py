"""Hugging Face ``Trainer``: record training dynamics for sequence classification.

    from mislabel.integrations.transformers import DynamicsCallback, DynamicsTrainer, IndexedDataset

    trainer = DynamicsTrainer(model=model, args=args, train_dataset=IndexedDataset(tokenized_train),
                              callbacks=[DynamicsCallback(len(tokenized_train), num_labels, out="my_run")])
    trainer.train()                             # my_run/ then holds training_dynamics.npz

Why a Trainer subclass as well as a callback: a ``TrainerCallback`` is told that a step ended, but
not what the model returned (``on_step_end`` gets no outputs, no inputs), so it cannot see the
logits. ``DynamicsTrainer`` overrides ``compute_loss``, which holds both the batch and the model's
outputs, and hands each training batch's logits, ``labels`` and indices to its DynamicsCallbacks;
the callback keeps the Trainer's rhythm (epoch ends, train end, saving). Everything else is the
plain ``Trainer``: use ``DynamicsTrainer`` where you used ``Trainer`` (or derive your own subclass
from it).

Indices: every training row needs an ``"index"`` field, the sample's position in the training
set; ``IndexedDataset(train_set)`` adds it, or ``dataset.add_column("index", range(len(dataset)))``
for a ``datasets.Dataset``. ``DynamicsTrainer`` keeps that field through ``remove_unused_columns``
(it adds ``"index"`` to the columns the Trainer keeps) and through the data collator (it takes the
index out before your collator runs and puts it back as a tensor after), and takes it out again
before the model is called, so the model never sees it. Evaluation batches are not recorded.
Under DDP (``torchrun``) the Trainer's sampler padding is recorded once and rank 0 saves the folder.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

import torch

from mislabel.core.user_input import UserError
from mislabel.integrations import missing_extra
from mislabel.integrations.indexed import INDEX_KEY, IndexedDataset
from mislabel.integrations.recording import DynamicsRecording

try:
    import transformers
except ImportError as err:
    raise missing_extra("transformers", err) from None

__all__ = ["DynamicsCallback", "DynamicsTrainer", "IndexedDataset"]


class DynamicsCallback(DynamicsRecording, transformers.TrainerCallback):
    """A ``TrainerCallback`` that closes each epoch of the dynamics and saves the run folder when
    training ends (rank 0); ``DynamicsTrainer`` feeds it the logits. Parameters as
    ``DynamicsRecording``'s: ``num_samples``, ``num_classes``, ``out``, then optionally
    ``num_epochs`` (``None``: the Trainer's number of epochs), ``true_labels`` and ``Recorder`` options."""

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self._start(state.num_train_epochs if state.num_train_epochs < sys.maxsize else None,
                    "max_steps on a dataset without a length")

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self._seen is None:
            raise UserError("the DynamicsCallback saw a training step but no logits: a TrainerCallback cannot see "
                            "them, so train with mislabel.integrations.transformers.DynamicsTrainer in place of "
                            "Trainer")

    def on_epoch_end(self, args, state, control, **kwargs) -> None:
        self._end_epoch()

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self._finish()


class IndexKeepingCollator:
    """Runs the Trainer's data collator on the rows without ``"index"``, then adds the batch's
    indices as an int64 tensor: any collator works, whatever it makes of unknown fields."""

    def __init__(self, collate: Callable) -> None:
        self.collate = collate

    def __call__(self, features: list[Mapping]) -> Mapping:
        if not features or INDEX_KEY not in features[0]:
            return self.collate(features)   # no indices to keep (evaluation rows, say)
        batch = self.collate([{key: value for key, value in row.items() if key != INDEX_KEY} for row in features])
        batch[INDEX_KEY] = torch.tensor([row[INDEX_KEY] for row in features], dtype=torch.int64)
        return batch


class DynamicsTrainer(transformers.Trainer):
    """``transformers.Trainer`` whose ``compute_loss`` feeds each training batch to the
    ``DynamicsCallback`` among its callbacks (see the module's docstring for why)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.data_collator = IndexKeepingCollator(self.data_collator)

    def _set_signature_columns_if_needed(self) -> None:
        """The columns ``remove_unused_columns`` keeps: the model's arguments, the labels and ``"index"``."""
        super()._set_signature_columns_if_needed()
        if INDEX_KEY not in self._signature_columns:
            self._signature_columns.append(INDEX_KEY)

    def compute_loss(self, model: torch.nn.Module, inputs: Mapping, return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        inputs = dict(inputs)
        indices = inputs.pop(INDEX_KEY, None)
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        callbacks = [callback for callback in self.callback_handler.callbacks if isinstance(callback, DynamicsCallback)]
        if not callbacks:
            raise UserError("DynamicsTrainer records through a DynamicsCallback; pass callbacks=[DynamicsCallback("
                            "num_samples, num_classes, out=...)]")
        if indices is None:
            raise UserError(f"the training batch carries no sample indices (no {INDEX_KEY!r} field); wrap the "
                            "training set in mislabel.integrations.IndexedDataset")
        labels = inputs.get("labels")   # read first: the parent takes them out when it smooths labels
        if labels is None:
            raise UserError("the training batch has no 'labels'; the dynamics are recorded against each sample's "
                            "assigned label")
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[1]
        for callback in callbacks:
            callback._record(logits, labels, indices)
        return (loss, outputs) if return_outputs else loss
