"""compare's command: every method side by side on one phase-1 run (``mislabel.compare``).

    ./run.sh compare <run_folder> [detector_file ...]
    mislabel compare <run_folder> [detector_file ...]

Scores the run with every baseline of ``mislabel.scoring.baselines``, cleanlab (when
``pred_probs_cv.npy`` is there: ``./run.sh crossval_probs``), the shipped learned control and each
detector given; writes comparison.csv / comparison.md, scores.csv, roc_pr.png and datamap.png into
the run folder (``mislabel.reports.comparison``) and prints comparison.md.
"""
from __future__ import annotations

import sys

from mislabel.core.user_input import OneLineParser, exit_on_user_error

__all__ = ["main"]


@exit_on_user_error
def main(argv: list[str] | None = None, prog: str = "run.sh compare", launcher: str = "./") -> None:
    parser = OneLineParser(prog=prog, launcher=launcher, description=__doc__.split("\n")[0])
    parser.add_argument("run_folder", help="a generate_td output folder (holds training_dynamics.npz)")
    parser.add_argument("detector_files", nargs="*", help="LSTM detector files (train_detector.py) to compare")
    parser.add_argument("--device", default="auto", help="for the detectors: auto (CUDA when present), cpu, cuda[:N]")
    args = parser.parse_args(argv)
    from mislabel.api import compare

    comparison = compare(args.run_folder, args.detector_files, args.device)
    print(comparison.markdown)
    print(f"wrote {', '.join(path.name for path in comparison.written)} in {comparison.folder}")


if __name__ == "__main__":
    main(sys.argv[1:])
