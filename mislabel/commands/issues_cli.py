"""find_issues' command line, parsed and checked without torch: ``python -m mislabel.commands.find_issues``
calls ``parse_args`` before its heavy imports, so a bad flag, a missing data path or detector file
is refused in a fraction of a second, before anything is read or written.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mislabel.training.budget import DEFAULT_BUDGET_MINUTES
from mislabel.core.run_options import STORES, TD_MODES, Recipe
from mislabel.models import NETWORKS
from mislabel.core.user_input import OneLineParser, UserError, check_output_folder, require_file, seed_value

__all__ = ["parse_args"]

DESCRIPTION = "Find label issues in your own labelled images: one command, a ranked list, an HTML report."


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="run.sh find_issues", launcher="./", description=DESCRIPTION)
    parser.add_argument("data", help="a folder of <class>/<image> (or train/ + val|test/), or a CSV of path,label")
    parser.add_argument("--out", default=None, help="output folder (default <results_dir>/find_issues/<data name>)")
    parser.add_argument("--results_dir", default="replication")
    parser.add_argument("--detector_files", nargs="+", default=None,
                        help="LSTM detector file(s); default mislabel/scoring/pretrained/default.pth.tar when "
                             "present, else the baselines alone")
    parser.add_argument("--allow_outside", action="store_true", help="let a CSV list images outside its folder")
    parser.add_argument("--report_top", type=int, default=100, help="suspects shown as thumbnails in report.html")
    parser.add_argument("--seed", type=seed_value, default=0, help="fixes the init, batches and the accuracy sample")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_MINUTES, metavar="MINUTES",
                        help="end the whole command within this many minutes: the recipe is picked from a ladder "
                             f"timed on this machine (default {DEFAULT_BUDGET_MINUTES:g}; 0 = the full recipe)")
    recipe = parser.add_argument_group("recipe (default: chosen from the data and printed)")
    for flag, kind in (("--net_type", str), ("--depth", int), ("--num_epochs", int), ("--batch_size", int),
                       ("--lr", float), ("--image_size", int)):
        recipe.add_argument(flag, type=kind, default=None)
    recipe.add_argument("--storage", default="auto", choices=("auto", "memory", "files"),
                        help="hold the decoded images in memory, or stream them from the files")
    recipe.add_argument("--no_hflip", action="store_true", help="no horizontal flips (for text, digits, ...)")
    defaults = Recipe()
    recipe.add_argument("--momentum", type=float, default=defaults.momentum)
    recipe.add_argument("--wd", type=float, default=defaults.weight_decay, help="weight decay")
    recipe.add_argument("--loss_type", default=defaults.loss_type)
    recipe.add_argument("--widen_factor", type=int, default=None, help="wide_resnet only")
    recipe.add_argument("--pretrained_path", default=None, help="local state_dict to start from")
    run = parser.add_argument_group("run")
    run.add_argument("--td_mode", default="train", choices=TD_MODES)
    run.add_argument("--td_store", default="auto", choices=STORES)
    run.add_argument("--td_topk", type=int, default=None)
    run.add_argument("--num_workers", type=int, default=None, help="image-decoding processes when streaming")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    run.add_argument("--overwrite", action="store_true",
                     help="train phase 1 again from scratch; replace another command's results in --out")
    args = parser.parse_args(argv)
    _check_paths(args)
    _check_recipe_flags(args)
    for flag in ("report_top", "td_topk", "num_epochs", "depth"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag} {getattr(args, flag)} must be at least 1")
    if args.image_size is not None and args.image_size < 8:
        raise UserError(f"--image_size {args.image_size} is too small; the networks need at least 8")
    if not args.budget >= 0 or args.budget == float("inf"):
        raise UserError(f"--budget {args.budget:g} is not a number of minutes; pass e.g. 20, or 0 for the full recipe")
    if args.num_workers is not None and args.num_workers < 0:
        raise UserError(f"--num_workers {args.num_workers} is negative; pass 0 to decode in the main process")
    return args


def _check_recipe_flags(args: argparse.Namespace) -> None:
    """Refuse a bad network, depth or recipe value before any file is read or written."""
    net = (args.net_type or "resnet").strip().lower()
    if net not in NETWORKS:
        raise UserError(f"unknown --net_type {args.net_type!r}; choose one of: {', '.join(sorted(NETWORKS))}")
    if args.depth is not None and args.depth not in NETWORKS[net]:
        raise UserError(f"--depth {args.depth} is not valid for {net}; valid depths: "
                        f"{', '.join(map(str, NETWORKS[net]))}")
    Recipe(epochs=args.num_epochs or 1, batch_size=args.batch_size or 32, lr=args.lr or 0.1,
           loss_type=args.loss_type).validate()


def _check_paths(args: argparse.Namespace) -> None:
    """What ``list_data`` and the detector loader would refuse first, checked before torch loads."""
    data = Path(args.data)
    if not data.exists():
        raise UserError(f"{args.data} does not exist; pass a folder of <class>/<image> or a CSV of path,label")
    if data.is_file() and data.suffix.lower() != ".csv":
        raise UserError(f"{args.data} is a file but not a .csv; pass a class folder or a CSV of path,label")
    for path in args.detector_files or ():
        require_file(path, "detector file", "train one with `./run.sh train_detector` or pass the path of an "
                     "existing .pth.tar")
    check_output_folder(args.out or args.results_dir, "output folder", "pass --out a folder (or set RESULTS_DIR to one)")
    if args.pretrained_path is not None:
        require_file(args.pretrained_path, "--pretrained_path", "give a local state_dict file (weights are never "
                     "downloaded)")
