"""Markdown for bench/detection.py: transfer tables, the target check, and the denoising table.

Kept apart from the runs so the tables can be re-rendered from a results.json without retraining:
    python bench/detection_report.py /tmp/mislabel_bench_detection/full/results.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from util import atomic_write  # noqa: E402

__all__ = ["render_sections", "replace_section", "variant_ranking"]

NICE = {"digits": "digits", "fashion_mnist": "Fashion-MNIST"}


def _cell(values: pd.Series) -> str:
    """mean ± std over seeds (population std; a single seed prints its value alone)."""
    values = values.dropna()
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=0):.3f}"


def _setting(noise: str, ratio: str) -> str:
    return f"{noise} {ratio}"


def _method_label(method: str, source: str | None, target: str) -> str:
    if source is None or source != source:  # NaN from pandas for baselines
        return method
    kind = "in-domain" if source == target else "transfer"
    return f"lstm {method} ← {NICE[source]} ({kind})"


def _detection_table(frame: pd.DataFrame, target: str, metric: str, settings: list[tuple[str, str]]) -> list[str]:
    rows = frame[frame.dataset == target].copy()
    rows["label"] = [_method_label(m, s, target) for m, s in zip(rows.method, rows.source)]
    order = list(dict.fromkeys(rows.sort_values(["source"], na_position="last", kind="stable").label))
    header = "| method | " + " | ".join(_setting(*s) for s in settings) + " |"
    lines = [header, "|---" * (len(settings) + 1) + "|"]
    for label in order:
        cells = [_cell(rows[(rows.label == label) & (rows.noise == n) & (rows.ratio == r)][metric]) for n, r in settings]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def variant_ranking(frame: pd.DataFrame, variants: dict) -> list[tuple[str, float, float]]:
    """(variant, mean transfer AUC, mean transfer mAP) over every cross-dataset cell, best AUC first."""
    transfer = frame[frame.source.notna() & (frame.source != frame.dataset)]
    ranking = [(name, transfer[transfer.method == name].auc.mean(), transfer[transfer.method == name]["map"].mean())
               for name in variants]
    return sorted(ranking, key=lambda item: -item[1])


def _target_check(frame: pd.DataFrame, variant: str, settings: list[tuple[str, str]]) -> list[str]:
    """Does ``variant``, trained on the other dataset, beat every baseline in mean AUC and mAP?"""
    lines = []
    baselines = frame[frame.source.isna()]
    for target in dict.fromkeys(frame.dataset):
        for noise, ratio in settings:
            here = frame[(frame.dataset == target) & (frame.noise == noise) & (frame.ratio == ratio)]
            ours = here[(here.method == variant) & here.source.notna() & (here.source != target)]
            if ours.empty:
                continue
            base = baselines[(baselines.dataset == target) & (baselines.noise == noise) & (baselines.ratio == ratio)]
            means = base.groupby("method")[["auc", "map"]].mean()
            lost = [f"{metric.upper() if metric == 'auc' else 'mAP'} to {name} ({means.loc[name, metric]:.3f} vs "
                    f"{ours[metric].mean():.3f})" for metric in ("auc", "map") for name in means.index
                    if means.loc[name, metric] >= ours[metric].mean()]
            verdict = "beats every baseline in AUC and mAP" if not lost else "does NOT beat: " + "; ".join(lost)
            lines.append(f"- {NICE[target]}, {_setting(noise, ratio)}: {verdict}")
    return lines


def _denoise_table(frame: pd.DataFrame, target: str, settings: list[tuple[str, str]]) -> list[str]:
    methods = ["noisy", "detector", "aum", "random", "oracle"]
    lines = ["| setting | " + " | ".join(methods) + " | gap closed: detector | aum | random |",
             "|---" * (len(methods) + 4) + "|"]
    rows = frame[frame.dataset == target]
    for noise, ratio in settings:
        here = rows[(rows.noise == noise) & (rows.ratio == ratio)]
        acc = {m: here[here.method == m].test_accuracy for m in methods}
        noisy, oracle = acc["noisy"].mean(), acc["oracle"].mean()
        gap = oracle - noisy

        def closed(method: str) -> str:
            if not np.isfinite(gap) or gap <= 0:
                return "n/a (oracle ≤ noisy)"
            return f"{(acc[method].mean() - noisy) / gap:+.2f}"

        cells = [_cell(acc[m] * 100) for m in methods] + [closed(m) for m in ("detector", "aum", "random")]
        lines.append(f"| {_setting(noise, ratio)} | " + " | ".join(cells) + " |")
    return lines


def render_sections(results: dict, plan: dict, variants: dict, denoise_variant: str, source_seed: int) -> str:
    detection = pd.DataFrame(results["detection"])
    detection["source"] = detection["source"].where(detection["source"].notna(), None)
    denoise = pd.DataFrame(results["denoise"])
    settings = [tuple(s) for s in plan["settings"]]
    title = "full grid" if results["plan"] == "full" else "quick variant"
    data = plan["data"]
    lines = [f"## Detection on real data: transfer matrix and denoising, {title} (issue 6)", "",
             f"Machine: {results['machine']}.  ",
             f"Command: `{results['command']}` (OMP_NUM_THREADS=1 per worker); wall time "
             f"{results['seconds'] / 60:.1f} min (" + ", ".join(f"{k} {v / 60:.1f} min" for k, v in results["stages"].items())
             + ")" + (f"; {results['reused']} of {results['jobs']} jobs were reused from an earlier run's cache, so this "
                      "time is not the grid's cost" if results.get("reused") else "") + ".", "",
             "Setup. " + "; ".join(
                 f"{NICE[name]}: {d.net_type}, {d.epochs} epochs, batch {d.batch_size}, lr {d.lr}"
                 + (f", a fixed subset of {d.train_subset:,} of the 60,000 training images (numpy default_rng(0) "
                    "permutation; 10% of it held out for early stopping), full 10,000-image test set"
                    if d.train_subset else ", 1,437 train / 360 test") for name, d in data.items())
             + f". Noise settings {', '.join(_setting(*s) for s in settings)}; seeds {', '.join(map(str, plan['seeds']))}; "
             "dynamics recorded in the training pass (`--td_mode train`); mean ± std over seeds (population std). "
             f"Detectors are trained ({plan['detector_epochs']} epochs, hidden 64, 2 layers) on separate runs of each dataset "
             f"(seed {source_seed}, noise as in the table). Baselines: detector_model/baselines.py"
             + (f"; cleanlab with {4}-fold cross-validated probabilities on {', '.join(NICE[c] for c in plan['cleanlab'])} only "
                "(each run costs 4 extra trainings; on Fashion-MNIST that would more than double the grid)"
                if plan["cleanlab"] else "; cleanlab left out (4 extra trainings per run do not fit the time budget)") + ".", "",
             "| variant | features | readout | bidirectional | seq_len | trained on |", "|---|---|---|---|---|---|"]
    for name, spec in variants.items():
        lines.append(f"| {name} | {spec['features']} | {spec['readout']} | {'yes' if spec['bidirectional'] else 'no'} | "
                     f"{spec['seq_len'] or 'as recorded'} | {', '.join(_setting(*run) for run in spec['sources'])} |")
    for metric, header in (("auc", "AUC"), ("map", "mAP")):
        for target in data:
            lines += ["", f"### {header} on {NICE[target]} (rows: method; ← names the dataset a detector was trained on)", ""]
            lines += _detection_table(detection, target, metric, settings)
    lines += ["", "### Variants ranked by mean transfer AUC (every cross-dataset cell)", "",
              "| variant | transfer AUC | transfer mAP |", "|---|---|---|"]
    lines += [f"| {name} | {auc:.3f} | {ap:.3f} |" for name, auc, ap in variant_ranking(detection, variants)]
    lines += ["", f"### Target check: `{denoise_variant}` trained on the other dataset vs every baseline (mean over seeds)", ""]
    lines += _target_check(detection, denoise_variant, settings)
    lines += ["", "### Denoising: test accuracy % after removing round(noise ratio x N) samples, and the share of the "
              "noisy → oracle gap each removal closes (ratio of means)", "",
              f"detector = `{denoise_variant}` trained on the other dataset; aum = lowest AUM first; random = a uniform "
              "draw; oracle = exactly the flipped samples (clean labels only); noisy = phase 1's model. Every retraining "
              "uses the phase-1 recipe and early-stops on the noisy validation split."]
    for target in data:
        lines += ["", f"{NICE[target]}:", ""] + _denoise_table(denoise, target, settings)
    return "\n".join(lines) + "\n"


def replace_section(path: Path, key: str, text: str) -> None:
    """Put ``text`` between this script's markers for ``key``: replaced in place if there, else appended.

    Everything outside the markers (other engineers' sections) is left byte for byte.
    """
    begin, end = f"<!-- BEGIN bench/detection.py {key} -->", f"<!-- END bench/detection.py {key} -->"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}{end}\n"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        updated = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        updated = current.rstrip("\n") + "\n\n" + block
    atomic_write(path, lambda tmp: Path(tmp).write_text(updated))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    from detection import DENOISE_VARIANT, PLANS, SOURCE_SEED, VARIANTS

    loaded = json.loads(Path(sys.argv[1]).read_text())
    print(render_sections(loaded, PLANS[loaded["plan"]], VARIANTS, DENOISE_VARIANT, SOURCE_SEED))
