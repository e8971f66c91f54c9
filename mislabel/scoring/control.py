"""The learned hand-crafted control: logistic regression on the baselines' scores.

If a sequence model is worth its cost, it must beat the simplest learned combination of the
hand-made scores it competes with, trained on exactly the same source runs. This is that
combination: the scores of ``CONTROL_SCORES`` for every sample, each turned into its percentile
within the run (AUM's logit scale or the loss's range differ between datasets and networks; a
sample's place among its run's samples does not), then one logistic regression over all source
runs' samples, supervised by the synthetic flips.

The control file is a plain dict of tensors and strings (``format``, ``scores``, ``coef``,
``intercept``, ``trained_on``), so it loads with ``torch.load(..., weights_only=True)``; no pickle.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mislabel.scoring.baselines import BASELINES
from mislabel.scoring.features import percentile
from mislabel.core.dynamics import Dynamics
from mislabel.core.user_input import UserError
from mislabel.core.files import atomic_torch_save

__all__ = ["CONTROL_FORMAT", "DEFAULT_CONTROL", "CONTROL_SCORES", "control_inputs", "fit_control", "load_control",
           "save_control", "control_scores"]

CONTROL_FORMAT = "mislabel-control/1"
# Shipped beside the default detector, fitted on the same source runs.
DEFAULT_CONTROL = Path(__file__).resolve().parent / "pretrained" / "control.pth.tar"
CONTROL_SCORES = ("aum", "confidence", "variability", "correctness", "forgetting", "loss", "last_prob")
# Light L2 on standardised inputs: seven inputs and tens of thousands of samples, so the penalty
# only keeps collinear scores (confidence, loss, AUM) from trading huge opposite weights.
_INVERSE_REGULARISATION = 1.0


def control_inputs(dyn: Dynamics) -> np.ndarray:
    """float64 [N, len(CONTROL_SCORES)]: each baseline score as its percentile within the run."""
    return np.stack([percentile(np.asarray(BASELINES[name](dyn), dtype=np.float64))
                     for name in CONTROL_SCORES], axis=1)


def fit_control(runs: list[Dynamics], names: list[str] | None = None) -> dict:
    """Fit the control on every sample of ``runs`` (each must know its flips); returns the control dict."""
    from sklearn.linear_model import LogisticRegression

    inputs, targets = [], []
    for dyn in runs:
        if dyn.flipped is None:
            raise UserError("the learned control needs runs with known flips (synthetic noise)")
        inputs.append(control_inputs(dyn))
        targets.append(dyn.flipped.astype(np.int64))
    x, y = np.concatenate(inputs), np.concatenate(targets)
    model = LogisticRegression(C=_INVERSE_REGULARISATION, class_weight="balanced", max_iter=1000)
    model.fit(x, y)
    return {"format": CONTROL_FORMAT, "scores": list(CONTROL_SCORES),
            "coef": torch.tensor(model.coef_[0], dtype=torch.float64),
            "intercept": torch.tensor(float(model.intercept_[0]), dtype=torch.float64),
            "trained_on": list(names or []), "num_samples": int(len(y))}


def control_scores(control: dict, dyn: Dynamics) -> np.ndarray:
    """Probability of "mislabeled" per sample (higher = more suspicious)."""
    logits = control_inputs(dyn) @ control["coef"].numpy() + float(control["intercept"])
    return 1.0 / (1.0 + np.exp(-logits))


def save_control(path: str | Path, control: dict) -> None:
    atomic_torch_save(control, path)


def load_control(path: str | Path) -> dict:
    """Read a control file, checked (format, scores, finite coef and intercept of the right shapes) before
    any work; anything else is refused with a one-line reason naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"learned control file {path} does not exist; regenerate the shipped one with "
                        "`python bench/pretrain_detectors.py`")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read learned control {path} ({type(err).__name__})") from err
    if not isinstance(blob, dict) or blob.get("format") != CONTROL_FORMAT:
        raise UserError(f"{path} is not a learned control file (format {CONTROL_FORMAT})")
    if blob.get("scores") != list(CONTROL_SCORES):
        raise UserError(f"{path} was fitted on other scores than {', '.join(CONTROL_SCORES)}; regenerate it")
    for key, shape in (("coef", (len(CONTROL_SCORES),)), ("intercept", ())):
        value = blob.get(key)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or tuple(value.shape) != shape \
                or not bool(torch.isfinite(value).all()):
            raise UserError(f"{path}: {key} is not a finite float tensor of shape {list(shape)}; the file is damaged, "
                            "regenerate it")
    return blob
