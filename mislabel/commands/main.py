"""The ``mislabel`` command (also ``python -m mislabel``): one entry point, a subcommand per task.

    mislabel find-issues <class folder | list.csv> [--out FOLDER] [--budget MINUTES] ...
    mislabel rank <run_folder> [--methods ...] [--out ranked.csv]
    mislabel compare <run_folder> [detector_file ...]
    mislabel generate-td --dataset digits --noise_ratio 0.2 ...        (phase 1)
    mislabel train-detector --files_path RUN ...                         (phase 2)
    mislabel denoise --detector_file F --remove_ratio 0.2 ...            (phase 3)
    mislabel oracle --noise_ratio 0.2 ...                                (phase 3 without exactly the flips)
    mislabel crossval --folds 4 ...                                      (held-out probabilities for cleanlab)
    mislabel repair <run_folder> <detector_file> <repair_ratio>

Each subcommand is the very ``main`` that ``./run.sh`` calls (one implementation); ``mislabel
<subcommand> -h`` lists its flags. Imports happen only for the subcommand asked for, so a bad
command line is refused before torch loads.
"""
from __future__ import annotations

import importlib
import sys

__all__ = ["SUBCOMMANDS", "main"]

# name -> (module, what it does); runner.py's commands share mislabel.commands.cli
SUBCOMMANDS = {
    "find-issues": ("mislabel.commands.find_issues", "your own labelled images: train, rank every image, report"),
    "rank": ("mislabel.commands.rank", "a run folder -> a ranked CSV (the shipped detector by default)"),
    "compare": ("mislabel.commands.compare", "every method side by side on a run (AUC/mAP where flips are known)"),
    "generate-td": ("mislabel.commands.cli", "phase 1: corrupt labels, train, record training dynamics"),
    "train-detector": ("mislabel.commands.train_detector", "phase 2: train the LSTM detector on run folders"),
    "denoise": ("mislabel.commands.cli", "phase 3: remove the top suspects, retrain, report"),
    "oracle": ("mislabel.commands.cli", "the yardstick of phase 3: retrain without exactly the flipped labels"),
    "crossval": ("mislabel.commands.cli", "held-out probabilities by K-fold cross-validation (for cleanlab)"),
    "repair": ("mislabel.commands.repair", "relabel the top suspects of a run (data debugging)"),
}
RUNNER_COMMANDS = {"generate-td": "generate_td", "denoise": "denoise", "oracle": "oracle", "crossval": "crossval"}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, (_, about) in SUBCOMMANDS.items()]
    return ("usage: mislabel <subcommand> [arguments] (mislabel <subcommand> -h lists its flags)\n\n"
            "Find mislabeled training samples from training dynamics.\n\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown subcommand {name!r}; `mislabel --help` lists them", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(SUBCOMMANDS[name][0])
    if name in RUNNER_COMMANDS:
        module.main([RUNNER_COMMANDS[name], *rest], prog="mislabel", launcher="")
    else:
        module.main(rest, prog=f"mislabel {name}", launcher="")


if __name__ == "__main__":
    main()
