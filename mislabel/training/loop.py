"""The training loop shared by phase 1 (recording dynamics) and retraining on a cleaned subset.

One visible loop: SGD with Nesterov momentum, step decay (a one-cycle schedule stepped every batch
for a backbone's fine-tune, ``Recipe.schedule``), per-epoch validation for early
stopping, and an optional dynamics recorder fed either from the training forward pass itself
(``td_mode="train"``: no extra compute, as AUM does) or from a no-grad pass over the un-augmented
training set after each epoch (``td_mode="eval"``, as the paper's code does).
"""
from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mislabel.models.losses import make_loss
from mislabel.core import distributed
from mislabel.training.accel import Acceleration
from mislabel.training.checkpoint import Checkpoint, Progress
from mislabel.core.progress import EpochProgress
from mislabel.core.run_options import TD_MODES, Recipe, check_weighted_loss
from mislabel.training.recorder import Recorder
from mislabel.training.recorder_input import NonFiniteLogits
from mislabel.core.files import atomic_write, atomic_write_csv
from mislabel.core.user_input import UserError

__all__ = ["Recipe", "Recording", "Evaluation", "FitResult", "AverageMeter", "fit", "evaluate", "TD_MODES"]

ONE_CYCLE_WARMUP = 0.25  # share of a one-cycle schedule's steps spent warming up (a fine-tune of a few epochs)
LOG_COLUMNS = ["epoch", "train_error", "train_loss", "valid_error", "valid_top5_error", "valid_loss", "lr", "seconds"]



class AverageMeter:
    """Running weighted mean of a scalar (loss, error) over batches.

    A tensor value is summed where it lives, in float64: reading it with ``float()`` every batch
    would make the host wait for the GPU each step. The sum is the same float64 arithmetic as
    for Python floats, so the mean is bit-identical either way; ``avg`` reads it once.
    """

    def __init__(self) -> None:
        self.total: float | torch.Tensor = 0.0
        self.count = 0

    def update(self, value: float | torch.Tensor, n: int = 1) -> None:
        if isinstance(value, torch.Tensor):
            self.total = self.total + value.detach().double() * n
        else:
            self.total += float(value) * n
        self.count += n

    @property
    def avg(self) -> float:
        return float(self.total) / max(self.count, 1)


@dataclass
class Evaluation:
    """Per-sample results of one pass without augmentation."""

    loss: np.ndarray
    prediction: np.ndarray
    confidence: np.ndarray
    labels: np.ndarray
    top5_correct: np.ndarray

    @property
    def error(self) -> float:
        return float(np.mean(self.prediction != self.labels)) if len(self.labels) else float("nan")

    @property
    def top5_error(self) -> float:
        return float(1.0 - np.mean(self.top5_correct)) if len(self.labels) else float("nan")

    @property
    def mean_loss(self) -> float:
        return float(np.mean(self.loss)) if len(self.labels) else float("nan")

    def write_csv(self, path, sample_ids: np.ndarray) -> None:
        """The seed's results_*.csv: index, Loss, Prediction, Confidence, Label."""
        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as handle:
                out = csv.writer(handle)
                out.writerow(["index", "Loss", "Prediction", "Confidence", "Label"])
                out.writerows(zip(sample_ids.tolist(), np.round(self.loss, 6).tolist(), self.prediction.tolist(),
                                  np.round(self.confidence, 6).tolist(), self.labels.tolist()))
        atomic_write(path, write)


@dataclass
class FitResult:
    best_state: dict
    last_state: dict
    best_epoch: int
    log: list[dict]
    selected_on_validation: bool


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, recorder: Recorder | None = None,
             accel: Acceleration | None = None) -> Evaluation:
    """One pass in eval mode; feeds ``recorder`` too when given (the ``eval`` recording mode).

    ``accel`` (as ``fit`` uses it) runs the forward passes under bf16 autocast / channels_last;
    without it the pass is plain float32, as for the results files written after training.
    """
    accel = accel or Acceleration()
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in ("loss", "pred", "conf", "label", "top5", "rows")}
    for images, labels, rows in batches:
        with accel.autocast():
            logits = model(accel.prepare_batch(images)).float()
        if recorder is not None:
            recorder.update(logits, labels, rows)
        probs = torch.softmax(logits, dim=1)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        parts["loss"].append(F.cross_entropy(logits, labels, reduction="none"))
        parts["pred"].append(top[:, 0])
        parts["conf"].append(probs.max(dim=1).values)
        parts["label"].append(labels)
        parts["top5"].append((top == labels[:, None]).any(dim=1))
        parts["rows"].append(rows)
    if not parts["rows"]:
        empty = np.zeros(0)
        return Evaluation(empty, empty.astype(np.int64), empty, empty.astype(np.int64), empty.astype(bool))
    order = torch.cat(parts["rows"]).argsort()
    merged = {key: torch.cat(values)[order].cpu().numpy() for key, values in parts.items() if key != "rows"}
    return Evaluation(merged["loss"], merged["pred"], merged["conf"], merged["label"], merged["top5"])


@dataclass
class Recording:
    """What ``fit`` records, and from which pass: ``"train"`` (the seed's choice) records the
    training minibatches as they train; ``"eval"`` records an extra un-augmented pass over
    ``eval_batches`` after each epoch, which only that mode takes."""

    recorder: Recorder
    mode: str = "train"
    eval_batches: object | None = None

    def __post_init__(self) -> None:
        if self.mode not in TD_MODES:
            raise UserError(f"unknown --td_mode {self.mode!r}; choose one of: {', '.join(TD_MODES)}")
        if (self.mode == "eval") != (self.eval_batches is not None):
            raise ValueError("td_mode 'eval' records from eval_batches, and only it takes them")


def _diverged(description: str, loss: float | str, epoch: int) -> str:
    return (f"{description}: the training loss became {loss} in epoch {epoch + 1}; lower --lr (or check the data); "
            "the run is left unfinished, its last finite epoch checkpointed")


def fit(model: torch.nn.Module, train_batches, valid_batches, recipe: Recipe, recording: Recording | None = None,
        log_path=None, description: str = "train", checkpoint: Checkpoint | None = None,
        accel: Acceleration | None = None, after_training: float = 0.0,
        sample_weights: np.ndarray | None = None) -> FitResult:
    """Train ``model`` by ``recipe``; the best epoch is chosen on ``valid_batches`` (never on test).

    Without a validation set (``valid_batches is None``) the final model is the selected one.
    With ``checkpoint`` every finished epoch is saved, and an existing checkpoint is continued.
    Under torchrun the training steps go through DistributedDataParallel (``train_batches`` then
    holds this rank's shard); rank 0 alone writes the log and checkpoints.
    ``accel`` (default: all off, the plain float32 loop) adds bf16 autocast, channels_last and
    torch.compile to every forward pass here; the returned states are in the default layout.
    Losses and errors are summed on the device and read once per epoch: no host sync per batch.
    A loss that turns non-finite stops the run with a UserError naming the epoch, before that epoch
    is checkpointed or any result is written. ``after_training``: the seconds the command runs
    after this loop (find_issues' scoring and report), for the progress lines' command-wide ETA.
    ``sample_weights`` (float [rows of train_batches], cross-entropy only) scales each sample's loss:
    how retraining down-weights suspects (``mislabel.scoring.cleaning``) instead of removing them.
    """
    recipe.validate()
    recorder = None if recording is None else recording.recorder
    records_training_pass = recording is not None and recording.mode == "train"
    accel = accel or Acceleration()
    accel.prepare_model(model)
    criterion = make_loss(recipe.loss_type)
    weights = None
    if sample_weights is not None:
        check_weighted_loss(recipe.loss_type)
        weights = torch.as_tensor(sample_weights, dtype=torch.float32, device=next(model.parameters()).device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=recipe.momentum > 0, weight_decay=recipe.weight_decay)
    per_step = recipe.schedule == "onecycle"
    if per_step:  # warm up over the first ONE_CYCLE_WARMUP of the steps, then anneal to ~0
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, pct_start=ONE_CYCLE_WARMUP,
                                                        total_steps=recipe.epochs * max(1, len(train_batches)))
    else:
        milestones = sorted({max(1, int(round(f * recipe.epochs))) for f in recipe.lr_milestones})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=recipe.lr_gamma)
    log: list[dict] = []
    best_error, best_epoch, best_state = float("inf"), recipe.epochs - 1, None
    resumed = checkpoint.load(model, optimizer, scheduler, recorder) if checkpoint is not None else None
    if resumed is not None:
        log, best_error = resumed.log, resumed.best_error
        best_epoch, best_state = resumed.best_epoch, resumed.best_state
    start = 0 if resumed is None else resumed.epochs_done
    runnable = accel.runnable(model)  # compiled or not; shares model's parameters
    net, main = distributed.wrap(runnable), distributed.is_main()
    epochs = EpochProgress(start, recipe.epochs, description, enabled=main, after_training=after_training)
    for epoch in epochs:
        started = time.perf_counter()
        net.train()
        train_batches.set_epoch(epoch)
        loss_meter, error_meter = AverageMeter(), AverageMeter()
        for images, labels, rows in epochs.batches(train_batches, epoch):
            with accel.autocast():
                logits = net(accel.prepare_batch(images))
                loss = (criterion(logits, labels) if weights is None else
                        (F.cross_entropy(logits, labels, reduction="none") * weights[rows]).mean())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_step:
                scheduler.step()
            if records_training_pass:
                try:
                    recorder.update(logits, labels, rows)
                except NonFiniteLogits:  # the recorder saw it first (at once on the CPU)
                    raise UserError(_diverged(description, "non-finite", epoch)) from None
            loss_meter.update(loss.detach(), len(labels))
            error_meter.update((logits.detach().argmax(dim=1) != labels).float().mean(), len(labels))
        if not math.isfinite(loss_meter.avg):
            raise UserError(_diverged(description, loss_meter.avg, epoch))
        lr = optimizer.param_groups[0]["lr"]
        if not per_step:
            scheduler.step()
        if recorder is not None:
            if not records_training_pass:
                evaluate(runnable, recording.eval_batches, recorder, accel)
            recorder.next_epoch()
        row = {"epoch": epoch + 1, "train_error": round(error_meter.avg, 6), "train_loss": round(loss_meter.avg, 6),
               "valid_error": "", "valid_top5_error": "", "valid_loss": "", "lr": lr}
        if valid_batches is not None:
            valid = evaluate(runnable, valid_batches, accel=accel)
            row.update(valid_error=round(valid.error, 6), valid_top5_error=round(valid.top5_error, 6),
                       valid_loss=round(valid.mean_loss, 6))
            if valid.error < best_error:
                best_error, best_epoch = valid.error, epoch
                best_state = accel.plain_state(copy.deepcopy(model.state_dict()))
        row["seconds"] = round(time.perf_counter() - started, 3)
        log.append(row)
        if log_path is not None and main:
            atomic_write_csv(log_path, log, LOG_COLUMNS)
        if checkpoint is not None and main:
            checkpoint.save(Progress(epoch + 1, log, best_error, best_epoch, best_state), model, optimizer, scheduler,
                            recorder)
        epochs.finished(epoch, loss=f"{loss_meter.avg:.3f}", err=f"{error_meter.avg:.3f}",
                        valid_err="-" if row["valid_error"] == "" else f"{row['valid_error']:.3f}")
    last_state = accel.plain_state(copy.deepcopy(model.state_dict()))
    return FitResult(best_state=best_state or last_state, last_state=last_state, best_epoch=best_epoch + 1,
                     log=log, selected_on_validation=valid_batches is not None)
