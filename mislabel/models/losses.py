"""Classification losses for phase 1 and retraining (``--loss_type``).

Reed et al. 2015, "Training deep neural networks on noisy labels with bootstrapping": the target
is a convex mix of the given label and the model's own belief, so a confident model can partly
overrule a wrong label. ``beta`` is the weight on the given label (paper: 0.95 soft, 0.8 hard).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mislabel.core.user_input import UserError

__all__ = ["LOSSES", "make_loss", "reed_soft", "reed_hard"]


def reed_soft(logits: torch.Tensor, targets: torch.Tensor, beta: float = 0.95) -> torch.Tensor:
    """Soft bootstrapping: target = beta * one_hot + (1 - beta) * softmax (held fixed)."""
    log_probs = F.log_softmax(logits, dim=1)
    one_hot = F.one_hot(targets, logits.shape[1]).to(log_probs.dtype)
    mixed = beta * one_hot + (1.0 - beta) * log_probs.exp().detach()
    return -(mixed * log_probs).sum(dim=1).mean()


def reed_hard(logits: torch.Tensor, targets: torch.Tensor, beta: float = 0.8) -> torch.Tensor:
    """Hard bootstrapping: target = beta * one_hot(label) + (1 - beta) * one_hot(argmax)."""
    log_probs = F.log_softmax(logits, dim=1)
    believed = logits.argmax(dim=1)
    given, predicted = log_probs.gather(1, targets[:, None]), log_probs.gather(1, believed[:, None])
    return -(beta * given + (1.0 - beta) * predicted).mean()


LOSSES = {"cross_entropy": F.cross_entropy, "reed_soft": reed_soft, "reed_hard": reed_hard}


def make_loss(loss_type: str):
    try:
        return LOSSES[loss_type]
    except KeyError:
        raise UserError(f"unknown --loss_type {loss_type!r}; choose one of: {', '.join(LOSSES)}") from None
