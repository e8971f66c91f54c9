"""Find mislabeled training samples from training dynamics (Jia et al., AAAI 2023).

The library surface: ``Recorder`` records dynamics from any training loop, ``rank`` scores the
samples (see ``mislabel/api.py`` and ``examples/own_loop.py``).
"""
from mislabel.api import Recorder, rank

__all__ = ["Recorder", "rank"]
