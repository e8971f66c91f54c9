"""The paper's noise detector: an LSTM that reads a sample's training dynamics and outputs the
logit of "this label is wrong".

The detector file is a plain dict (``state_dict`` + ``config`` + held-out metrics), so it loads
with ``torch.load(..., weights_only=True)`` and carries everything needed to rebuild the net.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mislabel.core.files import atomic_torch_save, torch_load
from mislabel.core.user_input import UserError, require_file
from mislabel.scoring.gate import check_gate
from mislabel.scoring.features import FEATURES

__all__ = ["LSTMDetector", "DEFAULT_DETECTOR", "DETECTOR_FORMAT", "READOUTS", "build_detector", "check_detector_config",
           "detector_config", "load_detector", "save_detector"]

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


_FOREIGN = "the file is damaged or not a detector written by train_detector.py"
# What a detector file's config may hold: name -> (required, check, what it must be). Files written
# before readout/bidirectional/seq_len existed hold the paper's variant, so those may be absent.
_CONFIG_SCHEMA: dict[str, tuple[bool, Callable[[object], bool], str]] = {
    "arch": (False, lambda v: v == "lstm", "'lstm'"),
    "features": (True, lambda v: isinstance(v, list) and bool(v) and all(isinstance(f, str) for f in v),
                 "a non-empty list of feature names"),
    "hidden_size": (True, lambda v: _whole(v) and 1 <= v <= 4096, "a whole number in [1, 4096]"),
    "num_layers": (True, lambda v: _whole(v) and 1 <= v <= 16, "a whole number in [1, 16]"),
    "readout": (False, lambda v: v in READOUTS, f"one of {', '.join(READOUTS)}"),
    "bidirectional": (False, lambda v: isinstance(v, bool), "true or false"),
    "seq_len": (False, lambda v: v is None or (_whole(v) and 2 <= v <= 100_000),
                "a whole number in [2, 100000], or None"),
}


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_detector_config(config: object, source: str) -> dict:
    """``config`` as a detector configuration (keys, types, ranges, known features), else a UserError
    naming ``source`` and the first key that is wrong."""
    if not isinstance(config, dict):
        raise UserError(f"{source}: config is a {type(config).__name__}, expected a dict; {_FOREIGN}")
    for key, (required, fits, expected) in _CONFIG_SCHEMA.items():
        if key not in config:
            if required:
                raise UserError(f"{source}: config lacks {key!r}; {_FOREIGN}")
        elif not fits(config[key]):
            raise UserError(f"{source}: config {key!r} is {config[key]!r}, expected {expected}; {_FOREIGN}")
    unknown = [name for name in config["features"] if name not in FEATURES]
    if unknown:
        raise UserError(f"{source}: config names unknown features {unknown} (known: {', '.join(FEATURES)}); "
                        f"{_FOREIGN}")
    if "gate" in config:
        check_gate(config["gate"], source)
    return config


def load_detector(path: str | Path, device: torch.device | str = "cpu") -> tuple[LSTMDetector, dict]:
    """Rebuild a detector from its file; anything that is not one of ours is refused by file name before
    any work: the format, the config (``check_detector_config``) and every weight's name and shape
    against the architecture the config describes (checked on the meta device, so a damaged size
    allocates nothing), and finite weights."""
    path = require_file(path, "detector file", "train one with train_detector or pass the path of an existing "
                        ".pth.tar")  # a folder is named as one, not as missing
    try:
        blob = torch_load(path)
    except Exception as err:
        raise UserError(f"cannot read detector file {path} ({type(err).__name__}); it is not a detector "
                        "written by train_detector.py") from err
    if not isinstance(blob, dict) or blob.get("format") != DETECTOR_FORMAT or "config" not in blob:
        raise UserError(f"{path} is not a detector written by train_detector.py (format {DETECTOR_FORMAT})")
    config = check_detector_config(blob["config"], str(path))
    state = blob.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: state_dict is not a dict of tensors; {_FOREIGN}")
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in build_detector(config).state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state.items()}
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or [key for key in expected if found[key] != expected[key]]
        raise UserError(f"{path}: the weights do not match the architecture its config describes (first: "
                        f"{wrong[0]!r}); {_FOREIGN}, retrain it")
    if not all(value.is_floating_point() and bool(torch.isfinite(value).all()) for value in state.values()):
        raise UserError(f"{path}: the weights hold NaN, infinite or non-float values; {_FOREIGN}, retrain it")
    model = build_detector(config)
    model.load_state_dict(state)
    return model.to(device).eval(), config
