"""Command-line flags of runner.py; run.sh maps the seed's positional arguments onto these.

Torch-free: ``check_args`` parses and checks every flag that can be checked without the data
(names, ranges, paths), and runner.py calls it before its heavy imports, so a bad argument is
refused in a fraction of a second.
"""
from __future__ import annotations

import argparse
import functools

from mislabel.core.run_options import DEFAULT_FOLDS, STORES, TD_MODES, Recipe, check_datadir
from mislabel.core.user_input import OneLineParser, UserError, require_file, require_folder, seed_value
from mislabel.run_config import RunConfig, check_ratio

__all__ = ["check_args", "parse_args"]


def _add_common(parser: argparse.ArgumentParser) -> None:
    recipe = Recipe()
    data = parser.add_argument_group("data and noise")
    data.add_argument("--datadir", default=None, help="folder holding <dataset>/ (unused for digits)")
    data.add_argument("--dataset", default="digits")
    data.add_argument("--seed", type=seed_value, default=0, help="fixes noise, split, init and batches (0..2**32-1)")
    data.add_argument("--num_valid", type=int, default=None,
                      help="training samples held out for early stopping (default 10%%; 0 = none)")
    data.add_argument("--image_size", type=int, default=None,
                      help="side of the crops cut from image-file datasets (default 224 for the named photo "
                           "datasets, as the seed; other folders and CSVs: sized from their images)")
    data.add_argument("--num_workers", type=int, default=None,
                      help="processes decoding image files (default: one per spare core, none for tiny sets)")
    model = parser.add_argument_group("model")
    model.add_argument("--net_type", default="resnet")
    model.add_argument("--depth", type=int, default=32)
    model.add_argument("--widen_factor", type=int, default=None, help="wide_resnet only")
    model.add_argument("--pretrained_path", default=None, help="local state_dict to start from (never downloaded)")
    train = parser.add_argument_group("recipe (defaults: the seed's ResNet-32 recipe)")
    train.add_argument("--num_epochs", type=int, default=recipe.epochs)
    train.add_argument("--batch_size", type=int, default=recipe.batch_size)
    train.add_argument("--lr", type=float, default=recipe.lr)
    train.add_argument("--momentum", type=float, default=recipe.momentum)
    train.add_argument("--wd", type=float, default=recipe.weight_decay, help="weight decay")
    train.add_argument("--loss_type", default=recipe.loss_type, help="cross_entropy, reed_soft or reed_hard")
    train.add_argument("--td_mode", default="train", choices=TD_MODES,
                       help="record dynamics from the training pass (train) or an extra clean pass (eval)")
    train.add_argument("--td_store", default="auto", choices=STORES,
                       help="keep dynamics in RAM or memory-mapped in the run folder (auto: memmap when large)")
    train.add_argument("--td_topk", type=int, default=None,
                       help="keep the assigned class + the K most probable others per epoch (default: all classes)")
    run = parser.add_argument_group("run")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    run.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                     help="bf16 autocast for training and per-epoch evaluation (default: on for CUDA GPUs with "
                          "native bf16, off on CPU; --no-amp runs float32)")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the model (off by default: compiling costs seconds to minutes up front)")
    run.add_argument("--results_dir", default="replication")
    run.add_argument("--overwrite", action="store_true", help="redo a run whose folder holds finished results")


def check_args(argv: list[str]) -> argparse.Namespace:
    """Parse runner.py's command line and refuse, with a UserError, anything wrong in it that
    shows without loading the data."""
    parser = OneLineParser(prog="runner.py", launcher="python ", description="mislabel-detection pipeline")
    commands = parser.add_subparsers(dest="command", required=True,
                                     parser_class=functools.partial(OneLineParser, launcher="python "))
    generate = commands.add_parser("generate_td", help="phase 1: train and record training dynamics")
    _add_common(generate)
    generate.add_argument("--noise_ratio", default="0.2")
    generate.add_argument("--noise_type", default="uniform", help="uniform/sym, flip/asym, semantic, idn or confusion")
    generate.add_argument("--budget", type=float, default=None, metavar="MINUTES",
                          help="train as many epochs (up to --num_epochs) as fit this many minutes, timed on this "
                               "machine (default: no budget)")
    denoise = commands.add_parser("denoise", help="phase 3: remove suspects and retrain")
    _add_common(denoise)
    denoise.add_argument("--noise_ratio", default=None, help="omit for real-world (large) datasets")
    denoise.add_argument("--noise_type", default="uniform")
    denoise.add_argument("--detector_file", required=True)
    denoise.add_argument("--remove_ratio", required=True,
                         help="share of the training samples to remove, or auto: as many as the detector flags")
    denoise.add_argument("--td_dir", default=None, help="phase-1 folder to rank (default: the matching run)")
    crossval = commands.add_parser("crossval", help="held-out class probabilities by K-fold cross-validation "
                                   "(pred_probs_cv.npy, for cleanlab in `compare`)")
    _add_common(crossval)
    crossval.add_argument("--noise_ratio", default="0.2")
    crossval.add_argument("--noise_type", default="uniform", help="uniform/sym, flip/asym, semantic, idn or confusion")
    crossval.add_argument("--folds", type=int, default=DEFAULT_FOLDS, help="K: costs K extra training runs")
    crossval.set_defaults(num_epochs=None)  # None: as many epochs as the generate_td run recorded
    args = parser.parse_args(argv)
    args.config = RunConfig.from_args(args)  # checks every run setting
    check_datadir(args.dataset, args.datadir)
    budget = getattr(args, "budget", None)
    if budget is not None and not 0 < budget < float("inf"):
        raise UserError(f"--budget {budget:g} is not a positive number of minutes; pass e.g. 15, or omit it")
    if args.command == "crossval" and args.folds < 2:
        raise UserError(f"--folds {args.folds} must be at least 2; the default is {DEFAULT_FOLDS}")
    if args.command == "denoise":
        if args.remove_ratio != "auto":
            args.remove_ratio = float(check_ratio(args.remove_ratio, "remove_ratio"))
        require_file(args.detector_file, "detector file", "train one with `./run.sh train_detector` or pass the "
                     "path of an existing .pth.tar")
        if args.td_dir is not None:
            require_folder(args.td_dir, "run folder", "pass the folder generate_td wrote")
    return args


def parse_args(argv: list[str] | None) -> tuple[str, RunConfig, argparse.Namespace]:
    """``check_args``, then (command, the run's configuration, the flags)."""
    args = check_args(argv)
    return args.command, args.config, args
