"""Training-dynamics recorder: every sample's class probabilities, margin and prediction per epoch.

Storage is preallocated float16 indexed by epoch and sample row, written a batch at a time with
tensor indexing. During an epoch the values collect in device-side buffers, so a GPU run has no
host sync per batch; ``next_epoch`` copies them to the store once.

Two stores hold the finished epochs: ``ram`` (numpy arrays) and ``memmap`` (``.npy`` files under
``<path>/td_store/``, opened only while an epoch is written or read, so resident memory stays at
one epoch's buffers however long the run). The arrays are epoch-major ([E, N, S]) so that one
epoch is one contiguous block on disk. ``save`` reorders the channels a chunk of samples at a
time (the next chunk in a worker thread while the current one is written) and streams them into
``training_dynamics.npz``; no second full copy is ever built.

With ``topk=K`` only the assigned class and the K most probable others are kept per update
(S = K + 1 values plus their class ids instead of all C probabilities); margin and prediction
are computed from the full logits, so they stay exact.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from mislabel.core import distributed
from mislabel.core.run_options import STORES
from mislabel.core.dynamics import SUMMARY_FILE, TD_FILE, Dynamics, write_metadata, write_td_file
from mislabel.core.files import atomic_write
from mislabel.core.streaming import computed_ahead, read_chunks
from mislabel.core.user_input import UserError, check_output_folder
from mislabel.training.recorder_input import (RowGuard, check_batch_shapes, check_memory, check_sizes,
                                               checked_sample_ids, checked_true_labels, physical_memory)

__all__ = ["Recorder", "margins", "STORES", "STORE_DIR"]

STORE_DIR = "td_store"
# "auto" memory-maps when the stored dynamics would take more than this share of physical RAM.
AUTO_MEMMAP_SHARE = 0.25
# Reordering touches every stored value; a chunk of samples whose stored values take this many
# bytes keeps the extra memory to a few such chunks (about 0.05 bytes per value at 1e9 values)
# while each torch call still moves enough data to run at memory speed.
REORDER_CHUNK_BYTES = 8 * 2**20
# Copy unit when streaming the labels' staging file into the npz archive and when transposing
# margin and pred to per-sample rows: small, as each chunk adds to the peak.
COPY_BYTES = 2**20


def margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Assigned logit minus the largest other logit (AUM's per-epoch margin)."""
    return _margin_column(logits, targets[:, None])[:, 0]


def _margin_column(logits: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """``margins`` as [B, 1] from targets as [B, 1], the shape gather and scatter take."""
    return logits.gather(1, column) - logits.scatter(1, column, float("-inf")).amax(dim=1, keepdim=True)


class Recorder:
    """Collects per-epoch dynamics for ``num_samples`` rows; ``save`` writes training_dynamics.npz.

    :param num_samples: rows to record (row ``i`` is the sample the caller passes as index ``i``).
    :param num_classes: classes of the classifier's output.
    :param num_epochs: epochs that will be recorded.
    :param sample_ids: the dataset index of each row, stored as ``indices`` (default: the row).
    :param path: run folder; needed by the ``memmap`` store and by ``checkpoint``/``restore``.
    :param store: ``ram``, ``memmap`` or ``auto`` (memmap when a ``path`` is given and the
        dynamics would exceed a quarter of physical memory).
    :param topk: keep the assigned class plus the ``topk`` most probable others per update
        instead of every class (``None``: all classes).
    """

    def __init__(self, num_samples: int, num_classes: int, num_epochs: int, sample_ids: np.ndarray | None = None,
                 path: str | os.PathLike | None = None, store: str = "auto", topk: int | None = None) -> None:
        if store not in STORES:
            raise UserError(f"unknown dynamics store {store!r}; choose one of: {', '.join(STORES)}")
        if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
            raise UserError(f"topk {topk!r} must be a positive whole number of classes (or None for all)")
        if store == "memmap" and path is None:
            raise UserError("the memmap store needs a folder for its files; pass path=<run folder> or store='ram'")
        check_sizes(num_samples, num_classes, num_epochs)
        if path is not None:
            check_output_folder(path, "path", "pass the run folder to record into (a new or existing folder)")
        self.num_samples, self.num_classes, self.num_epochs = num_samples, num_classes, num_epochs
        self.topk = topk if topk is not None and topk + 1 < num_classes else None
        self.channels = num_classes if self.topk is None else self.topk + 1
        self.path = None if path is None else Path(path)
        class_dtype = np.int16 if num_classes <= np.iinfo(np.int16).max else np.int32
        self._specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {
            "probs": ((num_epochs, num_samples, self.channels), np.dtype(np.float16)),
            "margin": ((num_epochs, num_samples), np.dtype(np.float16)),
            "pred": ((num_epochs, num_samples), np.dtype(np.int16)),
        }
        if self.topk is not None:
            self._specs["classes"] = ((num_epochs, num_samples, self.channels), np.dtype(class_dtype))
        if store == "auto":
            too_large = path is not None and self.stored_bytes > AUTO_MEMMAP_SHARE * physical_memory()
            store = "memmap" if too_large else "ram"
        check_memory(num_samples, num_epochs, self.channels, self.topk is not None,
                     self.stored_bytes if store == "ram" else 0, store)
        self.sample_ids = checked_sample_ids(sample_ids, num_samples)
        self.store = store
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self._ram = ({name: np.zeros(shape, dtype) for name, (shape, dtype) in self._specs.items()}
                     if store == "ram" and self.rank == 0 else None)
        self.assigned = np.full(num_samples, -1, dtype=np.int64)
        self.epoch = 0
        self._persisted = 0
        self._buffers: dict[str, torch.Tensor] | None = None
        self._guard: RowGuard | None = None  # set with the buffers

    # --- description ---------------------------------------------------------------------------
    @property
    def stored_bytes(self) -> int:
        return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in self._specs.values())

    def describe(self) -> str:
        """One log line saying what is kept and where."""
        where = f"memory-mapped under {self._store_dir}" if self.store == "memmap" else "in RAM"
        kept = (f"all {self.num_classes} class probabilities" if self.topk is None else
                f"the assigned class + the {self.topk} most probable others of {self.num_classes} classes "
                f"(td keeps {self.channels} channels per sample: the assigned class, then the classes with the "
                "highest mean stored probability; a class outside an epoch's top counts as 0 there)")
        return (f"recording {kept} for {self.num_samples} samples x {self.num_epochs} epochs, "
                f"{self.stored_bytes / 2**20:.1f} MiB {where}")

    @property
    def _store_dir(self) -> Path:
        if self.path is None:
            raise UserError("this recorder has no folder; create it with path=<run folder>")
        return self.path / STORE_DIR

    # --- recording -----------------------------------------------------------------------------
    def _epoch_buffers(self, device: torch.device) -> dict[str, torch.Tensor]:
        """One epoch's values per row, on the logits' device; row ``num_samples`` is the sink for row -1
        (padding), and ``_guard`` counts how many times each row was recorded this epoch. All but probs
        (C values per row) keep update's dtypes and shapes: ``next_epoch`` narrows them once per epoch."""
        if self._buffers is None or self._buffers["probs"].device != device:
            count, channels = self.num_samples + 1, self.channels
            self._buffers = {
                "probs": torch.zeros(count, channels, dtype=torch.float16, device=device),
                "margin": torch.zeros(count, 1, dtype=torch.float32, device=device),
                "pred": torch.zeros(count, 1, dtype=torch.int64, device=device),
                "targets": torch.full((count, 1), -1, dtype=torch.int64, device=device),
            }
            if self.topk is not None:
                self._buffers["classes"] = torch.zeros(count, channels, dtype=torch.int64, device=device)
            self._guard = RowGuard(self.num_samples, self.num_classes, device)
        return self._buffers

    def update(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor) -> None:
        """Record one batch: ``logits`` [B, C] (any dtype/device), assigned ``targets`` [B] and row ``indices``
        [B] (``-1``: train-only padding, not recorded). Each row is recorded once per epoch; an index outside
        [-1, num_samples), a target outside [0, num_classes), NaN or inf logits (naming the batch) or a row
        recorded twice is refused, naming it."""
        # a small CPU batch costs microseconds per torch call whatever its size, once per training step,
        # so: no autograd context (detached logits record no graph), margin/pred/targets kept as computed,
        # softmax by hand reusing the row maxima for pred (torch.softmax and argmax are slower here)
        check_batch_shapes(logits, targets, indices, self.num_classes)
        logits = logits.detach()
        if logits.dtype != torch.float32:
            logits = logits.float()
        device = logits.device
        buffers = self._epoch_buffers(device)
        column = targets.to(device)[:, None]  # no-ops when already there
        indices = self._guard.rows(column[:, 0], indices.to(device), torch.isfinite(logits).all(dim=1), self.epoch)
        top = logits.max(dim=1, keepdim=True)
        probs = (logits - top.values).exp_()
        probs /= probs.sum(dim=1, keepdim=True)
        if self.topk is None:
            buffers["probs"][indices] = probs.half()
        else:
            others = probs.scatter(1, column, -1.0).topk(self.topk, dim=1)
            buffers["probs"][indices] = torch.cat([probs.gather(1, column), others.values], 1).half()
            buffers["classes"][indices] = torch.cat([column, others.indices], 1)
        buffers["margin"][indices] = _margin_column(logits, column)
        buffers["pred"][indices] = top.indices
        buffers["targets"][indices] = column

    def _open(self, name: str, mode: str) -> np.ndarray:
        """The store's array ``name``; a memmap is opened on demand so unused epochs stay on disk."""
        if self._ram is not None:
            return self._ram[name]
        file = self._store_dir / f"{name}.npy"
        if mode == "w+":
            file.parent.mkdir(parents=True, exist_ok=True)
            shape, dtype = self._specs[name]
            return np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape)
        return np.lib.format.open_memmap(file, mode=mode)

    def _sum_onto_rank0(self, buffers: dict[str, torch.Tensor]) -> None:
        """Add every rank's epoch buffers into rank 0's. Each row was written by one rank and is zero
        on the others (its -1 target made 0 first), so the sums are the values, and the guard's ``count``
        becomes how many times the row was recorded over all ranks."""
        buffers["targets"].clamp_(min=0)
        for tensor in (*buffers.values(), self._guard.count):
            dist.reduce(tensor, dst=0)

    def next_epoch(self) -> None:
        """Close the epoch: check every row was recorded exactly once, copy the buffers to the store."""
        if self.epoch >= self.num_epochs:
            raise UserError(f"next_epoch called after all num_epochs={self.num_epochs} epochs were recorded")
        buffers = self._buffers
        if buffers is None:
            raise UserError(f"epoch {self.epoch}: none of the {self.num_samples} samples were recorded; call "
                            "update() with every batch before next_epoch()")
        self._guard.close(self.epoch)
        seen = self._guard.count[:self.num_samples]
        if self.world_size > 1:
            self._sum_onto_rank0(buffers)
        if self.rank == 0:
            missing = torch.nonzero(seen == 0)
            if len(missing):
                raise UserError(f"epoch {self.epoch}: {len(missing)} of {self.num_samples} samples were not "
                                f"recorded (the first: index {int(missing[0, 0])}); pass every row's index to "
                                "update() once per epoch")
            repeated = torch.nonzero(seen > 1)
            if len(repeated):
                raise UserError(f"epoch {self.epoch}: {len(repeated)} samples were recorded more than once (the "
                                f"first: index {int(repeated[0, 0])}); each row is recorded once per epoch")
            for name in self._specs:
                array = self._open(name, "w+" if self.epoch == 0 else "r+")
                # copy_ narrows to the stored dtype on the way (rounding as .half() does)
                torch.from_numpy(array[self.epoch]).copy_(buffers[name][:self.num_samples].view(array.shape[1:]))
                if isinstance(array, np.memmap):
                    array.flush()
                del array
            self.assigned = buffers["targets"][:self.num_samples, 0].cpu().numpy().copy()
        for tensor in buffers.values() if self.world_size > 1 else ():
            tensor.zero_()  # a rank's rows change every epoch, so its other rows must read 0 in the sum
        buffers["targets"].fill_(-1)
        self._guard.reset()
        self.epoch += 1

    # --- resume ----------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Make every finished epoch durable under ``path`` so ``restore`` can continue a killed run.

        The memmap store is already on disk (flushed by ``next_epoch``); the RAM store writes each
        new epoch once, as its own small file. Every file is written atomically. Rank 0 only.
        """
        if self.rank != 0:
            self._persisted = self.epoch
            return
        folder = self._store_dir
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_savez(folder / "assigned.npz", {"assigned": self.assigned})
        if self._ram is not None:
            for epoch in range(self._persisted, self.epoch):
                arrays = {name: array[epoch] for name, array in self._ram.items()}
                _atomic_savez(folder / f"epoch{epoch:05d}.npz", arrays)
        self._persisted = self.epoch

    def restore(self, epochs: int) -> None:
        """Pick up the first ``epochs`` epochs that ``checkpoint`` left under ``path``."""
        if self.rank != 0:
            self.epoch = self._persisted = epochs
            return
        folder = self._store_dir
        hint = "pass --overwrite (or another folder) to start the run over"
        try:
            with np.load(folder / "assigned.npz", allow_pickle=False) as saved:
                self.assigned = saved["assigned"]
            if self._ram is not None:
                for epoch in range(epochs):
                    with np.load(folder / f"epoch{epoch:05d}.npz", allow_pickle=False) as columns:
                        for name, array in self._ram.items():
                            array[epoch] = columns[name]
            else:
                for name, (shape, dtype) in self._specs.items():
                    array = self._open(name, "r")
                    if array.shape != shape or array.dtype != dtype:
                        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"cannot resume the dynamics in {folder} ({err}); {hint}") from err
        if self.assigned.shape != (self.num_samples,):
            raise UserError(f"the dynamics in {folder} hold {self.assigned.shape[0]} samples, not "
                            f"{self.num_samples}; {hint}")
        self.epoch = self._persisted = epochs

    def cleanup(self) -> None:
        """Remove the store's files once ``save`` has written the final npz."""
        if self.path is not None and self.rank == 0:
            shutil.rmtree(self.path / STORE_DIR, ignore_errors=True)

    # --- output ----------------------------------------------------------------------------------
    def _row_blocks(self, name: str, step: int) -> Iterator[np.ndarray]:
        """The recorded epochs of the store's ``name`` as [E, n, ...] blocks of ``step`` rows: views of a
        RAM store; for a memmap store one buffer reused block after block, filled by plain file reads,
        which leave the file's pages in the page cache, out of this process's resident set."""
        epochs, rows = self.epoch, self.num_samples
        if self._ram is not None:
            yield from (self._ram[name][:epochs, start:start + step] for start in range(0, rows, step))
            return
        (_, _, *inner), dtype = self._specs[name]
        row_bytes = int(np.prod(inner)) * dtype.itemsize
        buffer = np.empty((epochs, min(step, rows), *inner), dtype)
        with open(self._store_dir / f"{name}.npy", "rb", buffering=0) as handle:
            data_start = self._open(name, "r").offset  # opening checks the header and the file's size
            for start in range(0, rows, step):
                block = buffer[:, :min(step, rows - start)]
                for epoch, epoch_rows in enumerate(block):
                    handle.seek(data_start + (epoch * rows + start) * row_bytes)
                    handle.readinto(epoch_rows)
                yield block

    def _sorted_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(td [n, E, S], labels [n, S]) per chunk of rows: channel 0 = assigned label, the others
        by total (so mean) stored probability over the epochs, descending, ties by class id.

        A chunk is a view of one of two buffer sets used in turn (fresh allocations per chunk make
        glibc keep tens of MB of freed heap), so it stays valid while the next chunk is computed
        (``computed_ahead``) and is overwritten by the one after.
        """
        epochs, channels, classes = self.epoch, self.channels, self.num_classes
        step = min(max(1, self.num_samples), max(1, REORDER_CHUNK_BYTES // (2 * max(epochs, 1) * classes)))
        totals, values = (torch.empty(step, classes, dtype=torch.float32) for _ in range(2))
        buffer_sets = [(torch.empty(step, classes, dtype=torch.int64),
                        torch.empty(step, epochs, channels, dtype=torch.int16)) for _ in range(2)]
        by_row = torch.empty(step, epochs, classes, dtype=torch.int16)
        dense = torch.empty(epochs, step, classes, dtype=torch.float16) if self.topk is not None else None
        kept_blocks = self._row_blocks("classes", step) if dense is not None else None
        for index, stored in enumerate(self._row_blocks("probs", step)):
            order, td = buffer_sets[index % 2]
            block = torch.from_numpy(stored)                                       # [E, n, S] float16
            count, rows = block.shape[1], slice(index * step, index * step + block.shape[1])
            if dense is not None:
                block = dense[:, :count].zero_().scatter_(2, torch.from_numpy(next(kept_blocks)).long(), block)
            total = totals[:count].zero_()
            for epoch in block:  # epoch by epoch: no float32 copy of the whole block
                total.add_(epoch)
            total.scatter_(1, torch.from_numpy(self.assigned[rows])[:, None], float("inf"))
            torch.sort(total, dim=1, descending=True, stable=True, out=(values[:count], order[:count]))
            labels = order[:count, :channels]
            # gather on int16 (the same bytes) runs about twice as fast as on float16 on CPU, and
            # from a row-major copy about three times as fast as from the epoch-major block
            source = by_row[:count].copy_(block.view(torch.int16).permute(1, 0, 2))
            torch.gather(source, 2, labels[:, None, :].expand(count, epochs, channels), out=td[:count])
            yield td[:count].view(torch.float16).numpy(), labels.contiguous().numpy()

    def _per_row(self, name: str) -> Iterator[np.ndarray]:
        """A [E, N] store array as [n, E] chunks of rows."""
        for block in self._row_blocks(name, max(1, COPY_BYTES // (2 * max(self.epoch, 1)))):
            yield np.ascontiguousarray(block.T)

    def dynamics(self) -> Dynamics:
        """The recorded epochs in memory (``save`` streams instead, for runs too large for RAM). Rank 0 only."""
        self._require_rank0("dynamics")
        self._require_epochs("dynamics")
        count, epochs, channels = self.num_samples, self.epoch, self.channels
        # every array is allocated once at its final shape and dtype and filled chunk by chunk: the
        # peak is the result plus one chunk, not the chunks, their concatenation and a cast copy
        td, labels = np.empty((count, epochs, channels), np.float16), np.empty((count, channels), np.int64)
        margin, pred = np.empty((count, epochs), np.float16), np.empty((count, epochs), np.int16)
        start = 0
        for td_rows, label_rows in self._sorted_chunks():
            rows = slice(start, start + len(td_rows))
            td[rows], labels[rows] = td_rows, label_rows
            start = rows.stop
        for name, result in (("margin", margin), ("pred", pred)):
            start = 0
            for chunk in self._per_row(name):
                result[start:start + len(chunk)] = chunk
                start += len(chunk)
        return Dynamics(td=td, labels=labels, margin=margin, pred=pred, indices=self.sample_ids.copy(),
                        num_classes=self.num_classes)

    def save(self, folder: str | os.PathLike, true_labels: np.ndarray | torch.Tensor | None = None,
             metadata: bool = True, overwrite: bool = False) -> Path:
        """Write ``training_dynamics.npz`` (and ``metadata.pth`` unless ``metadata=False``) atomically.

        :param true_labels: per row, when the caller knows them (synthetic noise); metadata.pth
            then also holds ``true_targets`` and ``label_flipped`` so detectors can be trained on it.
        :param overwrite: replace the dynamics of a finished run folder (one with summary.json). Its
            models and results would no longer match them, so this is refused by default, and with
            ``overwrite`` summary.json goes: the folder no longer claims finished results.
        Under torch.distributed only rank 0 writes; the other ranks return the same path.
        """
        folder = Path(folder)
        if self.rank != 0:
            return folder / TD_FILE
        self._require_epochs("save")
        check_output_folder(folder, "folder", "save to a run folder (a new or existing folder), not a file")
        true_rows = (None if true_labels is None or not metadata
                     else checked_true_labels(true_labels, self.num_samples, self.num_classes))
        if (folder / SUMMARY_FILE).exists():
            if not overwrite:
                raise UserError(f"{folder} holds a finished run (summary.json), whose models and results match its "
                                "dynamics; save elsewhere, or pass overwrite=True to replace them")
            (folder / SUMMARY_FILE).unlink()
        self._buffers = None  # the last epoch is in the store; its buffers would only add to the peak
        folder.mkdir(parents=True, exist_ok=True)
        count, epochs, channels = self.num_samples, self.epoch, self.channels
        staging = folder / f".{TD_FILE}.labels.tmp"
        try:
            with open(staging, "wb") as labels_out:
                def td_chunks() -> Iterator[np.ndarray]:
                    """td goes straight into the archive; labels wait in a staging file (one entry at a time)."""
                    for td, labels in computed_ahead(self._sorted_chunks()):
                        labels_out.write(memoryview(labels).cast("B"))
                        yield td

                write_td_file(folder / TD_FILE, count, epochs, channels, td_chunks(),
                              read_chunks(staging, labels_out, COPY_BYTES), self._per_row("margin"),
                              self._per_row("pred"), self.sample_ids, self.num_classes)
        finally:
            staging.unlink(missing_ok=True)
        if metadata:
            self._save_metadata(folder, true_rows)
        return folder / TD_FILE

    def _require_rank0(self, what: str) -> None:
        if self.rank != 0:
            raise RuntimeError(f"{what} is only available on rank 0, which alone keeps the dynamics")

    def _require_epochs(self, what: str) -> None:
        if self.epoch == 0:
            raise UserError(f"{what}: the recorder holds no finished epoch yet; call next_epoch() after each "
                            "epoch's update() calls")

    def _save_metadata(self, folder: Path, true_rows: np.ndarray | None) -> None:
        """metadata.pth as generate_td writes it, indexed by dataset index (-1 where unknown)."""
        ids = np.asarray(self.sample_ids)
        size = int(ids.max()) + 1 if len(ids) else 0
        assigned = np.full(size, -1, dtype=np.int64)
        assigned[ids] = self.assigned
        true_targets = None
        if true_rows is not None:
            true_targets = np.full(size, -1, dtype=np.int64)
            true_targets[ids] = true_rows
        write_metadata(folder, ids, np.zeros(0, dtype=np.int64), assigned, true_targets)


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    atomic_write(path, write)
