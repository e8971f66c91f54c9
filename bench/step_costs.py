"""Calibrate the CPU cost table of ``mislabel.training.budget``: seconds of one SGD step as a
function of the network's counted FLOPs, so find_issues' plan is a deterministic function of the
data, the device type and ``--budget`` (issue 24 §4) instead of live timings on a machine whose
load changes from run to run.

For each network, side and batch below it times real SGD steps on this CPU (the minimum over
``--repeats`` rounds of ``budget.TIMED_STEPS`` steps: the minimum is what the machine does when
nothing else runs) and counts the training FLOPs per image (``budget.training_flops``). The
per-image and per-step overheads come from LeNet-5 (whose FLOPs are negligible), each network
family's seconds per FLOP from what the overheads leave of its steps; the table printed shows
measured vs predicted per configuration, and the last line is ``budget.CPU_COSTS`` to paste.
Pretrained backbones (``--backbone``) get a rate each, under their own name: probe mode's feature
extraction (``extract_features``, frozen, random weights: the speed does not depend on them) is
timed per batch of ``FEATURE_BATCH`` at 64 px, the side find_issues picks for small images, and
its forward FLOPs counted (``budget.backbone_costs``); ``--backbones`` times only these, with the
overheads of the table already in ``budget.CPU_COSTS``. Decoding is timed the same way on
generated JPEG and PNG files of a few sizes (``mislabel.data.decode.open_rgb``, one core), fitted
as a constant plus a share per megapixel.

    OMP_NUM_THREADS=2 python bench/step_costs.py --repeats 5
    OMP_NUM_THREADS=1 python bench/step_costs.py --repeats 3 --backbones
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from mislabel.core.device import pick_device
from mislabel.data.decode import open_rgb
from mislabel.models import build_model
from mislabel.models.backbones import Backbone, drop_classifier, imagenet_network, preprocessing_of
from mislabel.training.backbone_features import FEATURE_BATCH, extract_features
from mislabel.training.budget import CPU_COSTS, StepCosts, backbone_costs, family, training_flops

CONFIGS = (("lenet", 5, 32, 128), ("lenet", 5, 32, 32), ("resnet", 20, 32, 128), ("resnet", 20, 32, 32),
           ("resnet", 32, 32, 128), ("resnet", 20, 64, 128), ("resnet", 18, 32, 128), ("resnet", 18, 64, 128),
           ("resnet", 18, 128, 64), ("resnet", 18, 128, 32))


TIMED_STEPS = 3   # after one warm-up step; the mean of these is a measured step time
# the backbones whose kernels differ most (depthwise, ConvNeXt's large kernels, plain ResNets);
# the others take the table's default rate
BACKBONE_CONFIGS = (("efficientnet_lite0", 64), ("efficientnet_b0", 64), ("mobilenet_v3_large", 64),
                    ("convnext_tiny", 64), ("resnet18", 64), ("resnet50", 64))


def time_step(net_type: str, depth: int, num_classes: int, in_channels: int, side: int, batch_size: int,
              device: str, widen_factor: int | None = None) -> float:
    """Measured seconds of one SGD step (one warm-up, then the mean of ``TIMED_STEPS``): what the
    cost tables of ``mislabel.training.budget`` are calibrated with. Leaves torch's global RNG as it was."""
    target = pick_device(device)
    cpu_state = torch.get_rng_state()
    try:
        model = build_model(net_type, depth, num_classes, in_channels=in_channels, image_size=side,
                            widen_factor=widen_factor).to(target)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        images = torch.randn(batch_size, in_channels, side, side, device=target)
        labels = torch.randint(0, num_classes, (batch_size,), device=target)
        seconds = []
        for _ in range(1 + TIMED_STEPS):
            started = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if target.type == "cuda":
                torch.cuda.synchronize(target)
            seconds.append(time.perf_counter() - started)
    finally:
        torch.set_rng_state(cpu_state)
    return sum(seconds[1:]) / TIMED_STEPS


def time_extraction(name: str, side: int) -> float:
    """Measured seconds of one batch of ``FEATURE_BATCH`` images through the frozen backbone (random
    weights), as probe mode extracts them: one warm-up batch, then the mean of ``TIMED_STEPS``."""
    cpu_state = torch.get_rng_state()
    try:
        model = imagenet_network(name)
        backbone = Backbone(model, drop_classifier(model), preprocessing_of(name))
        images = torch.randint(0, 256, (FEATURE_BATCH * (1 + TIMED_STEPS), 3, 28, 28), dtype=torch.uint8)
        extract_features(images[:FEATURE_BATCH], backbone, side)
        started = time.perf_counter()
        extract_features(images[FEATURE_BATCH:], backbone, side)
    finally:
        torch.set_rng_state(cpu_state)
    return (time.perf_counter() - started) / TIMED_STEPS


def backbone_rates(repeats: int, per_image: float, per_step: float) -> list[tuple[str, int, float, float, float]]:
    """(backbone, side, forward FLOPs an image, measured s/batch, seconds per FLOP) per ``BACKBONE_CONFIGS``."""
    rows = []
    for name, side in BACKBONE_CONFIGS:
        seconds = min(time_extraction(name, side) for _ in range(repeats))
        flops = backbone_costs(name, side)[0]
        rate = max(0.0, seconds - FEATURE_BATCH * per_image - per_step) / (FEATURE_BATCH * flops)
        rows.append((name, side, flops, seconds, rate))
    return rows


def print_backbones(rows: list[tuple[str, int, float, float, float]]) -> None:
    print(f"\n| backbone (frozen, batch {FEATURE_BATCH}) | side | MFLOP/image | measured s/batch | s/FLOP |")
    print("|---|---|---|---|---|")
    for name, side, flops, seconds, rate in rows:
        print(f"| {name} | {side} | {flops / 1e6:.1f} | {seconds:.4f} | {rate:.3g} |")


DECODE_SIDES = ((28, "png"), (32, "png"), (64, "jpg"), (256, "jpg"), (375, "jpg"), (512, "jpg"))


def decode_costs(repeats: int) -> tuple[float, float, list[tuple[int, str, float]]]:
    """(seconds per file, seconds per megapixel, rows) from smooth generated images of 4:3 shape."""
    from PIL import Image

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for side, kind in DECODE_SIDES:
            y, x = np.mgrid[0:side, 0:side * 4 // 3]
            pixels = np.stack([(x * 3 + y) % 256, (x * y // 7) % 256, (y * 5) % 256], axis=2).astype(np.uint8)
            path = os.path.join(folder, f"{side}.{kind}")
            Image.fromarray(pixels).save(path)
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                for _ in range(20):
                    open_rgb(path)
                best = min(best, (time.perf_counter() - started) / 20)
            rows.append((side, kind, best))
    megapixels = np.array([side * side * 4 / 3 / 1e6 for side, _, _ in rows])
    seconds = np.array([s for *_, s in rows])
    (per_file, per_megapixel), *_ = np.linalg.lstsq(np.stack([np.ones_like(megapixels), megapixels], 1), seconds,
                                                    rcond=None)
    return float(per_file), float(per_megapixel), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backbones", action="store_true",
                        help="time only the backbones, with the overheads of the current CPU_COSTS")
    args = parser.parse_args()
    if args.backbones:
        rows = backbone_rates(args.repeats, CPU_COSTS.seconds_per_image, CPU_COSTS.seconds_per_step)
        print_backbones(rows)
        print("\nCPU_COSTS seconds_per_flop entries: " + ", ".join(f'("{n}", {r:.3g})' for n, _, _, _, r in rows))
        return
    rows = []
    for net, depth, side, batch in CONFIGS:
        seconds = min(time_step(net, depth, 10, 3, side, batch, "cpu") for _ in range(args.repeats))
        rows.append((net, depth, side, batch, training_flops(net, depth, 10, 3, side), seconds))
    # per-image and per-step overheads from LeNet, whose FLOPs are negligible at these sizes; then each
    # family's seconds per FLOP as the median over its configurations of what the overheads leave
    lenet = [(b, f, t) for net, _, _, b, f, t in rows if net == "lenet"]
    (per_image, per_step), *_ = np.linalg.lstsq(np.array([[b, 1.0] for b, _, _ in lenet]),
                                                np.array([t - 0.0 for _, _, t in lenet]), rcond=None)
    rates: dict[str, list[float]] = {}
    for net, depth, _, batch, flops, seconds in rows:
        rate = max(0.0, seconds - batch * per_image - per_step) / (batch * flops)
        rates.setdefault(family(net, depth), []).append(rate)
    table = {name: float(np.median(values)) for name, values in rates.items()}
    table["default"] = max(table.values())  # an unmeasured family: the slowest rate, so budgets hold
    measured_backbones = backbone_rates(args.repeats, float(per_image), float(per_step))
    table.update({name: rate for name, _, _, _, rate in measured_backbones})
    costs = StepCosts(tuple(sorted(table.items())), float(per_image), float(per_step), 0.0, 0.0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| network | side | batch | MFLOP/image | measured s/step | predicted s/step |")
    print("|---|---|---|---|---|---|")
    for net, depth, side, batch, flops, seconds in rows:
        predicted = batch * (flops * costs.flop_rate(family(net, depth)) + per_image) + per_step
        print(f"| {net}{depth} | {side} | {batch} | {flops / 1e6:.1f} | {seconds:.4f} | {predicted:.4f} |")
    print_backbones(measured_backbones)
    per_file, per_megapixel, decoded = decode_costs(args.repeats)
    print("\n| image | short side | measured ms to decode |\n|---|---|---|")
    for side, kind, seconds in decoded:
        print(f"| {kind} | {side} | {1000 * seconds:.3f} |")
    flop_rates = ", ".join(f'("{name}", {rate:.3g})' for name, rate in costs.seconds_per_flop)
    print(f"\nCPU_COSTS = StepCosts(seconds_per_flop=({flop_rates}), seconds_per_image={per_image:.3g}, "
          f"seconds_per_step={per_step:.3g}, decode_seconds={max(per_file, 1e-5):.3g}, "
          f"decode_seconds_per_megapixel={per_megapixel:.3g}, threads={torch.get_num_threads()})")


if __name__ == "__main__":
    main()
