"""Training-dynamics recorder: every sample's class probabilities, margin and prediction per epoch.

Storage is preallocated float16 indexed by sample row and written a batch at a time with tensor
indexing. During an epoch the values collect in device-side buffers, so a GPU run has no host
sync per batch; ``next_epoch`` copies them to host memory once.
"""
from __future__ import annotations

import numpy as np
import torch

from util import Dynamics, save_dynamics

__all__ = ["Recorder", "margins"]

# Reordering channels touches the whole [N, E, C] array; doing it this many rows at a time keeps
# the extra memory to a few MB instead of a second full copy.
REORDER_CHUNK_ROWS = 4096


def margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Assigned logit minus the largest other logit (AUM's per-epoch margin)."""
    assigned = logits.gather(1, targets[:, None]).squeeze(1)
    others = logits.scatter(1, targets[:, None], float("-inf"))
    return assigned - others.max(dim=1).values


class Recorder:
    """Collects per-epoch dynamics for ``num_samples`` rows; ``save`` writes training_dynamics.npz.

    :param num_samples: rows to record (row ``i`` is the sample the caller passes as index ``i``).
    :param num_classes: classes of the classifier's output.
    :param num_epochs: epochs that will be recorded.
    :param sample_ids: the dataset index of each row, stored as ``indices`` (default: the row).
    """

    def __init__(self, num_samples: int, num_classes: int, num_epochs: int,
                 sample_ids: np.ndarray | None = None) -> None:
        self.num_samples, self.num_classes, self.num_epochs = num_samples, num_classes, num_epochs
        self.sample_ids = np.arange(num_samples) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        self.probs = np.zeros((num_samples, num_epochs, num_classes), dtype=np.float16)
        self.margin = np.zeros((num_samples, num_epochs), dtype=np.float16)
        self.pred = np.zeros((num_samples, num_epochs), dtype=np.int16)
        self.assigned = np.full(num_samples, -1, dtype=np.int64)
        self.epoch = 0
        self._buffers: dict[str, torch.Tensor] | None = None

    def _epoch_buffers(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._buffers is None or self._buffers["probs"].device != device:
            self._buffers = {
                "probs": torch.zeros(self.num_samples, self.num_classes, dtype=torch.float16, device=device),
                "margin": torch.zeros(self.num_samples, dtype=torch.float16, device=device),
                "pred": torch.zeros(self.num_samples, dtype=torch.int16, device=device),
                "targets": torch.full((self.num_samples,), -1, dtype=torch.int64, device=device),
                "seen": torch.zeros(self.num_samples, dtype=torch.bool, device=device),
            }
        return self._buffers

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor) -> None:
        """Record one batch: ``logits`` [B, K] (any dtype/device), assigned ``targets`` and row ``indices``."""
        logits = logits.detach().float()
        buffers = self._epoch_buffers(logits.device)
        indices = indices.to(logits.device)
        targets = targets.to(logits.device)
        buffers["probs"][indices] = torch.softmax(logits, dim=1).half()
        buffers["margin"][indices] = margins(logits, targets).half()
        buffers["pred"][indices] = logits.argmax(dim=1).to(torch.int16)
        buffers["targets"][indices] = targets
        buffers["seen"][indices] = True

    def next_epoch(self) -> None:
        """Close the epoch: check every row was seen once more, copy the buffers to host memory."""
        if self.epoch >= self.num_epochs:
            raise RuntimeError(f"recorder holds {self.num_epochs} epochs; next_epoch called once too often")
        buffers = self._buffers
        if buffers is None or not bool(buffers["seen"].all()):
            missing = self.num_samples if buffers is None else int((~buffers["seen"]).sum())
            raise RuntimeError(f"epoch {self.epoch}: {missing} of {self.num_samples} samples were not recorded")
        self.probs[:, self.epoch] = buffers["probs"].cpu().numpy()
        self.margin[:, self.epoch] = buffers["margin"].cpu().numpy()
        self.pred[:, self.epoch] = buffers["pred"].cpu().numpy()
        self.assigned = buffers["targets"].cpu().numpy()
        buffers["seen"].zero_()
        self.epoch += 1

    def dynamics(self) -> Dynamics:
        """The recorded epochs with channel 0 = assigned label, others by mean probability (descending)."""
        epochs = self.epoch
        td = np.empty((self.num_samples, epochs, self.num_classes), dtype=np.float16)
        labels = np.empty((self.num_samples, self.num_classes), dtype=np.int64)
        for start in range(0, self.num_samples, REORDER_CHUNK_ROWS):
            rows = slice(start, start + REORDER_CHUNK_ROWS)
            chunk = self.probs[rows, :epochs]
            mean = chunk.mean(axis=1, dtype=np.float32)
            np.put_along_axis(mean, self.assigned[rows, None], np.inf, axis=1)
            order = np.argsort(-mean, axis=1, kind="stable")
            labels[rows] = order
            td[rows] = np.take_along_axis(chunk, order[:, None, :], axis=2)
        return Dynamics(td=td, labels=labels, margin=self.margin[:, :epochs].copy(),
                        pred=self.pred[:, :epochs].copy(), indices=self.sample_ids.copy())

    def save(self, folder) -> None:
        save_dynamics(folder, self.dynamics())
