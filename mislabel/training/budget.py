"""``--budget MINUTES``: predict what each candidate recipe costs on this machine, pick the best that fits.

The prediction is measured, not guessed: a few real SGD steps of each candidate network, at its
batch size and image side, on the device the run will use, give seconds per step; an epoch is
that times its steps (plus decoding, when images are streamed from files). Around the training,
the command also spends time on the decodability scan (already measured when the plan is made),
a second decoding pass into memory, the test evaluation, scoring and the report; those are
estimated from the scan's per-image speed and from constants measured on a 2-core CPU. Only
``SAFETY`` of what is left is planned, for what a few timed steps miss (warm-up, recording,
a busy machine). The clock starts when the command's module is imported.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

__all__ = ["DEFAULT_BUDGET_MINUTES", "SAFETY", "Clock", "Estimate", "time_step", "fitting_epochs", "choose",
           "minutes"]

DEFAULT_BUDGET_MINUTES = 20.0  # find_issues' default: a coffee break, and Fashion-MNIST's 60,000 images fit
SAFETY = 0.85                  # share of the remaining budget a plan may fill
TIMED_STEPS = 3                # after one warm-up step; the mean of these is the step time
SCORE_SECONDS_PER_SAMPLE = 3e-4  # baselines + detector + data map per scored image (2-core CPU)
REPORT_SECONDS = 8.0           # loading the detector, thumbnails, histogram, CSVs, the page: about constant


class Clock:
    """Seconds since the command started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


@dataclass
class Estimate:
    """Predicted seconds of the parts of a command still to run."""

    load: float        # decoding the images into memory (0 when streamed)
    per_epoch: float
    epochs: int
    after: float       # test evaluation, scoring and report

    @property
    def training(self) -> float:
        return self.per_epoch * self.epochs

    @property
    def total(self) -> float:
        return self.load + self.training + self.after

    def describe(self) -> str:
        return (f"load {minutes(self.load)}, training {minutes(self.training)} "
                f"({self.per_epoch:.3g} s an epoch), scoring and report {minutes(self.after)}")


def after_training(num_scored: int, num_test: int, batch_size: int, step_seconds: float) -> float:
    """Seconds from the last epoch to the end: a forward pass over the test set (about a third of
    a training step per batch), scoring every sample, and the report."""
    return (math.ceil(num_test / batch_size) * step_seconds / 3 + SCORE_SECONDS_PER_SAMPLE * num_scored
            + REPORT_SECONDS)


def time_step(net_type: str, depth: int, num_classes: int, in_channels: int, side: int, batch_size: int,
              device: str, widen_factor: int | None = None) -> float:
    """Seconds one SGD step of this network takes on ``device`` at this batch and side: one
    warm-up step, then the mean of ``TIMED_STEPS``. Leaves torch's global RNG as it found it, so
    the run that follows is the same as without the timing."""
    import torch

    from mislabel.models import build_model
    from mislabel.core.device import pick_device

    target = pick_device(device)
    cpu_state = torch.get_rng_state()
    try:
        model = build_model(net_type, depth, num_classes, in_channels=in_channels, image_size=side,
                            widen_factor=widen_factor).to(target)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        images = torch.randn(batch_size, in_channels, side, side, device=target)
        labels = torch.randint(0, num_classes, (batch_size,), device=target)
        seconds = []
        for _ in range(1 + TIMED_STEPS):
            started = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if target.type == "cuda":
                torch.cuda.synchronize(target)
            seconds.append(time.perf_counter() - started)
    finally:
        torch.set_rng_state(cpu_state)
    return sum(seconds[1:]) / TIMED_STEPS


def fitting_epochs(seconds_left: float, per_epoch: float, after: float, most: int) -> int:
    """The most epochs (up to ``most``) whose predicted time fits ``SAFETY`` of ``seconds_left``; 0 if none."""
    room = SAFETY * seconds_left - after
    return max(0, min(most, int(room // per_epoch))) if per_epoch > 0 else most


def choose(candidates: list, predict, seconds_left: float) -> tuple[int, list[Estimate]]:
    """Index of the last (best) candidate whose predicted time fits ``SAFETY`` of ``seconds_left``,
    or 0 (the cheapest) when none does; and every candidate's estimate. Every candidate is predicted:
    the order is by quality, and a deeper network at a smaller side can cost less than a shallower one."""
    estimates = [predict(candidate) for candidate in candidates]
    fitting = [i for i, e in enumerate(estimates) if e.total <= SAFETY * seconds_left]
    return (fitting[-1] if fitting else 0), estimates
