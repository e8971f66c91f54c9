"""Markdown for bench/detection.py: transfer tables, the target check, and the denoising table.

Kept apart from the runs, and taking everything it prints as arguments (it imports nothing from
bench/detection.py), so the tables can be re-rendered from a results.json without retraining:
    python bench/detection.py --render /tmp/mislabel_bench_detection/full/results.json
"""
from __future__ import annotations

import pandas as pd

__all__ = ["grid_means", "render_sections"]

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


def _method_label(method: str, source: str | None) -> str:
    if source is None or source != source or method in ("control",):  # NaN from pandas for baselines
        return f"control (learned, ← {NICE[source]})" if method == "control" else method
    return f"lstm {method} ← {NICE[source]}"


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["label"] = [_method_label(m, s) for m, s in zip(frame.method, frame.source)]
    return frame


def _detection_table(frame: pd.DataFrame, target: str, metric: str, settings: list[tuple[str, str]]) -> list[str]:
    rows = frame[frame.dataset == target]
    header = "| method | " + " | ".join(_setting(*s) for s in settings) + " |"
    lines = [header, "|---" * (len(settings) + 1) + "|"]
    for method in dict.fromkeys(rows.method):
        here = rows[rows.method == method]
        cells = [_cell(here[(here.noise == n) & (here.ratio == r)][metric]) for n, r in settings]
        lines.append(f"| {here.label.iloc[0]} | " + " | ".join(cells) + " |")
    return lines


def grid_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean AUC and mAP of every method over every (dataset, setting, seed) cell it was scored on."""
    return frame.groupby("method", sort=False)[["auc", "map"]].mean().sort_values("auc", ascending=False)


def _target_checks(frame: pd.DataFrame, default: str, settings: list[tuple[str, str]],
                   hard: list[tuple[str, str]]) -> list[str]:
    """The three detection targets of issue 14, with every miss named and sized."""
    means = grid_means(frame[frame.method != "cleanlab"])  # cleanlab runs on digits only
    lines = [f"1. Highest grid mean (cleanlab aside, as it covers digits only): AUC leader `{means.auc.idxmax()}` "
             f"({means.auc.max():.4f}; `{default}` {means.auc[default]:.4f}), mAP leader `{means['map'].idxmax()}` "
             f"({means['map'].max():.4f}; `{default}` {means['map'][default]:.4f}): "
             + ("met" if means.auc.idxmax() == default and means["map"].idxmax() == default else "NOT met") + "."]
    cell_means = frame.groupby(["dataset", "noise", "ratio", "method"])[["auc", "map"]].mean()
    misses, hard_misses = [], []
    for target in dict.fromkeys(frame.dataset):
        for noise, ratio in settings:
            cell = cell_means.loc[(target, noise, ratio)]
            ours, others = cell.loc[default], cell.drop(default)
            best = others.auc.idxmax()
            if others.auc.max() - ours.auc > 0.005:
                misses.append(f"{NICE[target]} {noise} {ratio}: {ours.auc:.3f} vs `{best}` {others.auc.max():.3f} "
                              f"(short by {others.auc.max() - ours.auc:.3f})")
            if (noise, ratio) in hard:
                for metric in ("auc", "map"):
                    if others[metric].max() >= ours[metric]:
                        name = metric.upper() if metric == "auc" else "mAP"
                        hard_misses.append(f"{NICE[target]} {noise} {ratio} {name}: {ours[metric]:.3f} vs "
                                           f"`{others[metric].idxmax()}` {others[metric].max():.3f}")
    lines.append("2. AUC within 0.005 of the best other method in every cell: "
                 + ("met." if not misses else "NOT met in " + "; ".join(misses) + "."))
    lines.append("3. Beats every other method in AUC and mAP on the hard cells "
                 f"({', '.join(_setting(*h) for h in hard)}): "
                 + ("met." if not hard_misses else "NOT met: " + "; ".join(hard_misses) + "."))
    return lines


def _recipe_section(frame: pd.DataFrame, plan: dict, default: str, settings: list[tuple[str, str]],
                    hard: list[tuple[str, str]]) -> list[str]:
    """The same tables and targets on the runs trained with find_issues' own recipes."""
    recipes = "; ".join(f"{NICE[name]}: {d.net_type}{d.depth}, {d.epochs} epochs, batch {d.batch_size}, lr {d.lr}"
                        for name, d in plan["recipes"].items())
    lines = ["", "### The same grid on find_issues' recipes", "",
             f"Phase 1 with the recipes find_issues' budget ladder picks for these sets ({recipes}; see "
             "FIND_ISSUES_RECIPES in bench/detection.py), the same noise settings and seeds, scored by the same "
             "detectors and control (trained on the other dataset's corpus)."]
    for metric, header in (("auc", "AUC"), ("map", "mAP")):
        for target in dict.fromkeys(frame.dataset):
            lines += ["", f"#### {header} on {NICE[target]}, find_issues' recipe", ""]
            lines += _detection_table(frame, target, metric, settings)
    means = grid_means(frame)
    lines += ["", "#### Every method's mean over these runs", "", "| method | mean AUC | mean mAP |", "|---|---|---|"]
    lines += [f"| {method} | {row.auc:.4f} | {row['map']:.4f} |" for method, row in means.iterrows()]
    lines += ["", f"#### Target check for the default `{default}` on find_issues' recipes", ""]
    return lines + _target_checks(frame, default, settings, hard)


def render_sections(results: dict, plan: dict, variants: dict, default: str, source_seed: int,
                    hard: list[tuple[str, str]] | None = None) -> str:
    scored = _labelled(pd.DataFrame(results["detection"]))
    scored["rows"] = scored["rows"].fillna("grid") if "rows" in scored else "grid"
    detection, recipe_rows = scored[scored.rows == "grid"], scored[scored.rows == "find_issues"]
    settings = [tuple(s) for s in plan["settings"]]
    hard = [tuple(h) for h in (hard or []) if tuple(h) in settings]
    title = "full grid" if results["plan"] == "full" else "quick variant"
    data = plan["data"]
    lines = [f"## Detection on real data: transfer and learned control, {title} (issues 14 and 24)", "",
             f"Machine: {results['machine']}.  ",
             f"Command: `{results['command']}` (OMP_NUM_THREADS=1 per worker); wall time "
             f"{results['seconds'] / 60:.1f} min ("
             + ", ".join(f"{k} {v / 60:.1f} min" for k, v in results["stages"].items())
             + ")" + (f"; {results['reused']} of {results['jobs']} jobs were reused from an earlier run's cache, so "
                      "this time is not the grid's cost" if results.get("reused") else "") + ".", "",
             "Setup. " + "; ".join(
                 f"{NICE[name]}: {d.net_type}, {d.epochs} epochs, batch {d.batch_size}, lr {d.lr}"
                 + (f", a fixed subset of {d.train_subset:,} of the 60,000 training images (numpy default_rng(0) "
                    "permutation; 10% of it held out for early stopping), full 10,000-image test set"
                    if d.train_subset else ", 1,437 train / 360 test") for name, d in data.items())
             + f". Noise settings {', '.join(_setting(*s) for s in settings)}; "
             f"seeds {', '.join(map(str, plan['seeds']))}; "
             "dynamics recorded in the training pass; mean ± std over seeds (population std). Every detector and the "
             f"learned control is trained on source runs (seed {source_seed}) of the *other* dataset (← names it): "
             "no row of a dataset's table saw that dataset. `corpus` = every source run of bench/detection.py's "
             "CORPUS for that dataset (all five noise types at rates 0.05-0.5, several networks, 5-60 epochs, "
             "weak and strong models, one run recorded in eval mode); `control` = logistic regression on the "
             "within-run percentiles of aum, confidence, variability, correctness, forgetting, loss and last_prob, "
             f"fitted on exactly the `{default}` detector's source runs. Baselines: mislabel/scoring/baselines.py"
             + ("; cleanlab with 4-fold cross-validated probabilities on "
                f"{', '.join(NICE[c] for c in plan['cleanlab'])} only (each run costs 4 extra trainings)"
                if plan["cleanlab"] else "; cleanlab left out") + ".", "",
             "| variant | features | readout | bidirectional | seq_len | LSTM | gate | trained on |",
             "|---|---|---|---|---|---|---|---|"]
    for name, spec in variants.items():
        sources = (spec["sources"] if spec["sources"] == "corpus"
                   else ", ".join(_setting(r.noise, r.ratio) for r in spec["sources"]))
        gate = f"LSTM vs weighted AUM, {spec['gate_folds']}-fold" if spec.get("gate_folds") else "no"
        lines.append(f"| {name}{' (default)' if name == default else ''} | {spec['features']} | {spec['readout']} | "
                     f"{'yes' if spec['bidirectional'] else 'no'} | {spec['seq_len'] or 'as recorded'} | "
                     f"{spec['num_layers']}x{spec['hidden_size']}, {spec['epochs']} epochs | {gate} | {sources} |")
    for metric, header in (("auc", "AUC"), ("map", "mAP")):
        for target in data:
            lines += ["", f"### {header} on {NICE[target]} (rows: method; ← the dataset a learned method was trained "
                      "on)", ""]
            lines += _detection_table(detection, target, metric, settings)
    means = grid_means(detection)
    lines += ["", "### Every method's mean over the whole grid (both datasets, every setting and seed)", "",
              "| method | mean AUC | mean mAP |", "|---|---|---|"]
    lines += [f"| {method} | {row.auc:.4f} | {row['map']:.4f} |" for method, row in means.iterrows()]
    lines += ["", f"### Target check for the default `{default}` (means over seeds)", ""]
    lines += _target_checks(detection, default, settings, hard)
    if not recipe_rows.empty:
        lines += _recipe_section(recipe_rows, plan, default, settings, hard)
    lines += ["", "What retraining gains from these rankings (each cleaning action, the baselines and the oracle, on "
              "these runs): bench/cleaning.py's section."]
    return "\n".join(lines) + "\n"
