"""mislabel.reports.demo_table: the demo's closing table from its run folders, and its paired test."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mislabel.core.user_input import UserError
from mislabel.reports.demo_table import DemoFolders, demo_table, paired_p_value

NUM_TEST = 40
ESTIMATE = {"estimate": 9, "low": 7, "high": 11, "method": "confident-joint estimate on training dynamics",
            "level": 0.9, "likely": [3, 14]}


def write_run(folder: Path, correct: np.ndarray, **summary) -> None:
    """A finished run: summary.json and results_test.csv (test indices written in reverse order)."""
    folder.mkdir(parents=True)
    lines = ["index,Loss,Prediction,Confidence,Label"]
    lines += [f"{i},0.1,{1 if correct[i] else 2},0.9,1" for i in reversed(range(len(correct)))]
    (folder / "results_test.csv").write_text("\n".join(lines) + "\n")
    (folder / "summary.json").write_text(json.dumps({"test_accuracy": float(correct.mean()), **summary}))


def demo_runs(root: Path, oracle_gained: int) -> DemoFolders:
    """The noisy model wrong on the first 8 test images; removal and the recommended action trade one
    image each way; the oracle gets ``oracle_gained`` of the 8 right and loses none."""
    noisy = np.arange(NUM_TEST) >= 8
    traded = noisy.copy()
    traded[[0, 8]] = [True, False]
    oracle = noisy.copy()
    oracle[:oracle_gained] = True
    folders = DemoFolders(*(root / name for name in ("noisy", "remove", "recommended", "oracle")))
    write_run(folders.noisy, noisy, num_flipped=12)
    write_run(folders.remove, traded, num_ranked=100, num_suspects=20, num_removed=20, action="remove",
              detection={"auc": 0.99, "map": 0.95}, flipped_share_of_removed=0.55)
    write_run(folders.recommended, traded, num_ranked=100, num_suspects=9, action="downweight",
              estimated_wrong_labels=ESTIMATE)
    write_run(folders.oracle, oracle, num_ranked=100, num_removed=12, action="remove")
    return folders


def test_paired_p_value_counts_only_the_images_the_models_disagree_on() -> None:
    same = np.array([True, False, True])
    assert paired_p_value(same, same) == 1.0
    before, after = np.zeros(10, dtype=bool), np.ones(10, dtype=bool)
    assert paired_p_value(before, after) == pytest.approx(2 / 2 ** 10)   # 10 gained, none lost
    assert paired_p_value(after, before) == paired_p_value(before, after)


def test_table_rows_and_a_verdict_within_chance(tmp_path) -> None:
    table = demo_table(demo_runs(tmp_path, oracle_gained=3))
    for row in ("| wrong labels, true (injected) | 12 of 100 |",
                "| wrong labels, estimated | ~9 wrong labels (likely 3-14",
                "| detection AUC / mAP | 0.9900 / 0.9500 |",
                "| flipped among the top 20% | 55.00% |",
                "| test accuracy, trained on the noisy labels | 80.00% |",
                "| test accuracy, remove the top 20% (the seed's phase 3) | 80.00% (+0 images: 1 newly right, "
                "1 newly wrong; p = 1.000) |",
                "| test accuracy, downweight the ~9 estimated wrong labels (recommended) | 80.00% (+0 images",
                "| test accuracy, oracle: without exactly the 12 flipped labels | 87.50% (+3 images: 3 newly right, "
                "0 newly wrong; p = 0.250) |",
                "| test set | 40 images: 1 image = 2.50 points |"):
        assert row in table, row
    assert table.splitlines()[-1].startswith("None of the retrainings differs from the noisy model by more than "
                                             "chance on these 40 test images (largest difference 3 images")


def test_verdict_names_a_difference_beyond_chance(tmp_path) -> None:
    verdict = demo_table(demo_runs(tmp_path, oracle_gained=8)).splitlines()[-1]
    assert verdict.startswith("Beyond chance on these 40 test images (p < 0.05): oracle: +8 images (p = 0.008).")
    assert verdict.endswith("Within chance, so this test set cannot tell them from the noisy model: remove, "
                            "downweight.")


def test_an_unfinished_run_is_refused_in_one_line(tmp_path) -> None:
    folders = demo_runs(tmp_path, oracle_gained=3)
    (folders.oracle / "summary.json").unlink()
    with pytest.raises(UserError, match="holds no finished run"):
        demo_table(folders)


def test_a_seeded_run_shows_the_measured_recall_beside_the_true_one(tmp_path) -> None:
    """The unseen run is seeded: the recommended action's summary holds rank's seeded record."""
    folders = demo_runs(tmp_path / "plain", oracle_gained=3)
    assert "recall at the flagged line" not in demo_table(folders)
    folders = demo_runs(tmp_path / "seeded", oracle_gained=3)
    noisy = json.loads((folders.noisy / "summary.json").read_text())
    (folders.noisy / "summary.json").write_text(json.dumps({**noisy, "num_seeded": 3}))
    summary = json.loads((folders.recommended / "summary.json").read_text())
    check = {"recall": 2 / 3, "found": {"random": 1, "ambiguous": 1}, "seeds": {"random": 2, "ambiguous": 1},
             "chosen_score": "detector", "flipped_recall": 0.75}
    (folders.recommended / "summary.json").write_text(json.dumps({**summary, "seeded_check": check}))
    table = demo_table(folders)
    for row in ("| wrong labels, true (injected) | 12 of 100 (after 3 were changed on purpose) |",
                "| recall at the flagged line, measured on seeded flips | of the 3 labels changed on purpose, 2 (67%) "
                "reach the flagged line (random 1/2, ambiguous 1/1) |",
                "| recall at the flagged line, true (the injected flips) | 75% of the real flipped labels reach the "
                "same line |"):
        assert row in table, row
