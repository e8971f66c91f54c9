"""``--budget MINUTES``: predict what a recipe costs on this kind of device, cut it to fit.

One prediction serves both commands: generate_td cuts its epochs (``epochs_within_budget``),
find_issues picks a rung of the recipe ladder (``plan_within_budget``, ``mislabel.training.plan``).

The prediction is a deterministic function of the data (count, image side, channels, classes),
the recipe, the device type and the thread count, never of a live timing: a user rerunning an
audit, or a colleague on an identical machine, gets the same plan whatever else the machine is
doing (issue 24 §4). An SGD step costs ``batch * (FLOPs * seconds_per_flop + seconds_per_image) +
seconds_per_step``, with the network's training FLOPs counted by torch's FLOP counter and the three
constants a per-device cost table calibrated by ``bench/step_costs.py``; decoding an image file
costs a constant plus a share per megapixel. A pretrained backbone (``--backbone``) is priced from
the same table: its forward FLOPs at the side it sees, counted once per backbone and side
(``backbone_costs``); probe mode pays one forward pass per image to extract the features (nothing
when their cache is valid) and then trains its head on them, finetune mode trains the whole
network every epoch. Around the training, a command also spends time on its data scan, loading
into memory, the test evaluation and (find_issues) scoring and the report.
Only ``SAFETY`` of the budget is planned, for what the table misses (a busy machine above all);
after training, the command says how far the prediction was off. torch is imported inside the
functions, so the command lines that only read ``DEFAULT_BUDGET_MINUTES`` stay light.
"""
from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mislabel.core.files import write_record

__all__ = ["DEFAULT_BUDGET_MINUTES", "SAFETY", "PLAN_FILE", "EPOCHS_FILE", "Clock", "Estimate", "StepCosts",
           "CPU_COSTS", "CUDA_COSTS", "Workload", "family", "training_flops", "decode_seconds", "scan_seconds",
           "predict", "device_costs", "backbone_costs", "extraction_seconds", "TRAINING_PER_FORWARD",
           "fitting_epochs", "choose", "minutes", "epochs_within_budget", "BudgetChoice",
           "plan_within_budget", "accuracy_note", "device_kind"]

DEFAULT_BUDGET_MINUTES = 20.0  # find_issues' default: a coffee break, and Fashion-MNIST's 60,000 images fit
SAFETY = 0.85                  # share of the budget a plan may fill
SCORE_SECONDS_PER_SAMPLE = 3e-4  # baselines + detector + data map per scored image (2-core CPU)
# A training step's FLOPs per forward FLOP (forward, then backward through inputs and weights): the usual
# ratio, and what torch's counter gives for the from-scratch networks; counted directly it overstates
# the backbones with grouped convolutions (torch 2.x's counter ignores groups in the backward pass).
TRAINING_PER_FORWARD = 3.0
REPORT_SECONDS = 8.0           # loading the detector, thumbnails, histogram, CSVs, the page: about constant
PLAN_FILE = "budget_plan.json"  # find_issues' record of its plan, in the output folder
EPOCHS_FILE = "budget.json"     # generate_td's record of its epochs, in the run folder


@dataclass(frozen=True)
class StepCosts:
    """One device type's cost table: a step of batch B of a network of family f costs
    ``B * (flops * seconds_per_flop[f] + seconds_per_image) + seconds_per_step``; decoding an image
    file ``decode_seconds + decode_seconds_per_megapixel * megapixels``. The rate differs by family
    (wide ImageNet-style layers reach more FLOP/s than thin CIFAR ones); a family the table does not
    hold takes ``default``. CPU tables were measured with ``threads`` threads."""

    seconds_per_flop: tuple[tuple[str, float], ...]
    seconds_per_image: float
    seconds_per_step: float
    decode_seconds: float
    decode_seconds_per_megapixel: float
    threads: int = 0

    def flop_rate(self, family: str) -> float:
        rates = dict(self.seconds_per_flop)
        return rates.get(family, rates["default"])


def family(net_type: str, depth: int) -> str:
    """The cost table's name for a network: ImageNet-style ResNets apart from the CIFAR ones."""
    from mislabel.models.resnet import IMAGENET_DEPTHS

    return "resnet_imagenet" if net_type == "resnet" and depth in IMAGENET_DEPTHS else net_type


# Measured by `OMP_NUM_THREADS=1 python bench/step_costs.py --repeats 3` on the 2-core CPU of
# BENCHMARKS.md while another training ran on the other core: conservative (an idle 2-core run of
# ResNet-32 took about 0.6x what this table predicts), which a budget can afford.
# The pretrained backbones' rates (under their names; the others take the default) were measured by
# `OMP_NUM_THREADS=1 python bench/step_costs.py --repeats 2 --backbones` on the same machine, load
# average about 2: a frozen forward pass, also used for fine-tuning's forward and backward.
CPU_COSTS = StepCosts(seconds_per_flop=(("default", 2.08e-11), ("lenet", 0.0), ("resnet", 2.03e-11),
                                        ("resnet_imagenet", 2.08e-11), ("efficientnet_lite0", 3.2e-11),
                                        ("efficientnet_b0", 2.45e-11), ("mobilenet_v3_large", 1.72e-11),
                                        ("convnext_tiny", 1.37e-11), ("resnet18", 9.15e-12), ("resnet50", 1.19e-11)),
                      seconds_per_image=1.38e-4, seconds_per_step=2.1e-3, decode_seconds=1.1e-4,
                      decode_seconds_per_megapixel=7.56e-3, threads=1)
# Not measured here (no GPU was lent when the table was made): a conservative reading of a data-centre
# GPU running these small convolutional networks (ResNet-32 at batch 128 in about 10 ms). After
# training, find_issues prints the measured time beside the prediction, so a wrong guess shows.
CUDA_COSTS = StepCosts(seconds_per_flop=(("default", 2.0e-13),), seconds_per_image=2.0e-6, seconds_per_step=3.0e-3,
                       decode_seconds=1.0e-4, decode_seconds_per_megapixel=8.0e-3)


class Clock:
    """Seconds since the command started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


@dataclass
class Estimate:
    """Predicted seconds of the parts of a command."""

    load: float        # decoding the images into memory (0 when streamed or already arrays)
    per_epoch: float
    epochs: int
    after: float       # test evaluation, and for find_issues scoring and the report
    features: float | None = None  # probe mode: extracting the backbone's features (0: cached); None: no probe

    @property
    def training(self) -> float:
        return self.per_epoch * self.epochs

    @property
    def total(self) -> float:
        return self.load + (self.features or 0.0) + self.training + self.after

    def describe(self) -> str:
        features = ("" if self.features is None else "features cached, " if self.features == 0 else
                    f"features {minutes(self.features)}, ")
        return (f"{features}load {minutes(self.load)}, training {minutes(self.training)} "
                f"({self.per_epoch:.3g} s an epoch), {'scoring and report' if self.after else 'test'} "
                f"{minutes(self.after)}")


@dataclass(frozen=True)
class Workload:
    """What a run trains on, as far as its cost goes."""

    num_train: int
    num_valid: int
    num_test: int
    num_classes: int
    in_channels: int
    side: int                  # the side trained at
    file_side: int | None      # median short side of the image files; None: arrays already in memory
    scored: int = 0            # samples scored and reported after training (find_issues)


def device_costs(device: str) -> tuple[StepCosts, float]:
    """The cost table of ``device``'s type, and the factor for this CPU's thread count (conv kernels
    speed up less than linearly with threads, hence the 0.75 power)."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return CUDA_COSTS, 1.0
    return CPU_COSTS, (CPU_COSTS.threads / max(1, torch.get_num_threads())) ** 0.75


@functools.lru_cache(maxsize=64)
def training_flops(net_type: str, depth: int, num_classes: int, in_channels: int, side: int,
                   widen_factor: int | None = None) -> float:
    """FLOPs of one image's forward and backward pass, counted by torch (exact for a given network and
    side, so the same on every machine)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mislabel.models import build_model

    cpu_state = torch.get_rng_state()
    try:
        model = build_model(net_type, depth, num_classes, in_channels=in_channels, image_size=side,
                            widen_factor=widen_factor)
        images, labels = torch.zeros(2, in_channels, side, side), torch.zeros(2, dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            torch.nn.functional.cross_entropy(model(images), labels).backward()
    finally:
        torch.set_rng_state(cpu_state)  # the run that follows is the same as without the count
    return counter.get_total_flops() / 2


@functools.lru_cache(maxsize=32)
def backbone_costs(name: str, side: int) -> tuple[float, int]:
    """FLOPs of one image's forward pass through the pretrained backbone ``name`` at ``side`` px
    (its classifier dropped), counted by torch on a shapes-only (meta) copy, so no weights are read
    and nothing is allocated; and its feature width. Once per backbone and side in a process."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mislabel.models.backbones import drop_classifier, imagenet_network

    with torch.device("meta"):
        model = imagenet_network(name)
    feature_dim = drop_classifier(model)
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(2, 3, side, side, device="meta"))
    return counter.get_total_flops() / 2, feature_dim


def extraction_seconds(backbone: str, work: Workload, device: str) -> float:
    """Predicted seconds of probe mode's feature extraction: every image (train, valid, test) once
    through the frozen backbone at ``work.side`` in batches of ``FEATURE_BATCH``, the files decoded
    by a pool of up to 8 threads; under torchrun each process takes its share."""
    from mislabel.core import distributed
    from mislabel.training.backbone_features import FEATURE_BATCH

    costs, scale = device_costs(device)
    forward, _ = backbone_costs(backbone, work.side)
    share = math.ceil((work.num_train + work.num_valid + work.num_test) / distributed.world_size())
    per_image = forward * costs.flop_rate(backbone) + costs.seconds_per_image
    if work.file_side is not None:
        per_image += decode_seconds(work.file_side, costs) / min(8, os.cpu_count() or 1)
    return scale * (share * per_image + math.ceil(share / FEATURE_BATCH) * costs.seconds_per_step)


def decode_seconds(file_side: int, costs: StepCosts = CPU_COSTS) -> float:
    """Seconds to decode one image file of this short side (a 4:3 image), on one core."""
    return costs.decode_seconds + costs.decode_seconds_per_megapixel * file_side ** 2 * 4 / 3 / 1e6


def scan_seconds(num_files: int, file_side: int, device: str) -> float:
    """Predicted seconds of find_issues' scan: every file decoded once by a pool of up to 8 threads
    (``mislabel.data.user_data.check_images``), split among torchrun's processes."""
    from mislabel.core import distributed

    costs, scale = device_costs("cpu")
    threads = min(8, os.cpu_count() or 1) * distributed.world_size()
    return scale * decode_seconds(file_side, costs) * num_files / threads


def predict(net_type: str, depth: int, batch_size: int, epochs: int, in_memory: bool, work: Workload, device: str,
            widen_factor: int | None = None, *, backbone: str | None = None, mode: str | None = None,
            features_cached: bool = False) -> Estimate:
    """The one prediction of a run's time. Under torchrun each process steps through its share of
    every batch side by side with the others; validation and test passes cost a third of a step a
    batch (no backward); files are decoded by the batch workers (streamed) or once into memory.

    With ``backbone``, ``work.side`` is the side the backbone sees. ``mode`` probe (or None): the
    head ``net_type``/``depth`` trains on the features held in memory, after their extraction
    (``extraction_seconds``; none when ``features_cached``); finetune: the whole backbone trains,
    ``TRAINING_PER_FORWARD`` times its forward FLOPs a step, at the table's rate for its name."""
    from mislabel.core import distributed

    if backbone is not None and mode != "finetune":
        _, feature_dim = backbone_costs(backbone, work.side)
        head = Workload(**{**asdict(work), "in_channels": feature_dim, "side": 1, "file_side": None})
        estimate = predict(net_type, depth, batch_size, epochs, True, head, device, widen_factor)
        estimate.features = 0.0 if features_cached else extraction_seconds(backbone, work, device)
        return estimate
    costs, scale = device_costs(device)
    world = distributed.world_size()
    per_rank = max(2, batch_size // world)
    if backbone is not None:
        flops, rate = TRAINING_PER_FORWARD * backbone_costs(backbone, work.side)[0], costs.flop_rate(backbone)
    else:
        flops = training_flops(net_type, depth, work.num_classes, work.in_channels, work.side, widen_factor)
        rate = costs.flop_rate(family(net_type, depth))
    step = scale * (per_rank * (flops * rate + costs.seconds_per_image) + costs.seconds_per_step)
    per_epoch = (math.ceil(work.num_train / (per_rank * world)) * step
                 + math.ceil(work.num_valid / batch_size) * step / 3)
    decode, load = 0.0, 0.0
    if work.file_side is not None:
        from mislabel.data.file_batches import auto_workers

        decode = scale * decode_seconds(work.file_side, costs)
        if in_memory:
            load = decode * (work.num_train + work.num_valid + work.num_test)
        else:
            share = math.ceil(work.num_train / world)
            per_epoch = max(per_epoch, decode * share / max(1, auto_workers(share, per_rank, world)))
    after = math.ceil(work.num_test / batch_size) * step / 3
    if work.scored:
        after += SCORE_SECONDS_PER_SAMPLE * work.scored + REPORT_SECONDS
    return Estimate(load, per_epoch, epochs, after)


def fitting_epochs(seconds: float, estimate: Estimate, most: int) -> int:
    """The most epochs (up to ``most``) whose predicted time fits ``SAFETY`` of ``seconds``; 0 if none."""
    room = SAFETY * seconds - (estimate.total - estimate.training)  # what the epochs leave: load, features, after
    return max(0, min(most, int(room // estimate.per_epoch))) if estimate.per_epoch > 0 else most


def choose(estimates: list[Estimate], seconds: float) -> int:
    """Index of the last (best) estimate that fits ``SAFETY`` of ``seconds``, or 0 (the cheapest) when
    none does. Every candidate is predicted: the order is by quality, and a deeper network at a
    smaller side can cost less than a shallower one."""
    fitting = [i for i, e in enumerate(estimates) if e.total <= SAFETY * seconds]
    return fitting[-1] if fitting else 0


def accuracy_note(predicted: float, measured: float) -> str | None:
    """A line when a training took far from its prediction (a busy machine, a device unlike the
    table's); the plan stays the table's, so a rerun still picks the same recipe."""
    if predicted <= 0 or 0.5 <= measured / predicted <= 2.0:
        return None
    return (f"note: training took {minutes(measured)}, predicted {minutes(predicted)} from the cost table "
            f"({'a busy or slower' if measured > predicted else 'a faster'} machine than bench/step_costs.py "
            "measured); reruns still plan the same recipe")


# --- generate_td: the epochs that fit --------------------------------------------------------------

def epochs_within_budget(net_type: str, depth: int, batch_size: int, most: int, work: Workload, device: str,
                         budget_minutes: float, folder: Path, widen_factor: int | None = None, *,
                         backbone: str | None = None, mode: str | None = None,
                         features_cached: bool = False) -> tuple[int, str]:
    """How many of ``most`` epochs fit the budget, and the line that says so; recorded in ``folder``
    (``EPOCHS_FILE``) by rank 0. At least one epoch: a run that cannot fit is warned about, not refused.
    With a backbone the epochs are the head's (probe, after the features) or the fine-tune's (``predict``)."""
    from mislabel.core import distributed

    estimate = predict(net_type, depth, batch_size, 1, True, work, device, widen_factor, backbone=backbone,
                       mode=mode, features_cached=features_cached)
    epochs = fitting_epochs(budget_minutes * 60, estimate, most)
    network = (f"{net_type}{depth}" if backbone is None else f"{backbone} fine-tuned" if mode == "finetune" else
               f"a {net_type}{depth} head on {backbone} features")
    features = "" if estimate.features is None else (
        ", features cached" if estimate.features == 0 else f" after {minutes(estimate.features)} of features")
    note = (f"budget {budget_minutes:g} min: {network} is predicted at ~{estimate.per_epoch:.3g} s an epoch "
            f"here{features}, so {max(epochs, 1)} of {most} epochs "
            f"(predicted {minutes(replace(estimate, epochs=max(epochs, 1)).total)})")
    if epochs < 1:
        note += "; warning: even one epoch exceeds the budget; raise --budget or pick a smaller network"
    epochs = max(epochs, 1)
    if distributed.is_main():
        # "inputs": what the choice was computed from, for the reader; nothing reads them back, as a
        # resumed run recomputes the same (deterministic) choice
        write_record(folder / EPOCHS_FILE, {"inputs": {"budget": budget_minutes, "epochs": most,
                                                       "world": distributed.world_size(), "backbone": backbone,
                                                       "mode": mode if backbone else None,
                                                       "features_cached": features_cached},
                                            "epochs": epochs, "estimate": asdict(estimate)})
    return epochs, note


# --- find_issues: the rung that fits ---------------------------------------------------------------

class BudgetChoice:
    """The chosen plan, its estimate, the lines that explain the choice and the record to store
    (``save``, once the command is sure to run: a refused command leaves no trace)."""

    def __init__(self, plan, estimate: Estimate, lines: list[str], record: dict) -> None:
        self.plan, self.estimate, self.lines, self.record = plan, estimate, lines, record

    def save(self, out: Path) -> None:
        from mislabel.core import distributed

        if distributed.is_main():
            write_record(out / PLAN_FILE, self.record)


def plan_within_budget(candidates: list, work: Workload, device: str, budget_minutes: float, scan_seconds: float,
                       widen_factor: int | None = None, features_cached: bool = False) -> BudgetChoice:
    """The plan to run among ``candidates`` (cheapest first, the full recipe last): with a budget of 0
    the full recipe, else the best one predicted to end the whole command, the data scan
    (``scan_seconds``, predicted) included, within the budget. Deterministic, so every rank
    computes the same choice without a broadcast. A backbone plan (``plan.backbone``) is priced with
    its features (``features_cached``: their cache is valid, so none are extracted) or its fine-tune;
    the record says which kind of recipe ran and why (``plan.reason()``)."""
    from mislabel.core import distributed

    if budget_minutes == 0:
        candidates = candidates[-1:]
    estimates = [predict(p.net_type, p.depth, p.batch_size, p.epochs, p.in_memory,
                         Workload(**{**asdict(work), "side": p.image_size}), device, widen_factor,
                         backbone=p.backbone, mode=p.mode, features_cached=features_cached)
                 for p in candidates]
    left = budget_minutes * 60 - scan_seconds if budget_minutes else math.inf
    index = choose(estimates, left)
    plan, estimate = candidates[index], estimates[index]
    lines = []
    if budget_minutes:
        lines.append(f"budget {budget_minutes:g} min: {len(candidates)} candidate recipes priced by the cost table "
                     f"for this device" + ("" if index == len(candidates) - 1 else
                                           f"; the full recipe ({candidates[-1].describe()}) would take "
                                           f"~{minutes(estimates[-1].total)} (--budget 0 runs it)"))
        if estimate.total > SAFETY * left:
            lines.append(f"warning: even the cheapest recipe is predicted to take {minutes(estimate.total)}, over "
                         f"the {minutes(max(left, 0))} left of the budget; raise --budget or pass --num_epochs")
    lines.append(f"predicted: {minutes(scan_seconds + estimate.total)} in all (scan {minutes(scan_seconds)}, "
                 f"{estimate.describe()})")
    record = {"inputs": {"work": asdict(work), "budget": budget_minutes, "device": device_kind(device),
                         "processes": distributed.world_size()},   # for the reader, as EPOCHS_FILE's
              "recipe": {"kind": plan.kind, "why": plan.reason()},
              "plan": asdict(plan), "estimate": asdict(estimate)}
    return BudgetChoice(plan, estimate, lines, record)


def device_kind(device: str) -> str:
    """The device as the cost table sees it: ``cuda``, or ``cpu`` with its thread count."""
    import torch

    costs, _ = device_costs(device)
    return "cuda" if costs is CUDA_COSTS else f"cpu, {torch.get_num_threads()} threads"

