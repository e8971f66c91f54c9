"""runner.py's commands (generate_td, denoise, oracle, crossval): their flags and ``main``; run.sh maps the
seed's positional arguments onto these flags.

Torch-free: ``check_args`` parses and checks every flag that can be checked without the data
(names, ranges, paths), and runner.py calls it before its heavy imports, so a bad argument is
refused in a fraction of a second.
"""
from __future__ import annotations

import argparse
import functools

from mislabel.core.run_options import DEFAULT_FOLDS, check_datadir, check_weighted_loss
from mislabel.core.user_input import OneLineParser, UserError, exit_on_user_error, require_file, require_folder
from mislabel.run_config import RunConfig, add_budget_flag, add_run_flags, check_budget, check_ratio
from mislabel.scoring.cleaning import ACTIONS, DEFAULT_ACTION

__all__ = ["check_args", "parse_args", "main"]


def _add_common(parser: argparse.ArgumentParser) -> None:
    """The dataset flags of runner.py's commands, then the flags every training command shares."""
    data = parser.add_argument_group("dataset")
    data.add_argument("--datadir", default=None, help="folder holding <dataset>/ (unused for digits)")
    data.add_argument("--dataset", default="digits")
    data.add_argument("--num_valid", type=int, default=None,
                      help="training samples held out for early stopping (default 10%%; 0 = none)")
    add_run_flags(parser)


def _add_noise(parser: argparse.ArgumentParser, default_ratio: str | None) -> None:
    """The synthetic-noise flags (denoise and crossval name the phase-1 run they follow)."""
    noise = parser.add_argument_group("noise")
    noise.add_argument("--noise_ratio", default=default_ratio,
                       help="share of training labels to corrupt" + ("" if default_ratio else
                                                                     "; omit for real-world (large) datasets"))
    noise.add_argument("--noise_type", default="uniform", help="uniform/sym, flip/asym, semantic, idn or confusion")


def check_args(argv: list[str], prog: str = "runner.py", launcher: str = "python ") -> argparse.Namespace:
    """Parse runner.py's command line and refuse, with a UserError, anything wrong in it that
    shows without loading the data."""
    parser = OneLineParser(prog=prog, launcher=launcher, description="mislabel-detection pipeline")
    commands = parser.add_subparsers(dest="command", required=True,
                                     parser_class=functools.partial(OneLineParser, launcher=launcher))
    generate = commands.add_parser("generate_td", help="phase 1: train and record training dynamics")
    _add_common(generate)
    _add_noise(generate, default_ratio="0.2")
    add_budget_flag(generate, default_minutes=0)
    denoise = commands.add_parser("denoise", help="phase 3: remove suspects and retrain")
    _add_common(denoise)
    _add_noise(denoise, default_ratio=None)
    denoise.add_argument("--detector_file", required=True)
    denoise.add_argument("--remove_ratio", required=True,
                         help="share of the training samples to act on, or auto: the estimated number of wrong "
                              "labels (confident learning on the run's dynamics, or on pred_probs_cv.npy when "
                              "crossval ran)")
    denoise.add_argument("--td_dir", default=None, help="phase-1 folder to rank (default: the matching run)")
    denoise.add_argument("--action", default=DEFAULT_ACTION, choices=ACTIONS,
                         help="what retraining does with the suspects: remove them (the seed's phase 3), relabel "
                              "them to the model's suggestion, hybrid (relabel where the model preferred the "
                              "suggestion, remove the rest) or downweight their loss (default %(default)s)")
    oracle = commands.add_parser("oracle", help="the yardstick of phase 3: retrain without exactly the flipped "
                                 "labels (synthetic noise only)")
    _add_common(oracle)
    _add_noise(oracle, default_ratio=None)
    oracle.add_argument("--td_dir", default=None, help="phase-1 folder whose flips to drop (default: the matching run)")
    crossval = commands.add_parser("crossval", help="held-out class probabilities by K-fold cross-validation "
                                   "(pred_probs_cv.npy, for cleanlab in `compare`)")
    _add_common(crossval)
    _add_noise(crossval, default_ratio="0.2")
    crossval.add_argument("--folds", type=int, default=DEFAULT_FOLDS, help="K: costs K extra training runs")
    crossval.set_defaults(num_epochs=None)  # None: as many epochs as the generate_td run recorded
    args = parser.parse_args(argv)
    args.config = RunConfig.from_args(args)  # checks every run setting
    check_datadir(args.dataset, args.datadir)
    check_budget(getattr(args, "budget", 0.0))
    if args.command == "crossval" and args.folds < 2:
        raise UserError(f"--folds {args.folds} must be at least 2; the default is {DEFAULT_FOLDS}")
    if args.command in ("denoise", "oracle") and args.td_dir is not None:
        require_folder(args.td_dir, "run folder", "pass the folder generate_td wrote")
    if args.command == "denoise":
        if args.action == "downweight":
            check_weighted_loss(args.config.recipe.loss_type)
        if args.remove_ratio != "auto":
            args.remove_ratio = float(check_ratio(args.remove_ratio, "remove_ratio"))
        require_file(args.detector_file, "detector file", "train one with `./run.sh train_detector` or pass the "
                     "path of an existing .pth.tar")
    return args


def parse_args(argv: list[str] | None, prog: str = "runner.py", launcher: str = "python "
               ) -> tuple[str, RunConfig, argparse.Namespace]:
    """``check_args``, then (command, the run's configuration, the flags)."""
    args = check_args(argv, prog, launcher)
    return args.command, args.config, args


def _within_budget(config: RunConfig, budget_minutes: float, data, device) -> RunConfig:
    """``config`` with as many of its epochs as the cost table predicts fit ``--budget`` (printed, and
    recorded in the run folder); unchanged for a finished run, which training refuses anyway."""
    from dataclasses import replace

    from mislabel.core import distributed
    from mislabel.data.sizing import median_short_side
    from mislabel.reports.summary import read_summary
    from mislabel.run_config import valid_count
    from mislabel.training.budget import Workload, epochs_within_budget

    if read_summary(config.td_dir) is not None and not config.overwrite:
        return config
    num_valid = valid_count(config.num_valid, data.num_train)
    file_side = None if data.train_images is not None else median_short_side(data.train_files) or data.image_size
    side, cached = data.image_size, False
    if config.backbone is not None:  # priced at the side the backbone sees, its features' cache checked
        from mislabel.training.probe import backbone_side, probe_features_cached

        side = backbone_side(config.backbone, data.image_size, config.image_size)
        cached = config.mode == "probe" and probe_features_cached(data, config.backbone, side, config.backbone_weights,
                                                                  config.td_dir.parent)
    work = Workload(num_train=data.num_train - num_valid, num_valid=num_valid, num_test=len(data.test_labels),
                    num_classes=data.num_classes, in_channels=data.in_channels, side=side, file_side=file_side)
    epochs, note = epochs_within_budget(config.net_type, config.depth, config.recipe.batch_size, config.recipe.epochs,
                                        work, str(device), budget_minutes, config.td_dir, config.widen_factor,
                                        backbone=config.backbone, mode=config.mode, features_cached=cached)
    if distributed.is_main():
        print(note)
    return replace(config, recipe=replace(config.recipe, epochs=epochs))


@exit_on_user_error
def main(argv: list[str] | None = None, prog: str = "runner.py", launcher: str = "python ") -> None:
    """runner.py's commands (``generate-td``, ``denoise``, ``oracle``, ``crossval`` of the ``mislabel`` command)."""
    import os

    command, config, extra = parse_args(argv, prog, launcher)
    if command == "crossval" and os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise UserError("crossval_probs does not run under torchrun; run it without NPROC")
    if config.noise_ratio is None and extra.noise_ratio is not None and float(extra.noise_ratio) > 0:
        print(f"note: {config.dataset} is a real-world noisy dataset; noise arguments are ignored")
    from mislabel.core import distributed
    from mislabel.core.device import pick_device
    from mislabel.data.datasets import load_dataset
    from mislabel.pipeline import Runner
    from mislabel.training.budget import Clock, minutes

    clock = Clock()
    device = distributed.start(pick_device(config.device))  # joins torchrun's process group, if any
    with distributed.stopped_after():
        data = load_dataset(config.dataset, config.datadir, config.seed, config.dataset_image_size)
        budget = getattr(extra, "budget", 0)
        if budget:
            config = _within_budget(config, budget, data, device)
        runner = Runner(config, data, device)
        if command == "generate_td":
            runner.train_for_td_computation()
            if budget and distributed.is_main():
                print(f"took {minutes(clock.elapsed())} of the {budget:g} min budget")
        elif command == "crossval":
            runner.crossval(extra.folds, extra.num_epochs)
        elif command == "oracle":
            runner.oracle(extra.td_dir)
        else:
            runner.denoise(extra.detector_file, extra.remove_ratio, extra.td_dir, extra.action)
