"""Command-line flags of runner.py; run.sh maps the seed's positional arguments onto these.

Torch-free: ``check_args`` parses and checks every flag that can be checked without the data
(names, ranges, paths), and runner.py calls it before its heavy imports, so a bad argument is
refused in a fraction of a second.
"""
from __future__ import annotations

import argparse
import functools

from mislabel.data.noise import canonical_noise_type
from mislabel.core.run_options import DEFAULT_FOLDS, STORES, TD_MODES, Recipe, check_datadir
from mislabel.models import check_network
from mislabel.core.user_input import (OneLineParser, UserError, check_output_folder, require_file, require_folder,
                                      seed_value, single_path_component)

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


def _ratio(text: str, flag: str) -> str:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{flag} {text!r} is not a number; pass a fraction such as 0.2") from None
    if not 0.0 <= value < 1.0:
        raise UserError(f"{flag} {text} is outside [0, 1); pass a fraction such as 0.2")
    return text


def check_args(argv: list[str]) -> argparse.Namespace:
    """Parse runner.py's command line and refuse, with a UserError, anything wrong in it that
    shows without loading the data."""
    parser = OneLineParser(prog="runner.py", launcher="python ", description="mislabel-detection pipeline")
    commands = parser.add_subparsers(dest="command", required=True,
                                     parser_class=functools.partial(OneLineParser, launcher="python "))
    generate = commands.add_parser("generate_td", help="phase 1: train and record training dynamics")
    _add_common(generate)
    generate.add_argument("--noise_ratio", default="0.2")
    generate.add_argument("--noise_type", default="uniform", help="uniform (sym), flip (asym), semantic or idn")
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
    crossval.add_argument("--noise_type", default="uniform", help="uniform (sym), flip (asym), semantic or idn")
    crossval.add_argument("--folds", type=int, default=DEFAULT_FOLDS, help="K: costs K extra training runs")
    crossval.set_defaults(num_epochs=None)  # None: as many epochs as the generate_td run recorded
    args = parser.parse_args(argv)
    single_path_component(args.dataset, "dataset name")  # it names a folder under results_dir
    check_datadir(args.dataset, args.datadir)
    check_output_folder(args.results_dir, "results folder", "set RESULTS_DIR (--results_dir) to a folder")
    if args.noise_ratio is not None:
        _ratio(args.noise_ratio, "noise_ratio")
    canonical_noise_type(args.noise_type)
    check_network(args.net_type, args.depth, args.widen_factor)
    if args.pretrained_path is not None:
        require_file(args.pretrained_path, "--pretrained_path", "give a local state_dict file (weights are never "
                     "downloaded)")
    budget = getattr(args, "budget", None)
    if budget is not None and not 0 < budget < float("inf"):
        raise UserError(f"--budget {budget:g} is not a positive number of minutes; pass e.g. 15, or omit it")
    if args.image_size is not None and args.image_size < 8:
        raise UserError(f"--image_size {args.image_size} is too small; the networks need at least 8")
    if args.td_topk is not None and args.td_topk < 1:
        raise UserError(f"--td_topk {args.td_topk} must be at least 1; omit it to keep every class")
    if args.num_workers is not None and args.num_workers < 0:
        raise UserError(f"--num_workers {args.num_workers} is negative; pass 0 to decode in the main process")
    if args.command == "crossval" and args.folds < 2:
        raise UserError(f"--folds {args.folds} must be at least 2; the default is {DEFAULT_FOLDS}")
    if args.command == "denoise":
        if args.remove_ratio != "auto":
            args.remove_ratio = float(_ratio(args.remove_ratio, "remove_ratio"))
        require_file(args.detector_file, "detector file", "train one with `./run.sh train_detector` or pass the "
                     "path of an existing .pth.tar")
        if args.td_dir is not None:
            require_folder(args.td_dir, "run folder", "pass the folder generate_td wrote")
    _recipe(args).validate()
    return args


def _recipe(args: argparse.Namespace) -> Recipe:
    epochs = Recipe.epochs if args.num_epochs is None else args.num_epochs  # crossval resolves None itself
    return Recipe(epochs=epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                  weight_decay=args.wd, loss_type=args.loss_type)


def parse_args(argv, config_cls):
    """``check_args``, then the run's configuration: (command, ``config_cls`` instance, flags)."""
    args = check_args(argv)
    config = config_cls(dataset=args.dataset, datadir=args.datadir, seed=args.seed, noise_ratio=args.noise_ratio,
                        noise_type=args.noise_type, net_type=args.net_type, depth=args.depth,
                        widen_factor=args.widen_factor, pretrained_path=args.pretrained_path,
                        num_valid=args.num_valid, image_size=args.image_size, num_workers=args.num_workers,
                        td_mode=args.td_mode, td_store=args.td_store, td_topk=args.td_topk, device=args.device,
                        amp=args.amp, compile=args.compile,
                        results_dir=args.results_dir, overwrite=args.overwrite, recipe=_recipe(args))
    return args.command, config, args
