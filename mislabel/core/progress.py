"""Progress with an ETA for the whole command, fit for a terminal and for a log file alike.

On a terminal: tqdm bars (per epoch, with a transient per-batch bar). Anywhere else (CI, ``nohup``,
a redirected log) a bar would write a line per refresh, some sixty an epoch, so training prints
one plain line per epoch instead and the other bars refresh at most every ``LOG_INTERVAL`` seconds.
A command that knows what comes after its training (find_issues: scoring and the report) passes
its predicted seconds down to the loop (``fit(after_training=...)``); every epoch line then shows
when the whole command should end.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm

__all__ = ["is_terminal", "bar", "EpochProgress", "clock_text"]

LOG_INTERVAL = 30.0   # seconds between refreshes of a non-terminal bar


def is_terminal() -> bool:
    """Whether progress goes to a terminal (tqdm writes to stderr)."""
    return sys.stderr.isatty()


def bar(iterable: Iterable, **kwargs) -> tqdm:
    """tqdm, refreshed at most every ``LOG_INTERVAL`` seconds when not on a terminal."""
    if not is_terminal():
        kwargs.setdefault("mininterval", LOG_INTERVAL)
    return tqdm(iterable, dynamic_ncols=True, **kwargs)


def clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class EpochProgress:
    """The progress of one training loop: iterate over it for the epochs, wrap each epoch's batches
    with ``batches`` and report each finished epoch with ``finished``. ``after_training``: seconds
    the command runs after this loop, counted in the ETA."""

    def __init__(self, start: int, total: int, description: str, enabled: bool = True,
                 after_training: float = 0.0) -> None:
        self.start, self.total, self.description, self.enabled = start, total, description, enabled
        self.after_training = max(0.0, after_training)
        self.terminal = is_terminal()
        self.started = time.monotonic()
        self.bar = tqdm(range(start, total), initial=start, total=total, desc=description, unit="epoch",
                        dynamic_ncols=True, disable=not (enabled and self.terminal))

    def __iter__(self) -> Iterator[int]:
        return iter(self.bar)

    def batches(self, iterable: Iterable, epoch: int) -> Iterable:
        if not (self.enabled and self.terminal):
            return iterable
        return tqdm(iterable, desc=f"epoch {epoch + 1}", leave=False, unit="batch", dynamic_ncols=True)

    def command_eta(self, epoch: int) -> float:
        """Seconds until the whole command ends, after finishing ``epoch`` (0-based)."""
        done = epoch + 1 - self.start
        per_epoch = (time.monotonic() - self.started) / max(done, 1)
        return (self.total - epoch - 1) * per_epoch + self.after_training

    def finished(self, epoch: int, **metrics: str) -> None:
        if not self.enabled:
            return
        eta = clock_text(self.command_eta(epoch))
        if self.terminal:
            self.bar.set_postfix(**metrics, all_done_in=eta)
            return
        shown = ", ".join(f"{name} {value}" for name, value in metrics.items())
        print(f"{self.description}: epoch {epoch + 1}/{self.total}, {shown}; "
              f"{clock_text(time.monotonic() - self.started)} elapsed, command ETA {eta}", file=sys.stderr, flush=True)
