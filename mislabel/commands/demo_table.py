"""The demo's closing table (``mislabel.reports.demo_table``) from the unseen run's flags.

    python -m mislabel.commands.demo_table --remove_ratio 0.2 --dataset digits --seed 2 --noise_ratio 0.2 ...

``./run.sh demo`` calls it last, with the flags it gave runner.py for the unseen run; the folders
are the ones those flags name (``RunConfig``: phase 1, ``remove<ratio>``, the recommended action on
``auto``, ``oracle``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from mislabel.commands.cli import check_args
from mislabel.core.user_input import OneLineParser, exit_on_user_error
from mislabel.reports.demo_table import DemoFolders
from mislabel.run_config import check_ratio
from mislabel.scoring.cleaning import RECOMMENDED_ACTION

__all__ = ["demo_folders", "main"]

PROG = "mislabel.commands.demo_table"


def demo_folders(argv: list[str]) -> DemoFolders:
    """The folders runner.py wrote for these flags: ``--remove_ratio`` (the seed's phase 3) and the
    unseen run's flags as runner.py takes them."""
    parser = OneLineParser(prog=PROG, launcher="python -m ", description=__doc__.split("\n")[0])
    parser.add_argument("--remove_ratio", required=True, help="the share the seed's phase 3 removed")
    known, run_flags = parser.parse_known_args(argv)
    config = check_args(["oracle", *run_flags], prog=PROG, launcher="python -m ").config
    ratio = float(check_ratio(known.remove_ratio, "--remove_ratio"))
    return DemoFolders(noisy=Path(config.td_dir), remove=config.denoise_dir("remove", ratio),
                       recommended=config.denoise_dir(RECOMMENDED_ACTION, "auto"), oracle=config.oracle_dir)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    from mislabel.reports.demo_table import demo_table

    print(demo_table(demo_folders(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
