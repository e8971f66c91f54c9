"""Streaming pieces of ``Recorder.save``: an ``.npz`` written entry by entry from chunks, a staging
file read back in blocks, and a one-item look-ahead that computes the next chunk in a worker thread
while the caller writes the current one. None of them holds more than a chunk or two in memory."""
from __future__ import annotations

import contextlib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generator, Iterable, Iterator

import numpy as np

__all__ = ["computed_ahead", "read_chunks", "write_npz"]


def computed_ahead(chunks: Generator[tuple[np.ndarray, np.ndarray], None, None]
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``chunks`` with item k+1 computed in a worker thread while the caller uses item k (torch kernels,
    file I/O and ``zlib.crc32`` release the GIL, so reordering overlaps writing). Item k+2 is asked for
    only once the caller is back from item k, so the source may reuse item k's buffers for it, as
    ``Recorder._sorted_chunks`` does. The source's errors surface here; leaving early waits for the item in
    progress, then closes the source."""
    with contextlib.closing(chunks), ThreadPoolExecutor(max_workers=1, thread_name_prefix="td-reorder") as worker:
        pending = worker.submit(next, chunks, None)
        while (chunk := pending.result()) is not None:
            pending = worker.submit(next, chunks, None)
            yield chunk


def read_chunks(path: Path, pending, block_bytes: int) -> Iterator[bytes]:
    """Stream a staging file back once its writer (``pending``) has been flushed."""
    pending.flush()
    with open(path, "rb") as handle:
        while block := handle.read(block_bytes):
            yield block


def write_npz(path: str, entries: Iterable[tuple[str, tuple[int, ...], type, Iterable]]) -> None:
    """An uncompressed ``.npz`` written entry by entry from chunks, exactly as ``np.load`` reads it.

    Each chunk is an array (C order, split along axis 0) or raw bytes of the entry's dtype; an
    array's buffer goes to the archive as is (zipfile takes any contiguous buffer), never via a
    ``tobytes`` copy.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, shape, dtype, chunks in entries:
            with archive.open(f"{name}.npy", "w", force_zip64=True) as out:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                          "shape": tuple(shape)}
                np.lib.format.write_array_header_1_0(out, header)
                for chunk in chunks:
                    if not isinstance(chunk, bytes):
                        chunk = np.ascontiguousarray(chunk, dtype=dtype).reshape(-1).view(np.uint8)
                    out.write(chunk)
