"""Per-epoch checkpoints, so a killed training run continues where it stopped.

After every finished epoch ``fit`` saves the model, optimiser, scheduler, torch RNG states, the
best-so-far state, the log rows and (through the recorder) the dynamics so far. Each file is
written atomically and the checkpoint itself last, so whatever moment a run dies at, the folder
holds a consistent state: at worst the epoch in progress is redone. Batch order and augmentation
come from generators seeded by (seed, epoch), so on CPU a resumed run ends bit-for-bit identical
to an uninterrupted one.

``checkpoint.pth`` holds only tensors and plain values; it loads with ``weights_only=True``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mislabel.training.recorder import Recorder
from mislabel.core.user_input import UserError
from mislabel.core.files import atomic_torch_save, torch_load

__all__ = ["CHECKPOINT_FILE", "Checkpoint", "Progress"]

CHECKPOINT_FILE = "checkpoint.pth"
FORMAT = "mislabel-checkpoint/1"


@dataclass
class Progress:
    """What ``fit`` carries from epoch to epoch besides the model and optimiser."""

    epochs_done: int
    log: list[dict]
    best_error: float
    best_epoch: int
    best_state: dict | None


@dataclass
class Checkpoint:
    """``path`` is the checkpoint file; ``key`` describes the run, and a checkpoint of a run with
    another key (other data, recipe or recording settings) is refused rather than continued."""

    path: Path
    key: str

    def save(self, progress: Progress, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, recorder: Recorder | None) -> None:
        if recorder is not None:
            recorder.checkpoint()  # the dynamics first: the checkpoint must never claim more than is on disk
        scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k != "milestones"}
        atomic_torch_save({
            "format": FORMAT, "key": self.key, "epochs_done": progress.epochs_done, "log": progress.log,
            "best_error": progress.best_error, "best_epoch": progress.best_epoch, "best_state": progress.best_state,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler_state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }, self.path)

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, recorder: Recorder | None) -> Progress | None:
        """Restore everything from the checkpoint, or return ``None`` when there is none."""
        if not self.path.is_file():
            return None
        hint = f"delete {self.path} (or pass --overwrite) to start the run over"
        try:
            state = torch_load(self.path)
        except Exception as err:
            raise UserError(f"cannot read {self.path} ({type(err).__name__}); {hint}") from err
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise UserError(f"{self.path} is not a checkpoint written by this tool; {hint}")
        if state["key"] != self.key:
            raise UserError(f"{self.path} belongs to a run with other settings than this command; "
                            f"rerun that command to continue it, or {hint}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict({**scheduler.state_dict(), **state["scheduler"]})
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if recorder is not None:
            recorder.restore(state["epochs_done"])
        print(f"resuming {self.path.parent} after epoch {state['epochs_done']}")
        return Progress(state["epochs_done"], state["log"], state["best_error"], state["best_epoch"],
                        state["best_state"])

    def matches(self) -> bool:
        """Whether a checkpoint exists and belongs to this run (unreadable ones do not)."""
        try:
            return torch_load(self.path)["key"] == self.key
        except Exception:
            return False

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
