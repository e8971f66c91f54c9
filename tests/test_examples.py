"""The README's three examples run as a user runs them (from their own folder, the package importable)
and do what they say: train on seeded labels, write a run folder, and rank it with the seeds marked,
left out of the table's top rows and measured. own_loop.py also runs from an installed wheel in
tests/test_wheel.py; here all three run from the checkout, Lightning and Hugging Face included."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

from mislabel.core.dynamics import load_dynamics, load_metadata

# example file, the run folder it writes, the framework it needs (None: torch only)
EXAMPLES = {
    "own_loop.py": ("own_loop_run", None),
    "lightning_digits.py": ("lightning_run", "lightning"),
    "transformers_tiny.py": ("transformers_run", "transformers"),
}


def run_example(name: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_ranks_a_seeded_run(name, tmp_path):
    folder_name, framework = EXAMPLES[name]
    if framework is not None:
        pytest.importorskip(framework)
    done = run_example(name, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / folder_name
    dynamics = load_dynamics(folder)
    assert dynamics.num_samples == dynamics.assigned.size > 0

    printed = [line for line in done.stdout.splitlines() if line.startswith("{'detector': ")]
    assert len(printed) == 1, done.stdout[-2000:]
    aucs = ast.literal_eval(printed[0])   # each method's AUC against the noise (the seeds left out)
    assert {"detector", "aum", "confidence"} <= aucs.keys() and min(aucs.values()) > 0.75, aucs
    recall = re.search(r"seeds found among the flagged: (\d+)%", done.stdout)
    assert recall and 0 < int(recall.group(1)) <= 100, done.stdout[-2000:]
    wrong = float(load_metadata(folder)["label_flipped"].float().mean())
    assert 0.15 < wrong < 0.26, wrong   # 20% replaced at random (a tenth back to the true class) + 3% seeded
