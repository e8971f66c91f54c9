"""The names ``rank`` accepts, declared once and torch-free, so a command line can check them
before torch loads (``mislabel.commands.rank``) and ``mislabel.api.rank`` checks the same list."""
from __future__ import annotations

from mislabel.scoring.baselines import BASELINES

__all__ = ["RANK_METHODS", "DEFAULT_RANK_METHODS"]

# cleanlab is not among them: it needs held-out probabilities (crossval_probs), which rank has not
RANK_METHODS = ("detector", "control", *BASELINES)
DEFAULT_RANK_METHODS = ("detector", "aum", "confidence")
