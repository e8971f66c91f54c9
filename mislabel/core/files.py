"""Files that are never torn, checkpoints that never unpickle, and small JSON records.

Every result file is written through ``atomic_write`` (temp file beside it, then rename), so a
killed or out-of-space command leaves the old file, never half a new one. torch is imported
inside the few functions that use it, so importing this module never loads it.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import shlex
import socket
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable


from mislabel.core.run_lock import process_alive
from mislabel.core.user_input import UserError, is_no_space, no_space_message

__all__ = ["atomic_write", "atomic_write_all", "atomic_write_csv", "atomic_torch_save", "torch_load", "read_record",
           "write_record", "write_command_file"]


def _current_umask() -> int:
    """The process umask (only readable by setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; results are chmodded to what a plain open() would give, so
# collaborators on a shared machine can read them (0644 under the usual umask 022).
_FILE_MODE = 0o666 & ~_current_umask()


def _temp_beside(path: Path) -> str:
    """A fresh temporary file in ``path``'s folder (so the final rename stays on one filesystem),
    named ``.<name>.<pid>@<host>.<random>.tmp``; the temporary files of ``path`` that a killed writer
    left (its process gone) are removed first, so reruns do not pile them up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    for stale in path.parent.glob(glob.escape(prefix) + "*.tmp"):
        pid, _, host = stale.name[len(prefix):-len(".tmp")].rpartition(".")[0].partition("@")
        if pid.isdigit() and host and not process_alive(int(pid), host):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}@{socket.gethostname()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    return tmp


def atomic_write_all(writes: dict[str | os.PathLike, Callable[[str], None]]) -> None:
    """Write a set of files all or nothing: each ``write(tmp_path)`` first, then every rename.

    Any failure (a full disk included) removes the temporary files and leaves the old set as it
    was, so a folder never mixes new and old outputs of one command. A full disk becomes a
    UserError naming the file.
    """
    temps: dict[Path, str] = {}
    current = None
    try:
        for current, write in ((Path(p), w) for p, w in writes.items()):
            temps[current] = _temp_beside(current)
            write(temps[current])
        for current, tmp in temps.items():
            os.replace(tmp, current)
    except Exception as err:
        if is_no_space(err):
            raise UserError(no_space_message(current)) from err
        raise
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so a killed run never leaves a torn file."""
    atomic_write_all({path: write})


def atomic_write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str]) -> None:
    """Rewrite a whole CSV log atomically (logs are rewritten each epoch, so a kill never tears them)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as handle:
            out = csv.DictWriter(handle, fieldnames=fieldnames)
            out.writeheader()
            out.writerows(rows)

    atomic_write(path, write)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """torch.save through a Python file, whose failed writes raise OSError with an errno (writing to
    a path, torch reports a full disk as an anonymous RuntimeError)."""
    import torch

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    atomic_write(path, write)


def torch_load(path: str | os.PathLike) -> object:
    """``torch.load(weights_only=True)`` onto the CPU, quietly: on a foreign file (a raw pickle) torch
    warns before it fails, and those warnings would precede the one error line the caller prints."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def read_record(path: str | os.PathLike, fix: str | None = None) -> dict | None:
    """A JSON object this package wrote; None when absent. Every JSON record and cache is read through
    here (repair's label list, a JSON list, by ``read_repair`` with its own checks), so a damaged one
    is met alike everywhere: a record that guards results (a run's summary,
    the key of a phase-1 folder; ``fix`` given) is refused in one line naming the file and ``fix``;
    a cache (``fix`` None: a scan, a budget choice) is only a lost shortcut, so it reads as absent."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        problem = None if isinstance(record, dict) else "not a JSON object"
    except (OSError, UnicodeDecodeError, ValueError) as err:
        record, problem = None, type(err).__name__
    if problem is None:
        return record
    if fix is None:
        return None
    raise UserError(f"{path} is damaged ({problem}); {fix}")


def write_record(path: str | os.PathLike, record: dict, sort_keys: bool = False) -> None:
    """Write a JSON record atomically (``read_record`` reads it back)."""
    text = json.dumps(record, indent=2, sort_keys=sort_keys) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_command_file(folder: str | os.PathLike) -> None:
    """``cmd.txt``: the command line that is writing ``folder``, as the shell would replay it."""
    command = " ".join(shlex.quote(arg) for arg in [Path(sys.executable).name, *sys.argv])
    atomic_write(Path(folder) / "cmd.txt", lambda tmp: Path(tmp).write_text(command + "\n"))
