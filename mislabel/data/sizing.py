"""The training side of an image dataset, from the images themselves.

Training at a side far above the images' own multiplies the compute (a 28 px digit cropped at
224 px costs ~60x the pixels) and adds nothing the image holds, so a dataset whose name does not
promise photos trains at the smallest of ``SIDES`` at or above its median short side. Reading the
side needs only the file header (PIL opens lazily), so a few hundred files take well under a second.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["SIDES", "SIDE_SAMPLE", "training_side", "median_short_side"]

SIDES = (16, 32, 64, 128, 224)   # training sides: the smallest at or above the median short side
SIDE_SAMPLE = 512                # files whose headers decide the median: plenty for a median


def training_side(median_side: int) -> int:
    """The smallest of ``SIDES`` at or above ``median_side`` (224 for anything larger)."""
    return next((s for s in SIDES if s >= median_side), SIDES[-1])


def median_short_side(files: Sequence[str], sample: int = SIDE_SAMPLE) -> int | None:
    """Median short side of up to ``sample`` evenly spaced files, from their headers only;
    None when none of them opens (the run then names the bad file when it decodes it)."""
    if not files:
        return None
    picks = np.unique(np.linspace(0, len(files) - 1, num=min(sample, len(files))).round().astype(int))
    sides = []
    for index in picks:
        try:
            with Image.open(files[index]) as image:
                sides.append(min(image.size))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
    return int(np.median(sides)) if sides else None
