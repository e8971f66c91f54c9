"""Run summaries (summary.json) and the tables printed at the end of a run."""
from __future__ import annotations

from pathlib import Path

from mislabel.core.dynamics import SUMMARY_FILE
from mislabel.core.files import read_record, write_record

__all__ = ["SUMMARY_FILE", "write_summary", "read_summary", "format_metric", "denoise_table"]


def write_summary(folder: str | Path, summary: dict) -> None:
    """summary.json is written last: its presence marks a finished run."""
    write_record(Path(folder) / SUMMARY_FILE, summary, sort_keys=True)


def read_summary(folder: str | Path) -> dict | None:
    """The finished run's summary; None while the run is unfinished."""
    return read_record(Path(folder) / SUMMARY_FILE, f"delete it and pass --overwrite to redo the run in {folder}")


def format_metric(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}%" if percent else f"{value:.4f}"


AFTER = {"remove": "removal", "relabel": "relabelling", "hybrid": "relabelling and removal",
         "downweight": "down-weighting"}


def denoise_table(summary: dict) -> str:
    """Markdown table: detection quality, what was done to the suspects, then test accuracy before and after."""
    detection = summary.get("detection") or {}
    ranked, suspects = summary["num_ranked"], summary.get("num_suspects", summary["num_removed"])
    action = summary.get("action", "remove")
    done = {"remove": f"removed {summary['num_removed']}",
            "downweight": f"down-weighted {summary.get('num_downweighted', 0)}",
            "relabel": f"relabelled {summary.get('num_relabelled', 0)}",
            "hybrid": f"relabelled {summary.get('num_relabelled', 0)}, removed {summary['num_removed']}"}[action]
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| samples ranked | {ranked} |",
        f"| suspects (most suspicious) | {suspects} ({100 * suspects / max(ranked, 1):.1f}%"
        f"{', remove_ratio auto' if summary['remove_ratio'] == 'auto' else ''}): {done} |",
        f"| detection AUC | {format_metric(detection.get('auc'))} |",
        f"| detection mAP | {format_metric(detection.get('map'))} |",
        f"| flipped among suspects | {format_metric(summary.get('flipped_share_of_removed'), percent=True)} |",
        "| test accuracy, trained on noisy labels | "
        f"{format_metric(summary.get('noisy_test_accuracy'), percent=True)} |",
        f"| test accuracy, after {AFTER[action]} | {format_metric(summary['test_accuracy'], percent=True)} |",
    ]
    if not detection:
        lines.append("| note | AUC/mAP need known flips (synthetic noise); this run has none |")
    return "\n".join(lines)
