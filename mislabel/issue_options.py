"""find_issues' options: declared once (``issues_parser``), checked once (``IssueOptions.from_args``),
for the command line and the Python API alike.

Torch-free: ``python -m mislabel.commands.find_issues`` checks its command line with this before
its heavy imports, so a bad flag, a missing data path or detector file is refused in a fraction
of a second, before anything is read or written. ``mislabel.find_issues(data, **settings)`` takes
the same names as the flags (``net_type=``, ``budget=``, ``no_hflip=`` ...), with the same defaults.
"""
from __future__ import annotations

import argparse
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

from mislabel.core.user_input import OneLineParser, UserError, check_output_folder, integer, number, require_file
from mislabel.models import NETWORKS
from mislabel.run_config import RunConfig, add_budget_flag, add_run_flags, check_budget
from mislabel.training.budget import DEFAULT_BUDGET_MINUTES
from mislabel.training.plan import PlanOverrides
from mislabel.scoring.seeding import DEFAULT_SEED_RATE

__all__ = ["IssueOptions", "issues_parser", "parse_issue_options", "issue_options", "setting_value"]

DESCRIPTION = "Find label issues in your own labelled images: one command, a ranked list, an HTML report."
STORAGE = ("auto", "memory", "files")


def issues_parser(prog: str = "run.sh find_issues", launcher: str = "./") -> OneLineParser:
    """find_issues' flags: its own, ``--budget``, and the flags every training command shares."""
    parser = OneLineParser(prog=prog, launcher=launcher, description=DESCRIPTION)
    parser.add_argument("data", help="a folder of <class>/<image> (or train/ + val|test/), or a CSV of path,label")
    parser.add_argument("--out", default=None, help="output folder (default <results_dir>/find_issues/<data name>)")
    parser.add_argument("--detector_files", nargs="+", default=None,
                        help="LSTM detector file(s); default mislabel/scoring/pretrained/default.pth.tar when "
                             "present, else the baselines alone")
    parser.add_argument("--allow_outside", action="store_true", help="let a CSV list images outside its folder")
    parser.add_argument("--report_top", type=integer, default=100, help="suspects shown as thumbnails in report.html")
    add_budget_flag(parser, DEFAULT_BUDGET_MINUTES)
    parser.add_argument("--storage", default="auto",
                        help="hold the decoded images in memory (memory), or stream them from the files (files); "
                             "auto: in memory when they fit")
    parser.add_argument("--no_hflip", action="store_true", help="no horizontal flips (for text, digits, ...)")
    add_run_flags(parser, chosen=True, seed_rate=DEFAULT_SEED_RATE)  # every output keeps the user's labels
    return parser


@dataclass
class IssueOptions:
    """A checked find_issues request. ``run`` holds every shared setting (seed, momentum, device,
    recording ...) with the network and recipe still provisional: the plan fills them in."""

    data: str
    out: str | None
    detector_files: list[str] | None
    allow_outside: bool
    report_top: int
    budget: float
    hflip: bool
    fixed: PlanOverrides
    run: RunConfig

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> IssueOptions:
        """Check every value that can be checked without reading the data, in the order a user fixes them."""
        data = Path(args.data)
        if not data.exists():
            raise UserError(f"{args.data} does not exist; pass a folder of <class>/<image> or a CSV of path,label")
        if data.is_file() and data.suffix.lower() != ".csv":
            raise UserError(f"{args.data} is a file but not a .csv; pass a class folder or a CSV of path,label")
        for path in args.detector_files or ():
            require_file(path, "detector file", "pass the path of an existing .pth.tar (train one with train_detector)")
        check_output_folder(args.out or args.results_dir, "output folder", "pass --out a folder (or set RESULTS_DIR "
                            "to one)")
        if args.out is not None and data.is_dir() and _inside(Path(args.out), data):
            raise UserError(f"--out {args.out} lies inside the data folder {args.data}, so a rerun would list its "
                            "files as images; pass an --out outside the data")
        if args.report_top < 1:
            raise UserError(f"--report_top {args.report_top} must be at least 1")
        check_budget(args.budget)
        if args.storage not in STORAGE:
            raise UserError(f"unknown --storage {args.storage!r}; choose one of: {', '.join(STORAGE)}")
        net = (args.net_type or ("resnet" if args.backbone is None else "linear")).strip().lower()
        provisional = {"net_type": net, "depth": args.depth or NETWORKS.get(net, (0,))[0]}
        run = RunConfig.from_args(args, dataset="data", noise_ratio=None, num_valid=0, **provisional)
        fixed = PlanOverrides(net_type=args.net_type, depth=args.depth, epochs=args.num_epochs,
                              batch_size=args.batch_size, lr=args.lr, image_size=args.image_size, storage=args.storage)
        return cls(data=os.fspath(args.data), out=args.out, detector_files=args.detector_files,
                   allow_outside=args.allow_outside, report_top=args.report_top, budget=args.budget,
                   hflip=not args.no_hflip, fixed=fixed, run=run)

    @property
    def seed_rate(self) -> float:
        """The share of seeded flips (``--seed_rate``, a shared run flag: ``RunConfig`` checks it)."""
        return self.run.seed_rate

    def arguments(self) -> dict:
        """What find_issues.json records of the request; the data as an absolute path."""
        return {"data": os.path.abspath(self.data), "out": self.out, "detector_files": self.detector_files,
                "budget": self.budget, "hflip": self.hflip, "seed": self.run.seed, "seed_rate": self.seed_rate,
                "fixed": vars(self.fixed).copy()}


def _inside(path: Path, folder: Path) -> bool:
    resolved, root = path.resolve(), folder.resolve()
    return resolved == root or root in resolved.parents


def parse_issue_options(argv: list[str], prog: str = "run.sh find_issues", launcher: str = "./") -> IssueOptions:
    """The command line, parsed and checked."""
    return IssueOptions.from_args(issues_parser(prog, launcher).parse_args(argv))


def issue_options(data: str | os.PathLike, **settings) -> IssueOptions:
    """The Python API's request: the flags' names and defaults, each value of the type its flag parses
    to (``setting_value``), then checked as the command line is, by ``IssueOptions.from_args``."""
    parser = issues_parser(prog="mislabel.find_issues", launcher="")
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    unknown = sorted(set(settings) - set(actions))
    if unknown:
        raise UserError(f"unknown find_issues settings {unknown}; use the flags' names, e.g. budget=5, "
                        "net_type='lenet'")
    args = argparse.Namespace(**{name: action.default for name, action in actions.items()})
    for name, value in {"data": data, **settings}.items():
        setattr(args, name, setting_value(actions[name], value))
    return IssueOptions.from_args(args)


def setting_value(action: argparse.Action, value: object) -> object:
    """``value`` as the command line would have parsed it for ``action``, or a UserError naming the
    setting. Python passes values, not text, so argparse's ``type=`` never runs on them: without this,
    ``"5"`` minutes or ``seed=1.5`` would fail deep inside, and a path string would be read letter by
    letter as a list. The words match the command line's ("is not an integer", "is not a number")."""
    name = action.dest
    if value is None and action.default is None and not action.required:  # None: not given (chosen, or off)
        return None
    if action.nargs == 0:  # a switch
        kind, fix, ok = "True or False", f"{name}=True", isinstance(value, bool)
    elif action.nargs in ("+", "*"):
        kind, fix = "a list of paths", f"{name}=[{value!r}]" if _is_text(value) else f"{name}=['a.pth.tar']"
        ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_text(item) for item in value)
        value = [os.fspath(item) for item in value] if ok else value
    elif action.type is integer:
        kind, fix = "an integer", "a whole number"
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
    elif action.type is number:
        kind, fix = "a number", "an int or a float"
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        kind, fix, ok = "a path or name", "a str or pathlib.Path", _is_text(value)
        value = os.fspath(value) if ok else value
    if not ok:
        raise UserError(f"{name}={value!r} is not {kind} (got {type(value).__name__}); pass {fix}")
    return value


def _is_text(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, os.PathLike) and isinstance(os.fspath(value), str))
