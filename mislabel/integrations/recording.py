"""What both framework callbacks share: a ``Recorder`` fed from the framework's hooks, whole epochs
only, a distributed sampler's padding recorded once, the run folder saved by rank 0.

The callbacks only translate their framework's hooks into four calls: ``_start`` when training
starts (the process group exists by then, so the Recorder knows its rank), ``_record`` per
training batch, ``_end_epoch`` and ``_finish``. What is stored is exactly what ``Recorder.update``
stores for the same logits, targets and indices.

Several processes (DDP): each rank feeds the Recorder its own batches and the Recorder sums the
ranks' epochs onto rank 0, as generate_td does. A distributed sampler pads an epoch with repeats
of a few samples so that every rank gets as many batches, and a repeat must not be recorded
twice. So each batch's indices are gathered from every rank (two small collectives per step; the
logits stay where they are) and a sample keeps its first sighting of the epoch, in step then rank
order; later sightings go to the Recorder as row -1 (trained on, not recorded). Every rank makes
the same choice from the same gathered indices, so no further exchange is needed.

Whole epochs: an epoch that did not see every sample (``max_steps`` ending training mid-epoch) is
left out of the saved dynamics with a warning when it is the last one (and a run without a whole
epoch saves nothing, with a warning); a partial epoch followed by another (a sampler or
``limit_train_batches`` that skips samples) stops training with one line.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mislabel.core import distributed
from mislabel.core.user_input import UserError, check_output_folder
from mislabel.training.recorder import Recorder

__all__ = ["DynamicsRecording"]


def _positive(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


class DynamicsRecording:
    """Records the training batches of one fit into a run folder that ``rank``, ``compare``,
    ``train_detector.py`` and ``denoise --td_dir`` accept.

    :param num_samples: training samples; the batches' indices run from 0 to ``num_samples - 1``.
    :param num_classes: the classifier's outputs.
    :param out: the run folder to write (``training_dynamics.npz`` and ``metadata.pth``).
    :param num_epochs: epochs to record; ``None``: as many as the trainer is set to run.
    :param true_labels: each sample's true label, when known (synthetic noise): ``metadata.pth`` then
        marks the flips, so ``train_detector.py`` can learn from the folder.
    :param recorder_options: passed to ``Recorder`` (``topk``, ``store``, ``sample_ids``).
    """

    def __init__(self, num_samples: int, num_classes: int, out: str | os.PathLike, num_epochs: int | None = None,
                 true_labels: np.ndarray | torch.Tensor | None = None, **recorder_options) -> None:
        for name, value in (("num_samples", num_samples), ("num_classes", num_classes)):
            if not _positive(value):
                raise UserError(f"{name} {value!r} must be a positive whole number")
        if num_epochs is not None and not _positive(num_epochs):
            raise UserError(f"num_epochs {num_epochs!r} must be a positive whole number (or None: the trainer's)")
        # checked here as well as by Recorder.save: a wrong shape must stop the run before training, not after
        if true_labels is not None and np.shape(true_labels) != (num_samples,):
            raise UserError(f"true_labels has shape {tuple(np.shape(true_labels))}; pass one label per sample "
                            f"({num_samples})")
        # the run folder is written after the whole fit: a file in its place must stop it before
        check_output_folder(out, "out", "pass the DynamicsCallback a folder to write the run into")
        self.num_samples, self.num_classes, self.num_epochs = int(num_samples), int(num_classes), num_epochs
        self.out, self.true_labels, self.recorder_options = Path(out), true_labels, recorder_options
        self.recorder: Recorder | None = None   # made when training starts; rank 0's holds the dynamics
        self.saved: Path | None = None          # training_dynamics.npz, once written
        self._seen: torch.Tensor | None = None  # this epoch's recorded samples (+ a sink for row -1)
        self._partial: tuple[int, int] | None = None

    # --- the four calls a callback makes -------------------------------------------------------------
    def _start(self, trainer_epochs: int | None, setting: str) -> None:
        """A fresh Recorder for ``num_epochs`` or the trainer's ``trainer_epochs`` (None when ``setting``
        leaves them open)."""
        epochs = self.num_epochs or trainer_epochs
        if epochs is None:
            raise UserError(f"the trainer's {setting} gives no fixed number of epochs; pass num_epochs=<epochs> "
                            "to the DynamicsCallback")
        self.recorder = Recorder(self.num_samples, self.num_classes, int(epochs), path=self.out,
                                 **self.recorder_options)
        self._seen, self._partial, self.saved = None, None, None

    def _record(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor) -> None:
        if self.recorder is None:
            raise RuntimeError("the DynamicsCallback recorded a batch before training started")
        if self._partial is not None:
            epoch, count = self._partial
            raise UserError(f"epoch {epoch} trained on {count} of the {self.num_samples} samples; the dynamics need "
                            "every sample in every epoch (check limit_train_batches, max_steps and the sampler)")
        indices = torch.as_tensor(indices).to(logits.device, torch.int64)
        if self._seen is None:
            self._seen = torch.zeros(self.num_samples + 1, dtype=torch.bool, device=logits.device)
        if distributed.world_size() > 1:
            indices = self._first_sightings(indices)
        self._seen[self._seen_rows(indices)] = True
        self.recorder.update(logits, targets, indices)  # refuses an index outside [-1, num_samples), naming it

    def _seen_rows(self, indices: torch.Tensor) -> torch.Tensor:
        """``indices`` as rows of ``_seen``: an index outside [0, num_samples) goes to the sink, so that the
        Recorder, not a bare IndexError here, refuses it (a num_samples smaller than the dataset)."""
        return torch.where((indices >= 0) & (indices < self.num_samples), indices, self.num_samples)

    def _end_epoch(self) -> None:
        recorded = 0 if self._seen is None else int(self._seen[:self.num_samples].sum())
        if recorded == self.num_samples:
            self.recorder.next_epoch()
        else:
            self._partial = (self.recorder.epoch, recorded)
        self._seen = None

    def _finish(self) -> Path | None:
        """Save the whole epochs on rank 0 (every rank returns the file's path). A run with no whole
        epoch (``fast_dev_run``, a short ``max_steps``) saves nothing and says so; the trained model is
        the user's either way."""
        if self.recorder is None:
            return None
        if self._seen is not None:   # training stopped inside an epoch without the framework closing it
            self._end_epoch()
        if self._partial is not None and distributed.is_main():
            epoch, count = self._partial
            warnings.warn(f"the last epoch ({epoch}) trained on {count} of the {self.num_samples} samples and is "
                          f"left out of {self.out}", stacklevel=2)
        if self.recorder.epoch == 0:
            if distributed.is_main():
                warnings.warn(f"no whole epoch was trained, so no dynamics were saved to {self.out}", stacklevel=2)
            return None
        self.saved = self.recorder.save(self.out, true_labels=self.true_labels)
        self.recorder.cleanup()
        return self.saved

    # --- several processes -----------------------------------------------------------------------------
    def _first_sightings(self, indices: torch.Tensor) -> torch.Tensor:
        """``indices`` with -1 where another rank (or an earlier step) has the sample this epoch."""
        world, me, count = distributed.world_size(), distributed.rank(), len(indices)
        sizes = [torch.zeros(1, dtype=torch.int64, device=indices.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([count], dtype=torch.int64, device=indices.device))
        longest = int(torch.cat(sizes).max())  # ranks may hold batches of different sizes
        padded = torch.full((longest,), -1, dtype=torch.int64, device=indices.device)
        padded[:count] = indices
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        everyone = torch.cat(parts)                                   # rank order; -1 = no sample
        distinct, inverse = torch.unique(everyone, return_inverse=True)
        positions = torch.arange(len(everyone), device=everyone.device)
        first = torch.full((len(distinct),), len(everyone), dtype=torch.int64, device=everyone.device)
        first.scatter_reduce_(0, inverse, positions, "amin")
        fresh = (everyone >= 0) & (first[inverse] == positions) & ~self._seen[self._seen_rows(everyone)]
        # the other ranks' samples too: every rank keeps the same mask
        self._seen[self._seen_rows(everyone[fresh])] = True
        return indices.masked_fill(~fresh[me * longest:me * longest + count], -1)
