"""Which device a run uses, and the seeds that make a CPU run repeatable.

torch is imported inside the functions, so importing this module never loads it.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

import numpy as np

from mislabel.core.user_input import UserError

if TYPE_CHECKING:
    import torch

__all__ = ["pick_device", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed every generator we use; CPU runs are then bit-for-bit repeatable."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU; an explicit CUDA request without a GPU is an error."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested} was asked for but no CUDA GPU is visible; use --device cpu")
    try:
        return torch.device(requested)
    except RuntimeError as err:
        raise UserError(f"unknown --device {requested!r}; use auto, cpu or cuda[:N]") from err
