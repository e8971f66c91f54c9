"""The paper's noise detector: an LSTM that reads a sample's training dynamics and outputs the
logit of "this label is wrong".

The detector file is a plain dict (``state_dict`` + ``config`` + held-out metrics), so it loads
with ``torch.load(..., weights_only=True)`` and carries everything needed to rebuild the net.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from util import UserError, atomic_torch_save

__all__ = ["LSTMDetector", "DETECTOR_FORMAT", "detector_config", "load_detector", "save_detector"]

DETECTOR_FORMAT = "mislabel-detector/1"


class LSTMDetector(nn.Module):
    """Stacked LSTM over the epoch axis; the last time step's hidden state feeds a linear head."""

    def __init__(self, num_features: int = 1, hidden_size: int = 64, num_layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(num_features, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """[B, E, F] sequences -> [B] logits."""
        hidden, _ = self.lstm(sequences)
        return self.head(hidden[:, -1]).squeeze(1)


def detector_config(features: list[str], hidden_size: int, num_layers: int, num_epochs_seen: int) -> dict:
    return {"arch": "lstm", "features": list(features), "hidden_size": hidden_size, "num_layers": num_layers,
            "num_epochs_seen": num_epochs_seen}


def build_detector(config: dict) -> LSTMDetector:
    return LSTMDetector(len(config["features"]), config["hidden_size"], config["num_layers"])


def save_detector(path: str | Path, model: LSTMDetector, config: dict, metrics: dict | None = None) -> None:
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    atomic_torch_save({"format": DETECTOR_FORMAT, "config": config, "state_dict": state,
                       "metrics": metrics or {}}, path)


def load_detector(path: str | Path, device: torch.device | str = "cpu") -> tuple[LSTMDetector, dict]:
    """Rebuild a detector from its file; anything that is not one of ours is refused clearly."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"detector file {path} does not exist; train one with `./run.sh train_detector` "
                        "or pass the path of an existing .pth.tar")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read detector file {path} ({type(err).__name__}); it is not a detector "
                        "written by train_detector.py") from err
    if not isinstance(blob, dict) or blob.get("format") != DETECTOR_FORMAT or "config" not in blob:
        raise UserError(f"{path} is not a detector written by train_detector.py (format {DETECTOR_FORMAT})")
    model = build_detector(blob["config"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise UserError(f"detector file {path} has weights that do not match its configuration; retrain it") from err
    return model.to(device).eval(), blob["config"]
