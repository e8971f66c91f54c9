"""The Runner façade's command line: generate_td, denoise and crossval on a named dataset.

    python runner.py generate_td --dataset cifar10 --datadir data --noise_ratio 0.2 ...
    python runner.py denoise ... --detector_file F --remove_ratio 0.2
    python runner.py crossval ... --folds 4

``./run.sh`` is the usual way in; ``python runner.py -h`` lists the flags. The Runner itself
(``Runner``, ``RunConfig``) lives in ``mislabel/pipeline.py`` and is re-exported here, so the
seed's ``from runner import Runner`` keeps working.
"""
from __future__ import annotations

import os
import sys

from mislabel.commands.cli import check_args, parse_args
from mislabel.core.user_input import UserError, exit_on_user_error

if __name__ == "__main__":  # refuse a bad command line before the imports below (seconds and ~1 GB)
    exit_on_user_error(check_args)(sys.argv[1:])

from mislabel.core import distributed  # noqa: E402  (after the check, on purpose)
from mislabel.pipeline import Runner  # noqa: E402
from mislabel.run_config import RunConfig  # noqa: E402
from mislabel.training.budget import Clock, minutes  # noqa: E402
from mislabel.training.run_budget import epochs_within_budget  # noqa: E402

__all__ = ["Runner", "RunConfig"]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    clock = Clock()
    command, config, extra = parse_args(argv)
    if command == "crossval" and os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise UserError("crossval_probs does not run under torchrun; run it without NPROC")
    runner = Runner(config)
    try:
        if command == "generate_td":
            if extra.budget is not None:
                epochs_within_budget(runner, extra.budget, clock)
            runner.train_for_td_computation()
            if extra.budget is not None and distributed.is_main():
                print(f"took {minutes(clock.elapsed())} of the {extra.budget:g} min budget")
        elif command == "crossval":
            runner.crossval(extra.folds, extra.num_epochs)
        else:
            runner.train(extra.detector_file, extra.remove_ratio, extra.td_dir)
    finally:
        distributed.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
