"""The plots are real, readable PNGs, written atomically, and the data map is deterministic."""
from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from mislabel.reports.plots import plot_datamap, plot_roc_pr
from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def random_dynamics(num_samples: int, with_flips: bool = True) -> Dynamics:
    """Plausible-looking dynamics: flipped samples keep a lower assigned probability."""
    rng = np.random.default_rng(0)
    num_epochs, num_channels = 8, 3
    flipped = rng.random(num_samples) < 0.2
    level = np.where(flipped, 0.2, 0.8)[:, None] + rng.normal(scale=0.1, size=(num_samples, num_epochs))
    assigned_prob = np.clip(level, 0.0, 1.0)
    rest = (1 - assigned_prob)[..., None] * np.array([0.6, 0.4])
    return Dynamics(
        td=np.concatenate([assigned_prob[..., None], rest], axis=2).astype(np.float16),
        labels=np.tile(np.arange(num_channels), (num_samples, 1)),
        margin=(2 * assigned_prob - 1).astype(np.float16),
        pred=np.where(assigned_prob > 0.5, 0, 1).astype(np.int16),
        indices=np.arange(num_samples),
        flipped=flipped if with_flips else None,
    )


def assert_png(path: Path, min_side: int = 300) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_side
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())  # no torn temp file left


def test_roc_pr_writes_a_png(tmp_path: Path) -> None:
    dyn = random_dynamics(300)
    p = dyn.td[:, :, 0].astype(np.float64)
    scores = {"confidence": -p.mean(axis=1), "random": np.random.default_rng(1).random(300)}
    out = plot_roc_pr(scores, dyn.flipped, tmp_path / "figs" / "roc_pr.png")
    assert out == tmp_path / "figs" / "roc_pr.png"
    assert_png(out)
    height, width = matplotlib.image.imread(out).shape[:2]
    assert width > height  # two panels side by side


def test_roc_pr_refuses_undefined_curves(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="both flipped and clean"):
        plot_roc_pr({"s": np.zeros(5)}, np.zeros(5, dtype=bool), tmp_path / "x.png")
    with pytest.raises(UserError, match="shape"):
        plot_roc_pr({"s": np.zeros(4)}, np.array([True, False, False, False, True]), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("with_flips", [True, False])
def test_datamap_writes_a_png(tmp_path: Path, with_flips: bool) -> None:
    out = plot_datamap(random_dynamics(500, with_flips), tmp_path / "datamap.png")
    assert_png(out)


def test_datamap_subsamples_deterministically(tmp_path: Path) -> None:
    dyn = random_dynamics(3000)
    first = plot_datamap(dyn, tmp_path / "a.png", max_points=400)
    second = plot_datamap(dyn, tmp_path / "b.png", max_points=400)
    assert_png(first)
    np.testing.assert_array_equal(matplotlib.image.imread(first), matplotlib.image.imread(second))
    everything = plot_datamap(dyn, tmp_path / "c.png", max_points=3000)
    assert not np.array_equal(matplotlib.image.imread(first), matplotlib.image.imread(everything))
