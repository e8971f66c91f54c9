"""The Runner façade's command line: generate_td, denoise, oracle and crossval on a named dataset.

    python runner.py generate_td --dataset cifar10 --datadir data --noise_ratio 0.2 ...
    python runner.py denoise ... --detector_file F --remove_ratio 0.2
    python runner.py oracle ...                       # phase 3 without exactly the flipped labels
    python runner.py crossval ... --folds 4

``./run.sh`` is the usual way in; ``python runner.py -h`` lists the flags. The Runner itself
(``Runner``, ``RunConfig``) lives in ``mislabel/pipeline.py`` and is re-exported here, so the
seed's ``from runner import Runner`` keeps working.
"""
from __future__ import annotations

import sys

from mislabel.commands.cli import check_args, main
from mislabel.core.user_input import exit_on_user_error

if __name__ == "__main__":  # refuse a bad command line before the imports below (seconds and ~1 GB)
    exit_on_user_error(check_args)(sys.argv[1:])

from mislabel.pipeline import Runner
from mislabel.run_config import RunConfig

__all__ = ["Runner", "RunConfig"]

if __name__ == "__main__":
    main(sys.argv[1:])
