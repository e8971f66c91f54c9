"""One command at a time per run folder.

Two commands writing one folder (say two ``generate_td`` with different ``--lr``) would each
finish "successfully", the second silently replacing the first's results. A command that writes a
run folder therefore holds ``<folder>/.lock`` while it runs: the file names the holder's PID and
host, a second command is refused with that PID, and a lock left by a process that no longer
exists (killed, crashed) is taken over.
"""
from __future__ import annotations

import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mislabel.core.user_input import UserError, is_no_space, no_space_message

__all__ = ["LOCK_FILE", "folder_lock", "process_alive"]

LOCK_FILE = ".lock"


def _holder(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file, or None when it is unreadable (torn, foreign, gone)."""
    try:
        pid, host = lock.read_text().split(maxsplit=1)
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


def process_alive(pid: int, host: str) -> bool:
    """Whether the holder may still run; a lock from another host cannot be checked, so it counts as live."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _create(lock: Path) -> bool:
    """Create the lock with our PID in one step (a hard link to a finished temp file), so no reader
    ever sees an empty lock. False when a lock is already there."""
    fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_FILE}.", dir=lock.parent)
    try:
        os.fchmod(fd, 0o644)  # readable by collaborators, whose commands then name the PID too
        try:
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        finally:
            os.close(fd)
        os.link(tmp, lock)
        return True
    except FileExistsError:
        return False
    except OSError as err:  # os.write's OSError names no file: name the lock (a full disk strikes here first)
        if is_no_space(err):
            raise UserError(no_space_message(lock)) from err
        raise
    finally:
        os.unlink(tmp)


def _remove_stale(lock: Path, stale: tuple[int, str] | None) -> None:
    """Delete the lock only if it still is the stale one judged: it is moved aside first, and put back
    when a command that took it over in the meantime turns out to own it."""
    aside = lock.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    if _holder(aside) != stale:
        try:
            os.link(aside, lock)
        except FileExistsError:
            pass
    aside.unlink()


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (the folder is created if needed).

    Raises a UserError naming the PID when another live process holds it; a stale lock (its
    process is gone, or it is our own PID left by a dead process of the same number) is taken
    over. The lock is released on leaving the block, errors included.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock, ours = folder / LOCK_FILE, (os.getpid(), socket.gethostname())
    while not _create(lock):
        holder = _holder(lock)
        if holder is not None and holder != ours and process_alive(*holder):
            raise UserError(f"{folder} is in use by another command (PID {holder[0]} on {holder[1]}); wait for "
                            "it to finish, or write elsewhere (another --results_dir or RESULTS_DIR)")
        _remove_stale(lock, holder)
    try:
        yield lock
    finally:
        if _holder(lock) == ours:
            lock.unlink(missing_ok=True)
