"""What several bench scripts share: job logs, a process-pool stage with a progress bar, marked
sections of BENCHMARKS.md, the machine line printed beside every number, and CIFAR-10 pickles
written as the official archive has them.

Bench scripts run as ``python bench/<script>.py``, so this folder is on their import path and
``from common import ...`` finds this module; nothing outside bench/ imports it (tests/ writes its
own fixtures, and neither folder imports the other).
"""
from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, as_completed
from pathlib import Path

import numpy as np

from mislabel.data.py2_pickle import dumps_py2  # the scripts put the checkout on sys.path first

__all__ = ["cpu_name", "logged", "machine", "replace_section", "run_stage", "write_cifar10"]


# ----------------------------------------------------------------------------------------------
# Running jobs
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def logged(log: Path) -> Iterator[None]:
    """Send a job's stdout and stderr to ``log`` (appended), so parallel jobs do not interleave."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield


def run_stage(pool: Executor, name: str, jobs: Sequence[tuple]) -> list:
    """Run each ``(fn, *args)`` of ``jobs`` on ``pool`` with one progress bar named ``name``.

    Returns ``((fn name, args[2:]), result)`` pairs in completion order (the first two arguments
    of every bench job are its work folder and plan). A failed job stops the stage with its name.
    """
    from tqdm.auto import tqdm

    futures = {pool.submit(fn, *args): (fn.__name__, args[2:]) for fn, *args in jobs}
    results = []
    for future in tqdm(as_completed(futures), total=len(futures), desc=name, unit="job", dynamic_ncols=True):
        try:
            results.append((futures[future], future.result()))
        except BaseException as err:
            raise RuntimeError(f"{futures[future]} failed: {err!r}; see the logs under --workdir") from err
    return results


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

def replace_section(path: Path, key: str, text: str) -> None:
    """Put ``text`` between the markers for ``key``: replaced in place if there, else appended.

    Everything outside the markers (other scripts' sections, prose) is left byte for byte. The
    markers name bench/detection.py, the first script to write them; BENCHMARKS.md's existing
    sections are found by that name.
    """
    from mislabel.core.files import atomic_write

    begin, end = f"<!-- BEGIN bench/detection.py {key} -->", f"<!-- END bench/detection.py {key} -->"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}{end}\n"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        updated = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        updated = current.rstrip("\n") + "\n\n" + block
    atomic_write(path, lambda tmp: Path(tmp).write_text(updated))


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` is often empty on Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> str:
    """The machine line a benchmark table carries: cores, CPU model and the load while it ran."""
    return (f"{os.cpu_count()} CPUs (`nproc` = {os.cpu_count()}), {cpu_name()}; "
            f"load average at the end {os.getloadavg()[0]:.1f}")


# ----------------------------------------------------------------------------------------------
# CIFAR-10 as the official archive has it
# ----------------------------------------------------------------------------------------------

def write_cifar10(datadir: Path, batches: dict[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str]) -> None:
    """``datadir/cifar10/cifar-10-batches-py/``: ``batches.meta`` and each ``name -> (labels, data)``
    of ``batches`` (``data_batch_1..5``, ``test_batch``; data uint8 [N, 3072])."""
    root = datadir / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    (root / "batches.meta").write_bytes(dumps_py2({"label_names": list(class_names), "num_vis": 3072}))
    for name, (labels, data) in batches.items():
        batch = {"batch_label": name, "labels": np.asarray(labels).tolist(), "data": np.ascontiguousarray(data),
                 "filenames": [f"{name}_{i}.png" for i in range(len(labels))]}
        (root / name).write_bytes(dumps_py2(batch))
