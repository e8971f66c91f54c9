"""The paper's noise detector: an LSTM that reads a sample's training dynamics and outputs the
logit of "this label is wrong".

The detector file is a plain dict (``state_dict`` + ``config`` + held-out metrics), so it loads
with ``torch.load(..., weights_only=True)`` and carries everything needed to rebuild the net.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mislabel.core.user_input import UserError

from mislabel.core.files import atomic_torch_save, torch_load

__all__ = ["LSTMDetector", "DEFAULT_DETECTOR", "DETECTOR_FORMAT", "READOUTS", "build_detector", "detector_config", "load_detector",
           "save_detector"]

DETECTOR_FORMAT = "mislabel-detector/1"
# The shipped default: used whenever a detector is needed and none is given.
DEFAULT_DETECTOR = Path(__file__).resolve().parent / "pretrained" / "default.pth.tar"


READOUTS = ("last", "pool")


class LSTMDetector(nn.Module):
    """Stacked LSTM over the epoch axis, then a linear head on a summary of its outputs.

    ``readout="last"`` is the paper's: the last time step's hidden state. A unidirectional LSTM's
    last state has to carry the whole history, and in practice it tracks the last epochs, where a
    memorised wrong label looks clean; ``"pool"`` concatenates the mean and the max of the outputs
    over time, so early epochs (before memorisation) reach the head directly. ``bidirectional``
    lets every time step see the whole run.
    """

    def __init__(self, num_features: int = 1, hidden_size: int = 64, num_layers: int = 2,
                 bidirectional: bool = False, readout: str = "last") -> None:
        super().__init__()
        if readout not in READOUTS:
            raise UserError(f"unknown detector readout {readout!r}; choose from: {', '.join(READOUTS)}")
        self.readout = readout
        self.lstm = nn.LSTM(num_features, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional)
        width = hidden_size * (2 if bidirectional else 1) * (2 if readout == "pool" else 1)
        self.head = nn.Linear(width, 1)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """[B, E, F] sequences -> [B] logits."""
        hidden, _ = self.lstm(sequences)
        if self.readout == "pool":
            summary = torch.cat([hidden.mean(dim=1), hidden.amax(dim=1)], dim=1)
        else:
            summary = hidden[:, -1]
        return self.head(summary).squeeze(1)


def detector_config(features: list[str], hidden_size: int, num_layers: int, num_epochs_seen: int | list[int],
                    readout: str = "last", bidirectional: bool = False, seq_len: int | None = None) -> dict:
    """Every architecture choice, so ``build_detector`` rebuilds the net and scoring prepares the input
    as training did (``seq_len``: sequences resampled to that many epochs; ``None``: used as recorded)."""
    return {"arch": "lstm", "features": list(features), "hidden_size": hidden_size, "num_layers": num_layers,
            "num_epochs_seen": num_epochs_seen, "readout": readout, "bidirectional": bool(bidirectional),
            "seq_len": seq_len}


def build_detector(config: dict) -> LSTMDetector:
    """Files written before readout/bidirectional/seq_len existed hold the paper's variant."""
    return LSTMDetector(len(config["features"]), config["hidden_size"], config["num_layers"],
                        bidirectional=bool(config.get("bidirectional", False)), readout=config.get("readout", "last"))


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
        blob = torch_load(path)
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
