"""report.html for find_issues: one self-contained page a practitioner can open, mail or archive.

Everything is inline (thumbnails, data map and histogram as base64 PNG data URIs), so the page
needs no network and no files beside it. Every string that comes from the user's data (file
names, class names, the error texts of skipped files) goes through ``html.escape``, and a
Content-Security-Policy forbids scripts outright: a file named ``<script>...</script>.png`` is
shown as text and cannot run.
"""
from __future__ import annotations

import base64
import html
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mislabel.data.decode import open_rgb
from mislabel.core.progress import bar
from mislabel.core.user_input import UserError
from mislabel.core.files import atomic_write

__all__ = ["write_report", "THUMBNAIL_SIDE"]

THUMBNAIL_SIDE = 112   # pixels: large enough to judge a label, small enough for hundreds per page
_SKIPPED_SHOWN = 200    # skipped files listed on the page; skipped.txt has them all
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table.settings td { padding: 2px 10px; vertical-align: top; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
.card { width: 150px; border: 1px solid #ccc; border-radius: 4px; padding: 6px; font-size: 12px; }
.card img { width: 112px; height: 112px; object-fit: contain; image-rendering: pixelated; display: block;
            margin: auto; background: #eee; }
.path { color: #666; word-break: break-all; }
.flag { color: #b00; font-weight: bold; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumbnail(path: str) -> bytes | None:
    """A PNG thumbnail of one image, or None when it can no longer be read."""
    try:
        image = open_rgb(path)
    except UserError:
        return None
    scale = THUMBNAIL_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _histogram(scores: np.ndarray, threshold: float, flagged: int) -> bytes:
    """Scores of all samples with the flagging threshold: how separated the suspects are."""
    fig = Figure(figsize=(7, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.hist(scores, bins=50, color="#4878a8")
    ax.axvline(threshold, color="#b00", ls="--", lw=1, label=f"threshold ({flagged} flagged)")
    ax.set(xlabel="score (higher = more likely mislabeled)", ylabel="samples", yscale="log")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _card(row: pd.Series, png: bytes | None) -> str:
    esc = html.escape
    image = (f'<img src="{_data_uri(png)}" alt="{esc(str(row["path"]))}">' if png is not None
             else "<div>(unreadable now)</div>")
    flag = ' <span class="flag">flagged</span>' if row["flagged"] else ""
    return (f'<div class="card">{image}<div>#{int(row["rank"])} score {row["score"]:.3f}{flag}</div>'
            f'<div>given <b>{esc(str(row["given_label"]))}</b></div>'
            f'<div>predicted <b>{esc(str(row["predicted_label"]))}</b></div>'
            f'<div class="path">{esc(str(row["path"]))}</div></div>')


def write_report(path: Path, *, title: str, summary: str, advice: str, settings: dict[str, str],
                 table: pd.DataFrame, root: Path, top: int, datamap: bytes, threshold: float,
                 skipped: list[str]) -> Path:
    """Write the page: summary, what to do (``advice``), settings, the ``top`` suspects as cards, data
    map, histogram, skipped files. ``table`` is suspects.csv's frame (paths relative to ``root``)."""
    esc = html.escape
    head = table.head(top)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        thumbnails = list(bar(pool.map(_thumbnail, [os.path.join(root, p) for p in head["path"]]),
                               total=len(head), desc="thumbnails", unit="img"))
    scores = table["score"].to_numpy(dtype=np.float64)
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in settings.items())
    cards = "".join(_card(row, png) for (_, row), png in zip(head.iterrows(), thumbnails))
    listed = "".join(f"<li>{esc(p)}</li>" for p in skipped[:_SKIPPED_SHOWN])
    more = len(skipped) - _SKIPPED_SHOWN
    skipped_html = ("<p>None.</p>" if not skipped else f"<ul>{listed}</ul>"
                    + (f"<p>... and {more} more (skipped.txt lists all).</p>" if more > 0 else ""))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<title>{esc(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p>{esc(summary)}</p>
<h2>What to do</h2>
<p>{esc(advice)}</p>
<h2>Settings</h2>
<table class="settings">{rows}</table>
<h2>Top {len(head)} suspects</h2>
<p>Most suspicious first. "predicted" is the class the model believed most on average over training;
suspects.csv holds every sample with every score.</p>
<div class="grid">{cards}</div>
<h2>Data map</h2>
<p>Each sample's mean probability of its given label (confidence) against how much it varied over
training (variability); wrong labels gather low, at low confidence.</p>
<img alt="data map" src="{_data_uri(datamap)}">
<h2>Score histogram</h2>
<img alt="score histogram" src="{_data_uri(_histogram(scores, threshold, int(table['flagged'].sum())))}">
<h2>Skipped (unreadable) images</h2>
{skipped_html}
</body>
</html>
"""
    atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8", errors="surrogateescape"))
    return path
