"""What a caller hands the Recorder, checked: its sizes and sample ids, every batch of ``update``, and
``save``'s true labels. Misuse is refused with a ``UserError`` naming the argument and what was
expected, before it can overwrite or double-count a row (torch would say "index 4 is out of bounds",
or say nothing at all for a negative index, which wraps to the end).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from mislabel.core.dynamics import MAX_CLASSES
from mislabel.core.user_input import UserError

__all__ = ["CHECKED_EACH_BATCH", "NonFiniteLogits", "RowGuard", "check_batch_shapes", "check_memory", "check_sizes",
           "physical_memory", "checked_sample_ids",
           "checked_true_labels"]

# Devices on which update reads its checks' verdict at once (free on the CPU); elsewhere that read would
# make every training step wait for the device, so refused entries are reported when the epoch closes.
CHECKED_EACH_BATCH = frozenset({"cpu"})


def check_sizes(num_samples: int, num_classes: int, num_epochs: int) -> None:
    for name, value, low in (("num_samples", num_samples, 1), ("num_classes", num_classes, 2),
                             ("num_epochs", num_epochs, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UserError(f"{name} is {value!r}, expected a whole number >= {low}")
    if num_classes > MAX_CLASSES:
        raise UserError(f"num_classes is {num_classes}, but at most {MAX_CLASSES} classes can be recorded "
                        "(pred is stored as int16)")


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def check_memory(num_samples: int, num_epochs: int, channels: int, topk: bool, store_bytes: int, store: str) -> None:
    """Refuse, with the sizes, what would end in a MemoryError: one epoch's buffers (every row's ``channels``
    probabilities, margin, prediction and target, held in memory whatever the store, and each row's id and
    label) plus ``store_bytes`` (a RAM store's)."""
    per_row = channels * (10 if topk else 2) + 36  # float16 values (+ int64 class ids), then the rest
    needed, available = (num_samples + 1) * per_row + store_bytes, physical_memory()
    if needed > available:
        fix = ("record fewer samples or classes (topk=...)" if store == "memmap" else
               "pass path=<run folder> and store='memmap', or record fewer samples, epochs or classes (topk=...)")
        raise UserError(f"recording {num_samples} samples x {num_epochs} epochs x {channels} classes in {store} needs "
                        f"{needed / 2**30:.1f} GiB, more than this machine's {available / 2**30:.1f} GiB of memory; "
                        f"{fix}")


def checked_sample_ids(sample_ids: np.ndarray | None, num_samples: int) -> np.ndarray:
    """int64 [num_samples]: the dataset index of each row, each once (default: the row)."""
    ids = np.arange(num_samples) if sample_ids is None else np.asarray(sample_ids)
    if ids.shape != (num_samples,) or not np.issubdtype(ids.dtype, np.integer):
        raise UserError(f"sample_ids is {ids.dtype} {list(ids.shape)}; it needs one integer id per row ({num_samples})")
    ordered = np.sort(ids)
    if ordered[0] < 0:
        raise UserError(f"sample_ids holds {int(ordered[0])}, but dataset indices are >= 0")
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated):
        raise UserError(f"sample_ids holds {int(repeated[0])} more than once, but each row is a different sample; "
                        "pass each row's dataset index once")
    return ids.astype(np.int64)


def checked_true_labels(true_labels: np.ndarray | torch.Tensor, num_samples: int, num_classes: int) -> np.ndarray:
    """``save``'s true_labels as int64 [num_samples], class ids in range."""
    rows = np.asarray(true_labels.cpu() if isinstance(true_labels, torch.Tensor) else true_labels)
    if rows.shape != (num_samples,) or not np.issubdtype(rows.dtype, np.integer):
        raise UserError(f"true_labels is {rows.dtype} {list(rows.shape)}; pass one integer label per row "
                        f"({num_samples})")
    if rows.min() < 0 or rows.max() >= num_classes:
        bad = int(rows.min()) if rows.min() < 0 else int(rows.max())
        raise UserError(f"true_labels holds {bad}, but classes lie in [0, num_classes={num_classes})")
    return rows.astype(np.int64)


def check_batch_shapes(logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor, num_classes: int) -> None:
    """``update``'s argument types and shapes (no device sync needed)."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.ndim != 2 \
            or logits.shape[1] != num_classes:
        got = f"{logits.dtype} {list(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UserError(f"logits is {got}, expected a float tensor [batch, num_classes={num_classes}]")
    for name, value in (("targets", targets), ("indices", indices)):
        if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.is_complex() \
                or value.dtype == torch.bool or value.shape != (len(logits),):
            got = f"{value.dtype} {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            raise UserError(f"{name} is {got}, expected an integer tensor [batch={len(logits)}] (one per row of "
                            "logits)")


class NonFiniteLogits(UserError):
    """``update`` was given NaN or inf logits: the model diverged (``fit`` words it as its loss turning
    non-finite, naming --lr)."""


class RowGuard:
    """One epoch's record of the rows ``update`` wrote, on the logits' device: ``count`` [num_samples + 1]
    says how many times each row was recorded (the last row is the padding sink, for index -1), and
    entries that would corrupt the epoch are refused:

    an index outside [-1, num_samples), a target outside [0, num_classes), logits holding NaN or inf
    (a diverged model: its dynamics would be refused by every reader later), or a row already recorded
    this epoch (earlier in the same batch included). On a ``CHECKED_EACH_BATCH`` device ``rows`` raises
    at once, before anything is written; elsewhere the refused entries go to the sink and ``close``
    raises, naming the first and its batch.
    """

    def __init__(self, num_samples: int, num_classes: int, device: torch.device) -> None:
        self.num_samples, self.num_classes = num_samples, num_classes
        self.count = torch.zeros(num_samples + 1, dtype=torch.int32, device=device)
        self.batch = 0  # update calls this epoch, for the refusal's words
        # how many, then the first's index, target, batch and whether its logits were non-finite
        self._refused = torch.zeros(5, dtype=torch.int64, device=device)

    def rows(self, targets: torch.Tensor, indices: torch.Tensor, finite: torch.Tensor, epoch: int) -> torch.Tensor:
        """The buffer rows to write the batch into; ``finite`` [B]: whether each row's logits are finite."""
        self.batch += 1
        if indices.device.type in CHECKED_EACH_BATCH:
            return self._rows_checked_now(targets, indices, finite, epoch)
        sink = self.num_samples
        outside = (indices < -1) | (indices >= sink) | (targets < 0) | (targets >= self.num_classes)
        rows = torch.where(outside | (indices == -1), sink, indices)
        self.count.index_add_(0, rows, torch.ones_like(rows, dtype=self.count.dtype))
        refused = outside | ~finite | ((rows != sink) & (self.count[rows] > 1))
        first = refused.int().argmax()
        news = (self._refused[0] == 0) & refused.any()
        where = torch.stack([indices[first], targets[first], torch.full_like(indices[first], self.batch),
                             (~finite[first]).long()])
        self._refused[1:] = torch.where(news, where, self._refused[1:])
        self._refused[0] += refused.sum()
        return torch.where(refused, sink, rows)

    def _rows_checked_now(self, targets: torch.Tensor, indices: torch.Tensor, finite: torch.Tensor,
                          epoch: int) -> torch.Tensor:
        """``rows`` for CPU tensors, read as numpy arrays over the same memory: a few microseconds per
        batch, where each of the dozen torch calls of the device path costs several."""
        index, target, count = indices.numpy(), targets.numpy(), self.count.numpy()
        outside = (index < -1) | (index >= self.num_samples) | (target < 0) | (target >= self.num_classes)
        if outside.any():
            first = int(np.argmax(outside))
            raise UserError(self._refusal(int(index[first]), int(target[first]), epoch))
        diverged = ~finite.numpy()
        if diverged.any():
            raise NonFiniteLogits(self._refusal(int(index[np.argmax(diverged)]), 0, epoch, self.batch, non_finite=True))
        real = index[index != -1]
        ordered = np.sort(real)
        repeated = np.concatenate([ordered[1:][ordered[1:] == ordered[:-1]], real[count[real] > 0]])
        if len(repeated):
            raise UserError(self._refusal(int(repeated[0]), 0, epoch))
        count[real] += 1
        return torch.from_numpy(np.where(index == -1, self.num_samples, index))

    def close(self, epoch: int) -> None:
        """Raise for entries an accelerator's ``rows`` refused this epoch (one device sync per epoch)."""
        refused, index, target, batch, non_finite = self._refused.tolist()
        if refused:
            refusal = NonFiniteLogits if non_finite else UserError
            raise refusal(f"epoch {epoch}: update refused {refused} entries, the first because "
                          + self._refusal(index, target, epoch, batch, bool(non_finite)))

    def reset(self) -> None:
        self.count.zero_()
        self._refused.zero_()
        self.batch = 0

    def _refusal(self, index: int, target: int, epoch: int, batch: int = 0, non_finite: bool = False) -> str:
        if non_finite:
            return (f"the logits of batch {batch} of epoch {epoch} hold NaN or inf (at index {index}), so the model "
                    "diverged or its input holds NaN; lower the learning rate or check the data, and record again")
        if not -1 <= index < self.num_samples:
            return f"indices holds {index}, but rows lie in [0, num_samples={self.num_samples}) (-1: padding)"
        if not 0 <= target < self.num_classes:
            return f"targets holds {target} (at index {index}), but classes lie in [0, num_classes={self.num_classes})"
        return (f"index {index} was recorded twice in epoch {epoch}; each row is recorded once per epoch "
                "(call next_epoch() between epochs)")
