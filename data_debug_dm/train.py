"""DivideMix on any dataset the Runner loads, optionally on labels repaired by the noise detector.

    ./run.sh train_dividemix --dataset digits --r 0.4 --noise_mode sym --net_type resnet --depth 20
    ./run.sh train_dividemix --dataset cifar10 --data_path DIR --r 0.5 --repair_ratio 0.05 \
        --td_dir replication/cifar10_resnet32_percmislabeled0.5_uniform/computation4td_seed1

Data and noise come from the Runner exactly as in phase 1 (same seed -> same flipped samples), but
every training sample is used (no validation hold-out: DivideMix reports test accuracy). Datasets
read from image files (CUB, WebVision50, ...) are decoded once into memory at ``--image_size``.

Results go to ``<results_dir>/<dataset>_<net><depth>[_percmislabeled<r>_<noise>]/dividemix_seed<seed>/
<norepair | repair<ratio> | repairfile_<name>>/``: cmd.txt, config.json, train_log.csv (one row per
epoch), model.pth (both networks' last state_dicts) and summary.json (written last).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from data_debug_dm.dividemix import LOG_COLUMNS, DivideMixConfig, ViewBatches, train_dividemix
from mislabel.scoring.repair import ensure_repair, parse_ratio, read_repair
from mislabel.scoring.lstm import DEFAULT_DETECTOR
from mislabel.data.datasets import Augment, TensorBatches
from mislabel.data.decode import decode_images
from mislabel.data.noise import CLASS_STRUCTURED_TYPES, NOISE_TYPES, canonical_noise_type
from mislabel.reports.summary import write_summary
from mislabel.models import build_model
from mislabel.pipeline import Runner
from mislabel.run_config import RunConfig
from mislabel.core.user_input import OneLineParser, UserError, exit_on_user_error, integer
from mislabel.core.files import atomic_torch_save, atomic_write, atomic_write_csv
from mislabel.core.device import seed_everything

__all__ = ["PRESETS", "DEFAULT_DETECTOR", "published_lambda_u", "main"]

ROOT = Path(__file__).resolve().parents[1]
MAX_DECODED_BYTES = 16 * 2**30  # file datasets are decoded into memory; beyond this ask for a smaller --image_size

# Defaults per recipe. None means "from the published table for this noise" (published_lambda_u,
# published_p_threshold) or "from the class count" (warm-up: 10 epochs, 30 for 100+ classes).
PRESETS: dict[str, dict] = {
    # The paper's CIFAR setting: PreAct ResNet-18, SGD lr 0.02 (x0.1 after half), wd 5e-4, 300 epochs.
    "generic": dict(dataset="digits", r=0.2, noise_mode="sym", net_type="preresnet", depth=18, num_epochs=300,
                    warm_up=None, batch_size=64, lr=0.02, weight_decay=5e-4, alpha=4.0, lambda_u=None,
                    p_threshold=None, T=0.5, image_size=32),
    # CUB-200 with synthetic noise: the seed's `train_cub --r 0.2 --noise_mode sym --num_epochs 300`;
    # an ImageNet-pretrained ResNet-50 (--pretrained_path) fine-tuned with the paper's Clothing1M
    # optimiser (lr 0.002, wd 1e-3, batch 32) and its CIFAR MixMatch settings for synthetic noise.
    "cub": dict(dataset="cub_200_2011", r=0.2, noise_mode="sym", net_type="resnet", depth=50, num_epochs=300,
                warm_up=10, batch_size=32, lr=0.002, weight_decay=1e-3, alpha=4.0, lambda_u=None,
                p_threshold=None, T=0.5, image_size=224),
    # WebVision: real noise; the paper's alpha 0.5, lambda_u 0, 1 warm-up epoch, lr 0.01, 100 epochs.
    # ResNet-50 stands in for the paper's Inception-ResNet-v2 (the seed's WebVision50 network).
    "webvision": dict(dataset="webvision50", r=0.0, noise_mode="sym", net_type="resnet", depth=50, num_epochs=100,
                      warm_up=1, batch_size=32, lr=0.01, weight_decay=5e-4, alpha=0.5, lambda_u=0.0,
                      p_threshold=0.5, T=0.5, image_size=224),
}


# ----------------------------------------------------------------------------------------------
# Published per-noise hyperparameters
# ----------------------------------------------------------------------------------------------

def published_lambda_u(noise_ratio: float, noise_mode: str, num_classes: int) -> float:
    """The paper's lambda_u for CIFAR, used for any dataset by its class count (100+ = CIFAR-100 row).

    CIFAR-10: 20% sym 0, 50% and 80% sym 25, 90% sym 50, 40% asym 0. CIFAR-100: 20% sym 25, 50-90%
    sym 150. A ratio between two published ones takes the next published level up.
    """
    if canonical_noise_type(noise_mode) in CLASS_STRUCTURED_TYPES:
        return 0.0
    if num_classes >= 100:
        return 25.0 if noise_ratio <= 0.2 else 150.0
    return 0.0 if noise_ratio <= 0.2 else 25.0 if noise_ratio <= 0.8 else 50.0


def published_p_threshold(noise_ratio: float) -> float:
    """0.5 throughout, except 0.6 at 90% noise where the clean set is small and must be cleaner."""
    return 0.6 if noise_ratio >= 0.9 else 0.5


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def build_parser(preset: str) -> OneLineParser:
    defaults = PRESETS[preset]
    prog = "./run.sh train_dividemix" if preset == "generic" else f"./run.sh train_{preset}"
    parser = OneLineParser(prog=prog, description=__doc__.split("\n")[0])
    data = parser.add_argument_group("data and noise (as phase 1)")
    data.add_argument("--dataset")
    data.add_argument("--data_path", "--datadir", dest="datadir", help="folder holding <dataset>/ (unused for digits)")
    data.add_argument("--r", type=float, help="synthetic noise ratio in [0, 1) (ignored for real-noise datasets)")
    data.add_argument("--noise_mode",
                      help="sym (= uniform), asym (= flip: class c -> c+1), semantic, idn or confusion, as phase 1")
    data.add_argument("--seed", type=integer, default=0, help="fixes noise, initialisation and batches")
    data.add_argument("--image_size", type=int, help="side images of file-based datasets are resized to")
    model = parser.add_argument_group("model")
    model.add_argument("--net_type")
    model.add_argument("--depth", type=int)
    model.add_argument("--pretrained_path", help="local state_dict both networks start from (never downloaded)")
    dm = parser.add_argument_group("DivideMix (None/unset = the published value for this noise)")
    dm.add_argument("--num_epochs", type=int)
    dm.add_argument("--warm_up", type=int, help="cross-entropy epochs (default 10; 30 with 100+ classes)")
    dm.add_argument("--batch_size", type=int, help="labelled and unlabelled batch size each")
    dm.add_argument("--lr", type=float)
    dm.add_argument("--lr_decay_epoch", type=int, help="lr x0.1 from this epoch (default: half of num_epochs)")
    dm.add_argument("--weight_decay", "--wd", dest="weight_decay", type=float)
    dm.add_argument("--momentum", type=float, default=0.9)
    dm.add_argument("--alpha", type=float, help="mixup Beta(alpha, alpha)")
    dm.add_argument("--lambda_u", type=float, help="unlabelled loss weight (default: the paper's table)")
    dm.add_argument("--rampup_epochs", type=int, default=16, help="epochs over which lambda_u ramps up")
    dm.add_argument("--p_threshold", type=float, help="clean probability threshold (default 0.5; 0.6 at 90%% noise)")
    dm.add_argument("--T", type=float, help="sharpening temperature")
    repair = parser.add_argument_group("label repair (data debugging)")
    repair.add_argument("--repair_ratio", help="relabel this fraction of the --td_dir run's top suspects")
    repair.add_argument("--td_dir", help="phase-1 run folder the detector ranks (needed by --repair_ratio)")
    repair.add_argument("--detector_file", help=f"LSTM detector (default {DEFAULT_DETECTOR.relative_to(ROOT)})")
    repair.add_argument("--repair_file", help="a repair{ratio}.json to train on instead (see repair.py)")
    run = parser.add_argument_group("run")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    run.add_argument("--results_dir", default=os.environ.get("RESULTS_DIR", "replication"))
    run.add_argument("--overwrite", action="store_true",
                     help="redo a finished run; with --repair_ratio also rebuild the repair file")
    parser.set_defaults(**defaults)
    return parser


def _resolve(args, num_classes: int, large: bool) -> DivideMixConfig:
    """Flags to a config, filling unset values from the published tables for this noise."""
    ratio = 0.0 if large else args.r
    warm_up = args.warm_up if args.warm_up is not None else (30 if num_classes >= 100 else 10)
    lambda_u = (args.lambda_u if args.lambda_u is not None
                else published_lambda_u(ratio, args.noise_mode, num_classes))
    p_threshold = args.p_threshold if args.p_threshold is not None else published_p_threshold(ratio)
    asymmetric = canonical_noise_type(args.noise_mode) in CLASS_STRUCTURED_TYPES and ratio > 0
    config = DivideMixConfig(num_epochs=args.num_epochs, warm_up=warm_up, batch_size=args.batch_size, lr=args.lr,
                             lr_decay_epoch=args.lr_decay_epoch, momentum=args.momentum,
                             weight_decay=args.weight_decay, alpha=args.alpha, lambda_u=lambda_u,
                             rampup_epochs=args.rampup_epochs, p_threshold=p_threshold, temperature=args.T,
                             negative_entropy=asymmetric, seed=args.seed)
    config.validate()
    return config


# ----------------------------------------------------------------------------------------------
# Data: the Runner's dataset and noise; image files decoded into memory
# ----------------------------------------------------------------------------------------------

def in_memory_images(runner: Runner, image_size: int) -> tuple[torch.Tensor, torch.Tensor, Augment]:
    """Train and test images as uint8 tensors, with the augmentation that suits them."""
    data = runner.data
    if data.train_images is not None:
        return data.train_images, data.test_images, data.augment
    if image_size < 8:
        raise UserError(f"--image_size {image_size} is too small; use 8 or more (224 for ImageNet-style nets)")
    needed = (data.num_train + len(data.test_labels)) * 3 * image_size ** 2
    if needed > MAX_DECODED_BYTES:
        raise UserError(f"{data.name} at --image_size {image_size} needs {needed / 2**30:.1f} GiB in memory; "
                        "pass a smaller --image_size")
    print(f"decoding {data.name} into memory at {image_size}x{image_size} ({needed / 2**30:.2f} GiB)")
    size = (image_size, image_size)
    return (torch.from_numpy(decode_images(data.train_files, size, resize=True)),
            torch.from_numpy(decode_images(data.test_files, size, resize=True)),
            Augment(crop_padding=max(1, image_size // 8), hflip=True))


def training_labels(args, runner: Runner) -> tuple[np.ndarray, dict]:
    """The labels DivideMix learns from: the noisy ones, or a repair file's; and what was used."""
    if args.repair_ratio is not None and args.repair_file:
        raise UserError("pass either --repair_ratio (build from --td_dir) or --repair_file, not both")
    assigned = runner.assigned_labels
    if args.repair_ratio is None and not args.repair_file:
        return assigned, {"repair": None}
    path = args.repair_file
    if args.repair_ratio is not None:
        ratio = parse_ratio(args.repair_ratio)
        if not args.td_dir:
            raise UserError("--repair_ratio needs --td_dir <phase-1 run folder> for the detector to rank")
        detector = Path(args.detector_file) if args.detector_file else DEFAULT_DETECTOR
        if not args.detector_file and not detector.is_file():
            raise UserError(f"no --detector_file given and the default detector {detector} is not there; "
                            "pass --detector_file (train one with `./run.sh train_detector`)")
        path = ensure_repair(args.td_dir, detector, ratio, runner.device, overwrite=args.overwrite)
    repair = read_repair(path, runner.data.num_train, runner.data.num_classes)
    differing = np.flatnonzero(repair.labels != assigned)
    if "changed_indices" in repair.meta and not set(differing.tolist()) <= set(repair.meta["changed_indices"]):
        raise UserError(f"{path} was built for other noisy labels than these arguments give; pass the "
                        "--seed/--r/--noise_mode of the run it came from")
    flips_fixed = None
    if not runner.data.real_noise:
        flips_fixed = int((repair.labels[differing] == runner.true_labels[differing]).sum())
    print(f"repair file {path}: {len(differing)} labels differ from the noisy ones"
          + (f", {flips_fixed} of them now correct" if flips_fixed is not None else ""))
    return repair.labels, {"repair": {"file": str(path), "rule": repair.meta.get("rule"),
                                      "num_changed": int(len(differing)), "num_now_correct": flips_fixed,
                                      "repair_ratio": repair.meta.get("repair_ratio")}}


def _run_tag(args) -> str:
    if args.repair_ratio is not None:
        return f"repair{parse_ratio(args.repair_ratio):g}"
    if args.repair_file:
        return f"repairfile_{Path(args.repair_file).name.removesuffix('.json')}"
    return "norepair"


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

def run(argv: list[str] | None = None, preset: str = "generic") -> Path:
    args = build_parser(preset).parse_args(argv)
    if not 0.0 <= args.r < 1.0:
        raise UserError(f"--r {args.r} is outside [0, 1); pass e.g. 0.4 for 40% noise")
    if args.noise_mode not in NOISE_TYPES:
        raise UserError(f"--noise_mode {args.noise_mode!r} is unknown; "
                        "use sym (= uniform), asym (= flip), semantic, idn or confusion")
    if args.image_size is None or args.image_size < 1:
        raise UserError(f"--image_size {args.image_size} must be a positive integer")
    runner = Runner(RunConfig(dataset=args.dataset, datadir=args.datadir, seed=args.seed,
                              noise_ratio=f"{args.r:g}", noise_type=canonical_noise_type(args.noise_mode),
                              net_type=args.net_type, depth=args.depth, pretrained_path=args.pretrained_path,
                              num_valid=0, device=args.device, results_dir=args.results_dir, overwrite=args.overwrite))
    data = runner.data
    config = _resolve(args, data.num_classes, data.real_noise)
    folder = runner.config.stage_dir("dividemix", _run_tag(args))
    runner.refuse_finished(folder)  # before the repair below does any work
    labels, repair_info = training_labels(args, runner)
    train_images, test_images, augment = in_memory_images(runner, args.image_size)

    with runner.claimed(folder):  # refuses finished results, locks the folder, writes cmd.txt
        described = {"preset": preset, "dataset": data.name, "noise_ratio": runner.config.ratio,
                     "noise_mode": args.noise_mode, "net_type": args.net_type, "depth": args.depth,
                     "pretrained_path": args.pretrained_path, "num_train": int(len(runner.train_indices)),
                     "image_size": int(train_images.shape[-1]), "device": str(runner.device),
                     "dividemix": asdict(config), **repair_info}
        atomic_write(folder / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(described, indent=2) + "\n"))

        device, rows = runner.device, torch.as_tensor(runner.train_indices)
        images = train_images[rows].to(device)
        train_labels = torch.as_tensor(labels)[rows]
        views = ViewBatches(images, train_labels, data.mean, data.std, config.batch_size, device, augment,
                            seed=args.seed)
        warmup = TensorBatches(images, train_labels, data.mean, data.std, 2 * config.batch_size, device, augment,
                               shuffle=True, seed=args.seed)
        eval_train = TensorBatches(images, train_labels, data.mean, data.std, 512, device)
        test = TensorBatches(test_images.to(device), data.test_labels, data.mean, data.std, 512, device)
        correct = None if data.real_noise else labels[runner.train_indices] == runner.true_labels[runner.train_indices]
        seed_everything(args.seed)
        nets = tuple(build_model(args.net_type, args.depth, data.num_classes, in_channels=int(images.shape[1]),
                                 image_size=int(images.shape[-1]), pretrained_path=args.pretrained_path).to(device)
                     for _ in range(2))  # built one after the other, so the two start from different weights
        log = train_dividemix(nets, views, warmup, eval_train, test, config, correct,
                              on_epoch=lambda rows_so_far: atomic_write_csv(folder / "train_log.csv", rows_so_far,
                                                                            LOG_COLUMNS))
        atomic_torch_save({f"net{k}": {key: value.detach().cpu() for key, value in net.state_dict().items()}
                           for k, net in enumerate(nets, start=1)}, folder / "model.pth")
        accuracies = [row["test_accuracy"] for row in log]
        best = int(np.argmax(accuracies))
        summary = {**described, "test_accuracy": accuracies[-1],
                   "test_accuracy_last10_mean": round(float(np.mean(accuracies[-10:])), 6),
                   "best_test_accuracy": accuracies[best], "best_epoch": best + 1,
                   "training_labels_correct": None if correct is None else round(float(correct.mean()), 6),
                   "train_seconds": round(sum(row["seconds"] for row in log), 2)}
        write_summary(folder, summary)
    print(f"test accuracy {100 * accuracies[-1]:.2f}% (last epoch; best {100 * accuracies[best]:.2f}% at epoch "
          f"{best + 1}, mean of the last 10 {100 * summary['test_accuracy_last10_mean']:.2f}%); results in {folder}")
    return folder


@exit_on_user_error
def main(argv: list[str] | None = None, preset: str = "generic") -> None:
    run(argv, preset)


if __name__ == "__main__":
    main(sys.argv[1:])
