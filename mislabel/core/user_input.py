"""What the user typed: one-line errors, the parser, and the checks of names, seeds and paths.

Torch-free on purpose (the standard library only): every command line is parsed and checked
with this before torch, torchvision, sklearn or pandas load, so a bad argument is refused in a
fraction of a second instead of after seconds and ~1 GB of imports. The seed's ``util`` re-exports
it all.
"""
from __future__ import annotations

import argparse
import errno
import functools
import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

__all__ = ["UserError", "exit_on_user_error", "OneLineParser", "is_no_space", "no_space_message", "require_folder",
           "require_file", "check_output_folder", "is_not_writable", "single_path_component", "check_seed",
           "SEED_LIMIT", "integer", "number"]


class UserError(ValueError):
    """A problem with the user's input. Commands print it as one line and exit 2, no traceback;
    library callers catch it as the ``ValueError`` it is."""


F = TypeVar("F", bound=Callable[..., object])


def exit_on_user_error(main: F) -> F:
    """Wrap a command-line entry point so bad input ends in one line on stderr and exit 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except Exception as err:
            where = getattr(err, "filename", None) or "the results"
            if is_no_space(err):
                # a full disk can strike any write (atomic_write's already name their file as UserErrors)
                print(f"error: {no_space_message(where)}", file=sys.stderr)
            elif is_not_writable(err):  # checked up front where possible; a folder can turn read-only later
                problem = "read-only file system" if err.errno == errno.EROFS else "permission denied"
                print(f"error: cannot use {where}: {problem}; fix its permissions, or choose another RESULTS_DIR or "
                      "--out", file=sys.stderr)
            else:
                raise
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapped  # type: ignore[return-value]


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line UserErrors (exit 2, no usage dump), like every other bad input.

    The error ends with a ``-h`` hint; ``launcher`` is what the user types before ``prog`` to run the
    command (``"python "`` for a script, ``"./"`` when ``prog`` names run.sh without its path).
    """

    def __init__(self, *args, launcher: str = "", **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # a typo such as --num_epoch is refused, not guessed
        super().__init__(*args, **kwargs)
        self.launcher = launcher

    def error(self, message: str):
        raise UserError(f"{message}; see `{self.launcher}{self.prog} -h`")


def is_no_space(err: BaseException | None) -> bool:
    """A full disk (or quota) anywhere in ``err``'s chain of causes, as opposed to any other failure
    (writers such as nested atomic writes or torch wrap the OSError in their own exception)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        err = err.__cause__ or err.__context__
    return False


def no_space_message(path: str | os.PathLike) -> str:
    return f"no space left on device while writing {path}; free space or set RESULTS_DIR to another disk"


def require_folder(path: str | os.PathLike, what: str, fix: str) -> Path:
    """``path`` as an existing folder, else a UserError that says whether it is missing or a file."""
    return _require(Path(path), what, fix, folder=True)


def require_file(path: str | os.PathLike, what: str, fix: str) -> Path:
    """``path`` as an existing file, else a UserError that says whether it is missing or a folder."""
    return _require(Path(path), what, fix, folder=False)


def _require(path: Path, what: str, fix: str, folder: bool) -> Path:
    if path.is_dir() if folder else path.is_file():
        return path
    wrong_kind = path.exists() if folder else path.is_dir()
    problem = ("is a file, expected a folder" if folder else "is a folder, expected a file") if wrong_kind \
        else "does not exist"
    raise UserError(f"{what} {path} {problem}; {fix}")


def check_output_folder(path: str | os.PathLike, what: str, fix: str) -> None:
    """Refuse, before anything is written, an output folder that is (or lies below) a file, or
    whose nearest existing folder cannot be written (a read-only file system, no permission)."""
    for folder in (Path(path), *Path(path).parents):
        if folder.exists() and not folder.is_dir():
            where = "" if folder == Path(path) else f" (it lies below {folder})"
            raise UserError(f"{what} {path} is a file, expected a folder{where}; {fix}")
        if folder.exists():
            if not os.access(folder, os.W_OK | os.X_OK):
                raise UserError(f"cannot write to {folder}: read-only file system or permission denied; {fix}")
            return


def is_not_writable(err: BaseException) -> bool:
    """An access the file system refused (read-only, or no permission), as opposed to any other failure."""
    return isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def single_path_component(name: str, what: str) -> str:
    """Names become folder names; ``../x`` or ``a/b`` would write outside the results folder."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise UserError(f"{what} {name!r} is not a single folder name; pass a plain name such as digits "
                        "(a CSV list: its file name, inside --datadir)")
    return name


SEED_LIMIT = 2**32  # numpy's legacy seeding and most RNG APIs take 32-bit seeds


def check_seed(seed: int, flag: str = "--seed") -> int:
    """A seed in [0, 2**32), or a one-line refusal naming ``flag`` (the same words from every door)."""
    if not 0 <= seed < SEED_LIMIT:
        raise UserError(f"{flag} {seed} is outside 0..{SEED_LIMIT - 1}; pass e.g. {flag} 0")
    return seed


def integer(text: str) -> int:
    """argparse type for a whole number; its refusal reads as the Python API's ("is not an integer")."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def number(text: str) -> float:
    """argparse type for a real number; its refusal reads as the Python API's ("is not a number")."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
