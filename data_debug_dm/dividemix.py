"""DivideMix (Li, Socher & Hoi, ICLR 2020), written from the paper for any in-memory image tensor.

    warm-up     both networks: cross-entropy on the given labels (+ negative entropy, asymmetric noise)
    then, every epoch:
      co-divide   each network's per-sample losses -> 2-component GMM -> clean probability w;
                  the *other* network trains on this split: labelled = {w > p}, unlabelled = the rest
      MixMatch    labelled: co-refined targets sharpen(w*y + (1-w)*mean(net(2 views)), T)
                  unlabelled: co-guessed targets sharpen(mean(net, other over 2 views), T)
                  mixup of the whole batch with lambda ~ Beta(alpha, alpha), lambda' = max(lambda, 1-lambda)
      loss        CE(labelled) + ramp(lambda_u) * MSE(unlabelled) + KL(uniform prior || mean prediction)
    test        accuracy of the two networks' averaged softmax

Batches are drawn from one uint8 tensor on the device (``ViewBatches``): two augmented views of
a row set are two tensor-op crops, no DataLoader. Every random draw comes from generators keyed
on (seed, epoch, network), so a CPU run is repeatable bit for bit.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from tqdm.auto import tqdm

from mislabel.data.datasets import TensorBatches, split_batches, to_device
from mislabel.training.loop import evaluate
from mislabel.core.user_input import UserError

__all__ = ["DivideMixConfig", "ViewBatches", "clean_probability", "sharpen", "train_dividemix",
           "ensemble_accuracy", "LOG_COLUMNS"]

LOG_COLUMNS = ["epoch", "phase", "lr", "loss1", "loss2", "labelled1", "labelled2", "labelled_clean1",
               "labelled_clean2", "test_accuracy", "seconds"]


# ----------------------------------------------------------------------------------------------
# Hyperparameters (defaults: the paper's CIFAR-10 setting; presets live in data_debug_dm/train.py)
# ----------------------------------------------------------------------------------------------

@dataclass
class DivideMixConfig:
    num_epochs: int = 300           # CIFAR: 300 epochs
    warm_up: int = 10               # plain cross-entropy epochs first (10 CIFAR-10, 30 CIFAR-100, 1 WebVision)
    batch_size: int = 64            # labelled and unlabelled batch each, so 128 images per step; warm-up uses 128
    lr: float = 0.02                # SGD, CIFAR
    lr_decay_epoch: int | None = None  # lr x 0.1 from this epoch on; None = half the epochs (CIFAR: 150 of 300)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    alpha: float = 4.0              # mixup Beta(alpha, alpha); 0.5 for WebVision/Clothing1M
    lambda_u: float = 25.0          # weight of the unlabelled MSE loss (chosen per noise level in the paper)
    rampup_epochs: int = 16         # lambda_u rises linearly over this many epochs after warm-up
    p_threshold: float = 0.5        # clean probability above which a sample keeps its label
    temperature: float = 0.5        # sharpening T
    negative_entropy: bool = False  # confidence penalty during warm-up: on for asymmetric noise
    seed: int = 0

    @property
    def decay_epoch(self) -> int:
        return self.num_epochs // 2 if self.lr_decay_epoch is None else self.lr_decay_epoch

    def validate(self) -> None:
        checks = [(self.num_epochs >= 1, f"--num_epochs {self.num_epochs} must be at least 1"),
                  (0 <= self.warm_up <= self.num_epochs,
                   f"--warm_up {self.warm_up} must be between 0 and --num_epochs {self.num_epochs}"),
                  (self.batch_size >= 2, f"--batch_size {self.batch_size} must be at least 2"),
                  (self.lr > 0, f"--lr {self.lr} must be positive"),
                  (self.alpha > 0, f"--alpha {self.alpha} must be positive (Beta(alpha, alpha))"),
                  (self.lambda_u >= 0, f"--lambda_u {self.lambda_u} must be non-negative"),
                  (self.rampup_epochs >= 1, f"--rampup_epochs {self.rampup_epochs} must be at least 1"),
                  (0 < self.p_threshold < 1, f"--p_threshold {self.p_threshold} must be inside (0, 1)"),
                  (self.temperature > 0, f"--T {self.temperature} must be positive")]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def lr_at(self, epoch: int) -> float:
        return self.lr * (0.1 if epoch >= self.decay_epoch else 1.0)

    def lambda_u_at(self, progress: float) -> float:
        """Linear ramp-up of lambda_u, ``progress`` in epochs (fractional within an epoch)."""
        return self.lambda_u * float(np.clip((progress - self.warm_up) / self.rampup_epochs, 0.0, 1.0))


# ----------------------------------------------------------------------------------------------
# Data: augmented views of arbitrary row sets
# ----------------------------------------------------------------------------------------------

class ViewBatches(TensorBatches):
    """TensorBatches plus ``view(rows)``: MixMatch needs two independent augmentations of a row set."""

    def view(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.load_rows(to_device(rows, self.device), generator)


# ----------------------------------------------------------------------------------------------
# Co-divide: the two-component Gaussian mixture on per-sample losses
# ----------------------------------------------------------------------------------------------

def clean_probability(losses: np.ndarray, seed: int = 0) -> np.ndarray:
    """Posterior of the low-loss component of a 2-component GMM fitted to min-max normalised losses.

    The paper's settings (10 EM steps, tolerance 1e-2, covariance floor 5e-4) keep the fit cheap and
    stable; EM stopping early is expected, so its convergence warning is silenced.
    """
    losses = np.asarray(losses, dtype=np.float64)
    span = losses.max() - losses.min() if losses.size else 0.0
    if losses.size < 2 or span <= 0:
        return np.ones_like(losses)  # nothing separates the samples: treat all as equally clean
    normalised = ((losses - losses.min()) / span)[:, None]
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(normalised)
    return gmm.predict_proba(normalised)[:, int(np.argmin(gmm.means_[:, 0]))]


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    powered = probs ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# One epoch of each phase
# ----------------------------------------------------------------------------------------------

def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def warmup_epoch(net: torch.nn.Module, batches: TensorBatches, optimizer: torch.optim.Optimizer,
                 negative_entropy: bool, description: str) -> float:
    """Cross-entropy on the given labels; with ``negative_entropy`` also minimise sum p log p.

    The penalty keeps predictions from becoming over-confident on asymmetric noise, whose flips
    a network learns quickly; without it the loss distributions of clean and noisy samples merge.
    """
    net.train()
    total, count = 0.0, 0
    for images, labels, _ in tqdm(batches, desc=description, leave=False, unit="batch", dynamic_ncols=True):
        logits = net(images)
        loss = F.cross_entropy(logits, labels)
        if negative_entropy:
            probs = torch.softmax(logits, dim=1)
            loss = loss + (probs * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + float(loss.detach()) * len(labels), count + len(labels)
    return total / max(count, 1)


def mixmatch_epoch(net: torch.nn.Module, other: torch.nn.Module, views: ViewBatches, clean_prob: np.ndarray,
                   labelled: np.ndarray, optimizer: torch.optim.Optimizer, config: DivideMixConfig, epoch: int,
                   stream: int, description: str) -> float:
    """Train ``net`` for one pass over its labelled set, the unlabelled set cycled alongside.

    :param clean_prob: the other network's clean probability per row (the co-refinement weight w)
    :param labelled: boolean mask of rows whose labels ``net`` may use (from the other network)
    :param stream: 1 or 2, keys this network's random draws apart from its peer's
    """
    device = views.device
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch * 7 + stream)
    rng = np.random.default_rng([config.seed, epoch, stream])
    labelled_rows = torch.from_numpy(np.flatnonzero(labelled))
    unlabelled_rows = torch.from_numpy(np.flatnonzero(~labelled))
    batches = split_batches(labelled_rows[torch.randperm(len(labelled_rows), generator=generator)], config.batch_size)
    if len(unlabelled_rows):
        laps = -(-len(batches) * config.batch_size // len(unlabelled_rows))
        cycled = torch.cat([unlabelled_rows[torch.randperm(len(unlabelled_rows), generator=generator)]
                            for _ in range(laps)])
    weights = torch.as_tensor(clean_prob, dtype=torch.float32, device=device)
    num_classes = None
    net.train()
    other.eval()
    total, count = 0.0, 0
    for step, rows_x in enumerate(tqdm(batches, desc=description, leave=False, unit="batch", dynamic_ncols=True)):
        rows_u = cycled[step * config.batch_size:(step + 1) * config.batch_size] if len(unlabelled_rows) else None
        x1, x2 = views.view(rows_x, generator), views.view(rows_x, generator)
        with torch.no_grad():
            logits_x1 = net(x1)
            num_classes = num_classes or logits_x1.shape[1]
            given = F.one_hot(views.labels[rows_x.to(device)], num_classes).float()
            w = weights[rows_x.to(device)][:, None]
            refined = w * given + (1 - w) * (torch.softmax(logits_x1, 1) + torch.softmax(net(x2), 1)) / 2
            inputs, targets = [x1, x2], [sharpen(refined, config.temperature)] * 2
            if rows_u is not None:
                u1, u2 = views.view(rows_u, generator), views.view(rows_u, generator)
                guessed = sum(torch.softmax(model(u), 1) for model in (net, other) for u in (u1, u2)) / 4
                inputs += [u1, u2]
                targets += [sharpen(guessed, config.temperature)] * 2
        lam = float(rng.beta(config.alpha, config.alpha))
        lam = max(lam, 1 - lam)  # the mix stays closer to the first input, so labelled stays labelled
        all_inputs, all_targets = torch.cat(inputs), torch.cat(targets)
        partner = torch.randperm(len(all_inputs), generator=generator).to(device)
        mixed_inputs = lam * all_inputs + (1 - lam) * all_inputs[partner]
        mixed_targets = lam * all_targets + (1 - lam) * all_targets[partner]
        logits = net(mixed_inputs)
        num_x = 2 * len(rows_x)
        loss_x = -(torch.log_softmax(logits[:num_x], 1) * mixed_targets[:num_x]).sum(1).mean()
        loss_u = (((torch.softmax(logits[num_x:], 1) - mixed_targets[num_x:]) ** 2).mean()
                  if rows_u is not None else logits.new_zeros(()))
        prior = torch.full((num_classes,), 1.0 / num_classes, device=device)
        mean_prediction = torch.softmax(logits, 1).mean(0)
        penalty = (prior * torch.log(prior / mean_prediction)).sum()
        loss = loss_x + config.lambda_u_at(epoch + step / len(batches)) * loss_u + penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + float(loss.detach()) * len(rows_x), count + len(rows_x)
    return total / max(count, 1)


@torch.no_grad()
def ensemble_accuracy(nets: tuple[torch.nn.Module, torch.nn.Module], batches: TensorBatches) -> float:
    """Accuracy of the mean of both networks' softmax outputs."""
    correct, count = 0, 0
    for net in nets:
        net.eval()
    for images, labels, _ in batches:
        probs = sum(torch.softmax(net(images), dim=1) for net in nets)
        correct += int((probs.argmax(dim=1) == labels).sum())
        count += len(labels)
    return correct / count if count else float("nan")


# ----------------------------------------------------------------------------------------------
# The whole run
# ----------------------------------------------------------------------------------------------

def _labelled_mask(prob: np.ndarray, threshold: float) -> np.ndarray:
    """``prob > threshold``, but never fewer than two rows: MixMatch needs a labelled batch for BatchNorm."""
    mask = prob > threshold
    if mask.sum() < 2:
        mask[np.argsort(-prob, kind="stable")[:2]] = True
    return mask


def train_dividemix(nets: tuple[torch.nn.Module, torch.nn.Module], views: ViewBatches, warmup: TensorBatches,
                    eval_train: TensorBatches, test: TensorBatches | None, config: DivideMixConfig,
                    correct_label: np.ndarray | None = None, on_epoch=None) -> list[dict]:
    """Train both networks by DivideMix and return one log row per epoch.

    :param views: the training rows and the labels to learn from (noisy or repaired), augmenting
    :param warmup: the same rows in shuffled, augmented batches for the cross-entropy warm-up
    :param eval_train: the same rows, un-augmented and in order, for the per-sample losses
    :param correct_label: per row, whether its training label is the true one (when known); the log
        then says how clean each labelled set was
    :param on_epoch: called with the log so far after every epoch (to write it as it grows)
    """
    config.validate()
    optimizers = [torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                  weight_decay=config.weight_decay) for net in nets]
    log: list[dict] = []
    epochs = tqdm(range(config.num_epochs), desc="dividemix", unit="epoch", dynamic_ncols=True)
    for epoch in epochs:
        started = time.perf_counter()
        lr = config.lr_at(epoch)
        for optimizer in optimizers:
            _set_lr(optimizer, lr)
        row = {"epoch": epoch + 1, "lr": lr, "labelled1": "", "labelled2": "", "labelled_clean1": "",
               "labelled_clean2": ""}
        if epoch < config.warm_up:
            row["phase"] = "warm-up"
            for k, (net, optimizer) in enumerate(zip(nets, optimizers), start=1):
                warmup.set_epoch(2 * epoch + k - 1)
                row[f"loss{k}"] = round(warmup_epoch(net, warmup, optimizer, config.negative_entropy,
                                                     f"warm-up net{k}"), 6)
        else:
            row["phase"] = "dividemix"
            probs = [clean_probability(evaluate(net, eval_train).loss, config.seed + epoch) for net in nets]
            for k, (net, other, optimizer) in enumerate(((nets[0], nets[1], optimizers[0]),
                                                          (nets[1], nets[0], optimizers[1])), start=1):
                prob = probs[2 - k]  # co-divide: net k learns from the other network's split
                mask = _labelled_mask(prob, config.p_threshold)
                row[f"labelled{k}"] = int(mask.sum())
                if correct_label is not None:
                    row[f"labelled_clean{k}"] = round(float(correct_label[mask].mean()), 6)
                row[f"loss{k}"] = round(mixmatch_epoch(net, other, views, prob, mask, optimizer, config, epoch, k,
                                                       f"mixmatch net{k}"), 6)
        row["test_accuracy"] = round(ensemble_accuracy(nets, test), 6) if test is not None else ""
        row["seconds"] = round(time.perf_counter() - started, 3)
        log.append(row)
        if on_epoch is not None:
            on_epoch(log)
        epochs.set_postfix(phase=row["phase"], test_acc=row["test_accuracy"])
    return log
