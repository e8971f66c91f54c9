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


def denoise_table(summary: dict) -> str:
    """Markdown table: detection quality, then test accuracy before and after removal."""
    detection = summary.get("detection") or {}
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| samples ranked | {summary['num_ranked']} |",
        f"| removed (most suspicious) | {summary['num_removed']} "
        f"({100 * summary['num_removed'] / max(summary['num_ranked'], 1):.1f}%"
        f"{', remove_ratio auto' if summary['remove_ratio'] == 'auto' else ''}) |",
        f"| detection AUC | {format_metric(detection.get('auc'))} |",
        f"| detection mAP | {format_metric(detection.get('map'))} |",
        f"| flipped among removed | {format_metric(summary.get('flipped_share_of_removed'), percent=True)} |",
        f"| test accuracy, trained on noisy labels | {format_metric(summary.get('noisy_test_accuracy'), percent=True)} |",
        f"| test accuracy, after removal | {format_metric(summary['test_accuracy'], percent=True)} |",
    ]
    if not detection:
        lines.append("| note | AUC/mAP need known flips (synthetic noise); this run has none |")
    return "\n".join(lines)
