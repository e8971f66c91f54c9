"""Comparison plots for mislabel scores: ROC / precision-recall curves and the data map.

Figures are built with matplotlib's object API on an Agg canvas (no pyplot, no display, no
global state), so plotting works headless and from several threads. Every PNG is written with
``mislabel.core.files.atomic_write`` so a killed run never leaves a half-written image behind.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from mislabel.scoring.baselines import confidence, correctness, variability
from mislabel.scoring.metrics import detection_metrics, has_ground_truth
from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError
from mislabel.core.files import atomic_write

__all__ = ["plot_roc_pr", "plot_datamap", "datamap_png"]

_DPI = 120  # readable in a notebook and a PR description, small enough to commit


def _png(fig: Figure) -> bytes:
    """``fig`` rendered on an Agg canvas as PNG bytes."""
    FigureCanvasAgg(fig)  # attach the Agg canvas: rendering never touches pyplot or a display
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _write_png(png: bytes, path: str | os.PathLike) -> Path:
    """Write PNG bytes atomically to ``path``."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(png))
    return Path(path)


# ----------------------------------------------------------------------------------------------
# ROC and precision-recall
# ----------------------------------------------------------------------------------------------


def plot_roc_pr(scores: dict[str, np.ndarray], flipped: np.ndarray, path: str | os.PathLike) -> Path:
    """Draw every method's ROC curve (left) and precision-recall curve (right) on one figure.

    The legends carry AUC and AP from ``mislabel.scoring.metrics.detection_metrics`` so the numbers
    on the plot are the numbers in the results tables. Dashed lines show a random ranking: the
    diagonal for ROC, the flip rate for precision-recall (AP's chance level is the prevalence,
    not 0.5, which matters at low noise rates).
    """
    flipped = np.asarray(flipped, dtype=bool)
    if not has_ground_truth(flipped):
        raise UserError("ROC/PR curves need known flips with both flipped and clean samples")
    if not scores:
        raise UserError("plot_roc_pr got no scores to plot")
    fig = Figure(figsize=(11, 4.8))
    roc_ax, pr_ax = fig.subplots(1, 2)
    for name, score in scores.items():
        score = np.asarray(score, dtype=np.float64)
        if score.shape != flipped.shape:
            raise UserError(f"score {name!r} has shape {score.shape}, flips have {flipped.shape}")
        metrics = detection_metrics(score, flipped)
        fpr, tpr, _ = roc_curve(flipped, score)
        precision, recall, _ = precision_recall_curve(flipped, score, drop_intermediate=True)
        roc_ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {metrics['auc']:.3f})")
        pr_ax.step(recall, precision, where="post", lw=1.5, label=f"{name} (AP {metrics['map']:.3f})")
    prevalence = float(flipped.mean())
    roc_ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    pr_ax.axhline(prevalence, ls="--", color="grey", lw=1)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    pr_ax.set(
        xlabel="recall",
        ylabel="precision",
        title=f"precision-recall (flip rate {prevalence:.1%})",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        # Below the panel: with many methods an inside legend hides the curves it describes.
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, frameon=False)
    return _write_png(_png(fig), path)


# ----------------------------------------------------------------------------------------------
# Data map (dataset cartography)
# ----------------------------------------------------------------------------------------------


def plot_datamap(dyn: Dynamics, path: str | os.PathLike, max_points: int = 20000) -> Path:
    """``datamap_png`` written atomically to ``path``."""
    return _write_png(datamap_png(dyn, max_points), path)


def datamap_png(dyn: Dynamics, max_points: int = 20000) -> bytes:
    """The data map of Swayamdipta et al. (EMNLP 2020) as PNG bytes: variability (x) against
    confidence (y), coloured by correctness, with known flips drawn as red-outlined crosses.

    Axes show the paper's coordinates (mean assigned probability, not the negated baseline
    score). Above ``max_points`` samples a fixed-seed random subset is drawn, so re-plotting the
    same run gives the same picture and a scatter of 50k points stays legible.
    """
    if max_points < 1:
        raise UserError(f"max_points must be positive, got {max_points}")
    x = variability(dyn)
    y = -confidence(dyn)
    colour = -correctness(dyn)
    rows = np.arange(dyn.num_samples)
    if dyn.num_samples > max_points:
        rows = np.sort(np.random.default_rng(0).choice(dyn.num_samples, size=max_points, replace=False))
    flipped = np.zeros(dyn.num_samples, dtype=bool) if dyn.flipped is None else np.asarray(dyn.flipped, dtype=bool)
    clean, flips = rows[~flipped[rows]], rows[flipped[rows]]
    scale = dict(cmap="viridis", vmin=0.0, vmax=1.0)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    dots = ax.scatter(x[clean], y[clean], c=colour[clean], s=6, alpha=0.6, linewidths=0, **scale)
    fig.colorbar(dots, ax=ax, label="correctness (fraction of epochs predicted as assigned)")
    if dyn.flipped is not None:
        # Filled with their correctness colour and outlined in red: the marker says "flipped"
        # without hiding where on the colour scale the flip sits.
        ax.scatter(
            x[flips],
            y[flips],
            c=colour[flips],
            marker="X",
            s=22,
            edgecolors="red",
            linewidths=0.6,
            label=f"flipped label ({len(flips)} shown)",
            **scale,
        )
        ax.legend(loc="upper right", fontsize="small")
    shown = "" if len(rows) == dyn.num_samples else f", {len(rows)} of {dyn.num_samples} shown"
    ax.set(
        xlabel="variability (std of assigned probability)",
        ylabel="confidence (mean assigned probability)",
        title=f"data map ({dyn.num_epochs} epochs{shown})",
        ylim=(-0.02, 1.02),
    )
    ax.grid(alpha=0.3)
    return _png(fig)
