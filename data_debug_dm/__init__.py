"""Data debugging (the seed's Chapter 4.3): DivideMix co-training, with labels repaired by the detector.

``dividemix.py`` is the algorithm, ``train.py`` its command line (data, noise, repair, outputs),
``repair.py`` builds repair files, and ``Train_cub.py`` / ``Train_webvision.py`` are presets.
"""
import argparse

from util import UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line UserErrors (exit 2, no usage dump)."""

    def error(self, message: str):
        raise UserError(f"{message}; see `{self.prog} -h`")
