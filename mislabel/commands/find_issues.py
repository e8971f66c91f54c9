"""find_issues' command: parse, call the library pipeline (``mislabel.issue_finder``), print.

    ./run.sh find_issues <class folder | list.csv> [--out FOLDER] [--detector_files F ...] [--flags]
    mislabel find-issues <class folder | list.csv> [...]

The command line is checked (``mislabel.issue_options``) before torch loads, so a bad flag is
refused in a fraction of a second; ``mislabel.find_issues(data, **settings)`` is the same thing
from Python.
"""
from __future__ import annotations

import sys

from mislabel.core.user_input import exit_on_user_error
from mislabel.issue_options import parse_issue_options
from mislabel.training.budget import Clock

__all__ = ["main"]


@exit_on_user_error
def main(argv: list[str] | None = None, prog: str = "run.sh find_issues", launcher: str = "./") -> None:
    clock = Clock()  # started before the heavy imports below: the budget covers them too
    options = parse_issue_options(sys.argv[1:] if argv is None else argv, prog, launcher)
    from mislabel.core import distributed
    from mislabel.issue_finder import IssueFinder

    with distributed.stopped_after():
        result = IssueFinder(options, clock).run()
    if result is not None:
        print(result.summary)


if __name__ == "__main__":
    main()
