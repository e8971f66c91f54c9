"""What defines a run, as one checked value: data, noise, network, recipe, recording, output.

Torch-free, so ``runner.py`` and ``find_issues`` build (and so check) it before torch loads.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

from mislabel.core.run_options import STORES, TD_MODES, Recipe
from mislabel.core.user_input import UserError, check_output_folder, require_file, single_path_component
from mislabel.data.noise import canonical_noise_type
from mislabel.models import check_network

__all__ = ["RunConfig", "check_ratio"]


def check_ratio(text: str, flag: str) -> str:
    """A fraction in [0, 1) as the user typed it (the text names folders, so it is kept)."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{flag} {text!r} is not a number; pass a fraction such as 0.2") from None
    if not 0.0 <= value < 1.0:
        raise UserError(f"{flag} {text} is outside [0, 1); pass a fraction such as 0.2")
    return text


@dataclass
class RunConfig:
    """Everything that defines a run, checked when it is made; the run folders are named from it
    (``experiment_dir``, ``td_dir``) as in the seed, and nowhere else."""

    dataset: str = "digits"
    datadir: str | None = None
    seed: int = 0
    noise_ratio: str | None = "0.2"     # as the user spelled it (names the folder); None = no synthetic noise
    noise_type: str = "uniform"
    net_type: str = "resnet"
    depth: int = 32
    widen_factor: int | None = None
    pretrained_path: str | None = None
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
    recipe: Recipe = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.recipe = self.recipe or Recipe()
        self.validate()

    def validate(self) -> None:
        """Refuse, with one line naming the fix, every value that is wrong without loading the data.
        (Where a named dataset lives is checked when it is loaded: a Runner may be given its data.)"""
        single_path_component(self.dataset, "dataset name")  # it names a folder under results_dir
        check_output_folder(self.results_dir, "results folder", "set RESULTS_DIR (--results_dir) to a folder")
        if self.noise_ratio is not None:
            check_ratio(self.noise_ratio, "noise_ratio")
        canonical_noise_type(self.noise_type)
        check_network(self.net_type, self.depth, self.widen_factor)
        if self.pretrained_path is not None:
            require_file(self.pretrained_path, "--pretrained_path", "give a local state_dict file (weights are "
                         "never downloaded)")
        if self.num_valid is not None and self.num_valid < 0:
            raise UserError(f"--num_valid {self.num_valid} is negative; pass 0 to hold out nothing")
        if self.image_size is not None and self.image_size < 8:
            raise UserError(f"--image_size {self.image_size} is too small; the networks need at least 8")
        if self.td_topk is not None and self.td_topk < 1:
            raise UserError(f"--td_topk {self.td_topk} must be at least 1; omit it to keep every class")
        if self.num_workers is not None and self.num_workers < 0:
            raise UserError(f"--num_workers {self.num_workers} is negative; pass 0 to decode in the main process")
        if self.td_mode not in TD_MODES:
            raise UserError(f"unknown --td_mode {self.td_mode!r}; choose one of: {', '.join(TD_MODES)}")
        if self.td_store not in STORES:
            raise UserError(f"unknown --td_store {self.td_store!r}; choose one of: {', '.join(STORES)}")
        self.recipe.validate()

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides) -> RunConfig:
        """The configuration a command line gives: every field its flags name (the recipe from
        ``--num_epochs``, ``--lr`` ...), then ``overrides``."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "recipe" and hasattr(args, f.name)}
        default, epochs = Recipe(), getattr(args, "num_epochs", None)  # None: crossval resolves it from the run
        recipe = Recipe(epochs=default.epochs if epochs is None else epochs,
                        batch_size=getattr(args, "batch_size", default.batch_size), lr=getattr(args, "lr", default.lr),
                        momentum=args.momentum, weight_decay=args.wd, loss_type=args.loss_type)
        return cls(**{**values, "recipe": recipe, **overrides})

    @property
    def ratio(self) -> float:
        return 0.0 if self.noise_ratio is None else float(self.noise_ratio)

    @property
    def experiment_dir(self) -> Path:
        name = f"{self.dataset}_{self.net_type}{self.depth}"
        if self.noise_ratio is not None:
            name += f"_percmislabeled{self.noise_ratio}_{self.noise_type}"
        return Path(self.results_dir) / name

    @property
    def td_dir(self) -> Path:
        return self.experiment_dir / f"computation4td_seed{self.seed}"

    def stage_dir(self, stage: str, name: str) -> Path:
        """A later stage's folder beside phase 1's: ``<stage>_seed<seed>/<name>`` (denoise:
        ``prune4retrain``/``remove<ratio>``, as in the seed; DivideMix: ``dividemix``/its tag)."""
        return self.experiment_dir / f"{stage}_seed{self.seed}" / name
