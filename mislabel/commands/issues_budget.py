"""find_issues under ``--budget``: time the candidate recipes on this machine and keep the best that fits.

The candidates are ``mislabel.training.plan.candidate_plans`` (the ladder, then the full recipe); each
distinct network, side and batch is timed once (``mislabel.training.budget.time_step``). The choice is stored
in ``budget_plan.json`` in the output folder with what it depended on (data size, budget, flags),
so rerunning an interrupted command continues the same plan instead of timing again and maybe
choosing another.

Under torchrun rank 0 alone times (one process's step at the per-process batch, as each rank
trains) and writes the record; every rank gets its choice, so all of them train the same plan.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from mislabel.core import distributed
from mislabel.training.budget import Clock, Estimate, after_training, choose, minutes, time_step
from mislabel.training.plan import Plan, candidate_plans
from mislabel.core.files import atomic_write

__all__ = ["PLAN_FILE", "BudgetChoice", "plan_within_budget"]

PLAN_FILE = "budget_plan.json"
FLAGS = ("net_type", "depth", "num_epochs", "batch_size", "lr", "image_size", "storage", "widen_factor", "device",
         "seed", "budget")


class BudgetChoice:
    """The chosen plan, its estimate, the lines that explain the choice and, for a new choice, the
    record to store (``save``, once the command is sure to run: a refused command leaves no trace)."""

    def __init__(self, plan: Plan, estimate: Estimate, lines: list[str], record: str | None = None) -> None:
        self.plan, self.estimate, self.lines, self.record = plan, estimate, lines, record

    def save(self, out: Path) -> None:
        if self.record is not None and distributed.is_main():
            out.mkdir(parents=True, exist_ok=True)
            atomic_write(out / PLAN_FILE, lambda tmp: Path(tmp).write_text(self.record + "\n"))


def _predictor(num_train: int, num_test: int, num_classes: int, scan_per_image: float, args: argparse.Namespace):
    """A function Plan -> Estimate that times each distinct (network, side, batch) once. Under
    torchrun a step is one process's share of the batch (they run side by side); decoding needs no
    such scaling, since the scan's per-image seconds were measured with every rank decoding."""
    steps: dict[tuple, float] = {}
    world = distributed.world_size()

    def predict(plan: Plan) -> Estimate:
        per_rank = max(2, plan.batch_size // world)
        key = (plan.net_type, plan.depth, plan.image_size, per_rank)
        if key not in steps:
            steps[key] = time_step(plan.net_type, plan.depth, num_classes, 3, plan.image_size, per_rank,
                                   args.device, args.widen_factor)
        step = steps[key]
        batches = max(1, -(-num_train // (per_rank * world)))
        decode = scan_per_image * num_train
        per_epoch = batches * step if plan.in_memory else max(batches * step, decode)
        load = scan_per_image * (num_train + num_test) if plan.in_memory else 0.0
        return Estimate(load, per_epoch, plan.epochs, after_training(num_train, num_test, plan.batch_size, step))

    return predict


def plan_within_budget(full: Plan, num_train: int, num_test: int, num_classes: int, scan_per_image: float,
                       args: argparse.Namespace, first_depth: dict[str, int], clock: Clock,
                       out: Path) -> BudgetChoice:
    """The plan to run: with ``--budget 0`` the full recipe (flags applied), else the best candidate
    predicted to end the whole command within the budget. Either way its prediction is printed.
    Decided on rank 0 and shared with every rank under torchrun."""
    return distributed.on_main(lambda: _plan(full, num_train, num_test, num_classes, scan_per_image, args,
                                             first_depth, clock, out))


def _plan(full: Plan, num_train: int, num_test: int, num_classes: int, scan_per_image: float,
          args: argparse.Namespace, first_depth: dict[str, int], clock: Clock, out: Path) -> BudgetChoice:
    world = distributed.world_size()
    key = {"num_train": num_train, "num_test": num_test, "full": asdict(full), **{f: getattr(args, f) for f in FLAGS},
           **({"processes": world} if world > 1 else {})}  # one process keeps the records of earlier versions
    stored = _stored(out / PLAN_FILE)
    if stored is not None and stored.get("key") == key and not args.overwrite:
        plan, estimate = Plan(**stored["plan"]), Estimate(**stored["estimate"])
        return BudgetChoice(plan, estimate, [f"plan from the first run of this command ({out / PLAN_FILE}); "
                                             f"predicted {minutes(estimate.total)} from the scan on"])
    predict = _predictor(num_train, num_test, num_classes, scan_per_image, args)
    candidates = candidate_plans(full, num_train, args, first_depth)
    if args.budget == 0:
        candidates = candidates[-1:]
    left = args.budget * 60 - clock.elapsed()
    index, estimates = choose(candidates, predict, left if args.budget else float("inf"))
    plan, estimate = candidates[index], estimates[index]
    lines = []
    if args.budget:
        full_estimate = estimates[-1]
        lines.append(f"budget {args.budget:g} min ({minutes(clock.elapsed())} spent on the scan so far): "
                     f"{len(candidates)} candidate recipes timed on this machine"
                     + ("" if index == len(candidates) - 1 else
                        f"; the full recipe ({candidates[-1].describe()}) would take ~{minutes(full_estimate.total)}"
                        " (--budget 0 runs it)"))
        if estimate.total > left:
            lines.append(f"warning: even the cheapest recipe is predicted to take {minutes(estimate.total)}, over the "
                         f"{minutes(max(left, 0))} left of the budget; raise --budget or pass --num_epochs")
    lines.append(f"predicted: {minutes(clock.elapsed() + estimate.total)} in all ({estimate.describe()})")
    record = json.dumps({"key": key, "plan": asdict(plan), "estimate": asdict(estimate)}, indent=2)
    return BudgetChoice(plan, estimate, lines, record)


def _stored(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None  # a damaged record only costs timing again
