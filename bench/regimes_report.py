"""bench/regimes.py's tables: each regime's detection, the count and the measured recall.

Every number is on the *unseeded* rows of a run against its generator's flips. "before" is the default
shipped before issue 30's round (``regimes.PREVIOUS_COMMIT``'s detector on the whole run: no memorisation
onset, the gate over plain AUM); "default" is the
shipped score now (``rank``); "seeded" is the score the run's seeds chose (``choose_score``).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

SHOWN = ("detector", "aum", "loss", "confidence", "correctness", "last_prob")
RATIO_SEED = 1   # the likely ranges' ratios come from the seed-1 runs; the other seeds check them


def evaluate(spec) -> dict:
    """One run's numbers (``spec``: a bench.regimes.RunSpec with a cached run)."""
    from bench.regimes import load_seeding, previous_default, run_folder
    from mislabel import rank
    from mislabel.core.dynamics import load_dynamics, subset_dynamics
    from mislabel.scoring.count import estimate_noisy_count
    from mislabel.scoring.metrics import detection_metrics
    from mislabel.scoring.scores import load_detectors, score
    from mislabel.scoring.seeding import SEED_KINDS, seed_auc
    from mislabel.scoring.summary import scoring_view, summarize

    folder = run_folder(spec)
    noisy, true, seeds = load_seeding(spec)
    table = rank(folder, methods=SHOWN, seeded=seeds).sort_values("index")
    unseeded = ~table["seeded"].to_numpy()
    real = (noisy != true)[table["index"].to_numpy()][unseeded]
    metrics = {name: detection_metrics(table[name].to_numpy()[unseeded], real) for name in (*SHOWN, "score")}
    dyn = load_dynamics(folder)
    rows = np.flatnonzero(~np.isin(np.arange(dyn.num_samples), np.searchsorted(dyn.indices, seeds.indices)))
    before = score(dyn, detectors=load_detectors([previous_default()]))[0].scores[rows]
    scored, summary = scoring_view(dyn)
    check, count = table.attrs["seeded"], table.attrs["estimated_wrong_labels"]
    held_out = _held_out_counts(spec, seeds.labels, rows, summarize(subset_dynamics(dyn, rows)))
    flagged = table["flagged"].to_numpy()[unseeded]
    seed_rows, kinds = np.searchsorted(table["index"].to_numpy(), seeds.indices), np.asarray(seeds.kinds)
    by_kind = {f"seed {kind} {name}": seed_auc(table[name].to_numpy(np.float64), seed_rows[kinds == code],
                                               np.flatnonzero(unseeded))
               for name in SHOWN for code, kind in enumerate(SEED_KINDS)}
    return {**{f"auc {name}": m["auc"] for name, m in metrics.items()},
            **{f"map {name}": m["map"] for name, m in metrics.items()},
            "auc before": detection_metrics(before, real)["auc"], "chosen": check["chosen_score"],
            "memorised": summary.onset is not None, "true count": int(real.sum()), "count": count["estimate"],
            "count before": estimate_noisy_count(summarize(subset_dynamics(dyn, rows)), resamples=0).estimate,
            "likely low": count["likely"][0], "likely high": count["likely"][1],
            "seed recall": check["recall"], "true recall": float(flagged[real].mean()) if real.any() else np.nan,
            **{f"recall {kind}": check["found"][kind] / max(check["seeds"][kind], 1) for kind in check["seeds"]},
            "scored epochs": scored.num_epochs, **held_out, **by_kind}


def _held_out_counts(spec, trained: np.ndarray, rows: np.ndarray, summary) -> dict:
    """An alternative measured and not shipped: for a head on frozen features, where a cross-fitted head
    costs seconds, our count and cleanlab's on 5-fold held-out probabilities of a logistic regression on
    the same features (unseeded rows)."""
    if spec.regime not in ("probe", "probe_long"):
        return {}
    from cleanlab.count import num_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.preprocessing import StandardScaler

    from bench.regimes import BACKBONE, CACHE, FEATURE_SIDE, load_images
    from mislabel.scoring.count import estimate_noisy_count
    from mislabel.training.backbone_features import image_features

    features = image_features(load_images(spec.dataset)[0], BACKBONE, side=FEATURE_SIDE,
                              cache_dir=CACHE / "features" / spec.dataset).numpy()[rows]
    labels = trained[rows]
    probs = cross_val_predict(LogisticRegression(max_iter=300), StandardScaler().fit_transform(features), labels,
                              cv=5, method="predict_proba")
    return {"held-out count": estimate_noisy_count(summary, pred_probs=probs, resamples=0).estimate,
            "cleanlab count": int(num_label_issues(labels, probs))}


def _cells(frame: pd.DataFrame) -> pd.core.groupby.DataFrameGroupBy:
    return frame.groupby(["regime", "dataset", "noise", "ratio"], sort=False)


def evaluated(spec, reuse: bool) -> dict:
    """``evaluate(spec)``, kept in the run folder; ``reuse``: read it back from there when present (only
    while the library is unchanged since it was written)."""
    from bench.regimes import run_folder

    path = run_folder(spec) / "evaluation.json"
    if reuse and path.is_file():
        return json.loads(path.read_text())
    row = {key: (value.item() if isinstance(value, np.generic) else value) for key, value in evaluate(spec).items()}
    path.write_text(json.dumps(row))
    return row


def report(specs: list, command: str, reuse: bool = False) -> str:
    from bench.common import machine

    frame = pd.DataFrame([{**vars(spec), **evaluated(spec, reuse)} for spec in specs])
    others = [f"auc {name}" for name in SHOWN if name != "detector"]
    averaged = ("auc ", "map ", "recall ", "seed recall", "true recall", "count", "true count", "held-out", "cleanlab")
    means = _cells(frame)[[c for c in frame.columns if c.startswith(averaged)]].mean()
    best = means[others].idxmax(axis=1)
    means["best other"] = means[others].max(axis=1)
    short = {key: (means["best other"] - means[f"auc {key}"]).clip(lower=0)
             for key in ("detector", "score", "before")}
    lines = [f"Machine: {machine()}.  ", "Commands: `OMP_NUM_THREADS=1 python bench/regimes.py --stage runs` "
             f"(cached in bench/.cache/regimes/), then `{command}`. Scored with the shipped detector "
             "(`mislabel/scoring/pretrained/default.pth.tar`) through `rank(run, seeded=...)`; AUC on the "
             "unseeded rows against the generator's flips, mean over seeds "
             f"({', '.join(map(str, sorted(frame['seed'].unique())))}; `runs` = how many finished).", "",
             "### AUC per regime: the default before and now, the best other score, the seeds' choice", "",
             "| regime | data | noise | runs | before | default | seeded | best other | default short by | "
             "seeded short by |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, m in means.iterrows():
        runs = _cells(frame).get_group(key)
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} {key[3]} | {len(runs)} | {m['auc before']:.3f} | "
                     f"{m['auc detector']:.3f} | {m['auc score']:.3f} | {best[key][4:]} {m['best other']:.3f} | "
                     f"{short['detector'][key]:.3f} | {short['score'][key]:.3f} |")
    worst = {name: (values.max(), values.idxmax()) for name, values in short.items()}
    lines += ["", f"Worst cell short of the best other score: before {worst['before'][0]:.3f} "
              f"({_name(worst['before'][1])}), default now {worst['detector'][0]:.3f} "
              f"({_name(worst['detector'][1])}), seeded "
              f"{worst['score'][0]:.3f} ({_name(worst['score'][1])}). Cells within 0.005: default "
              f"{int((short['detector'] <= 0.005).sum())} of {len(means)}, seeded "
              f"{int((short['score'] <= 0.005).sum())}; within 0.02: default "
              f"{int((short['detector'] <= 0.02).sum())}. Mean AUC / mAP: before "
              f"{frame['auc before'].mean():.4f}, default {frame['auc detector'].mean():.4f} / "
              f"{frame['map detector'].mean():.4f}, seeded {frame['auc score'].mean():.4f} / "
              f"{frame['map score'].mean():.4f}, best single other "
              f"{max(frame[c].mean() for c in others):.4f} / "
              f"{max(frame[c.replace('auc', 'map')].mean() for c in others):.4f}."
              f" Runs that memorised (onset found): {int(frame['memorised'].sum())} of {len(frame)}.", ""]
    lines += _margin_lines(frame) + _count_lines(frame, means)
    return "\n".join(lines) + "\n"


MARGINS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
JUDGES = {"the harder kind (shipped)": np.minimum, "the mean of the kinds": lambda a, b: (a + b) / 2,
          "the random kind": lambda a, b: a, "the ambiguous kind": lambda a, b: b}
JUDGE_MARGINS = (0.02, 0.05, 0.1)


def _seeds_choice(frame: pd.DataFrame, candidates: tuple, of_kinds, best_other: pd.Series) -> dict[float, tuple]:
    """Per margin of MARGINS, the mean AUC and the worst cell short of ``best_other`` when the candidate
    whose seeds ``of_kinds`` judges best (the two kinds' seed AUCs -> one) replaces the default (the first
    candidate) only if it beats it by more than the margin, as ``choose_score`` does (a tie goes to the default)."""
    judged = np.stack([of_kinds(frame[f"seed random {name}"].to_numpy(), frame[f"seed ambiguous {name}"].to_numpy())
                       for name in candidates], axis=1)
    best, gain = np.array(candidates)[judged.argmax(axis=1)], judged.max(axis=1) - judged[:, 0]
    cells = [frame[c] for c in ("regime", "dataset", "noise", "ratio")]
    results = {}
    for margin in MARGINS:
        picked = np.where(gain > margin, best, candidates[0])
        auc = pd.Series([frame.at[i, f"auc {name}"] for i, name in zip(frame.index, picked)], index=frame.index)
        results[margin] = (auc.mean(), (best_other - auc).groupby(cells).mean().clip(lower=0).max())
    return results


def _margin_lines(frame: pd.DataFrame) -> list[str]:
    """What the seeds' choice would give with other margins, then with other judges (which kind of seed
    decides) and with ``last_prob`` (the best other score of the worst cells) among the candidates."""
    from mislabel.scoring.seeding import SEEDED_CANDIDATES

    best_other = frame[[f"auc {name}" for name in SHOWN if name != "detector"]].max(axis=1)
    shipped = ("detector", *SEEDED_CANDIDATES)
    rows = ["| margin | mean AUC | worst cell short of the best other score |", "|---|---|---|"]
    rows += [f"| {margin:g} | {auc:.4f} | {short:.3f} |"
             for margin, (auc, short) in _seeds_choice(frame, shipped, np.minimum, best_other).items()]
    judges = ["| judged by | candidates | " + " | ".join(f"margin {m:g}" for m in JUDGE_MARGINS) + " |",
              "|---|---|" + "---|" * len(JUDGE_MARGINS)]
    for candidates in (shipped, (*shipped, "last_prob")):
        for judge, of_kinds in JUDGES.items():
            results = _seeds_choice(frame, candidates, of_kinds, best_other)
            extra = " + last_prob" if "last_prob" in candidates else ""
            judges.append(f"| {judge} | the shipped five{extra} | "
                          + " | ".join(f"{results[m][0]:.4f} / {results[m][1]:.3f}" for m in JUDGE_MARGINS) + " |")
    return ["### The seeds' choice at other margins (the default alone: mean AUC "
            f"{frame['auc detector'].mean():.4f})", "", *rows, "",
            "Other judges and candidates (mean AUC / worst cell short of the best other score; a tie goes to "
            "the default):", "", *judges, ""]


def _name(key: tuple) -> str:
    return f"{key[0]} {key[1]} {key[2]} {key[3]}"


def _count_lines(frame: pd.DataFrame, means: pd.DataFrame) -> list[str]:
    inside = (frame["likely low"] <= frame["true count"]) & (frame["true count"] <= frame["likely high"])
    frame = frame.assign(covered=inside,
                         bracketed=[min(r, a) - 0.05 <= t <= max(r, a) + 0.05 for r, a, t in
                                    zip(frame["recall random"], frame["recall ambiguous"], frame["true recall"])])
    held = frame[frame["seed"] != RATIO_SEED]
    error = means["count"] / means["true count"] - 1
    before = means["count before"] / means["true count"] - 1
    lines = ["### How many are wrong, and the recall the seeds measure", "",
             "| regime | data | noise | true | count before | count now | likely range held | on a cross-fitted "
             "head: ours / cleanlab's | measured recall (random / ambiguous seeds) | true recall |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, m in means.iterrows():
        runs = _cells(frame).get_group(key)
        ours, theirs = m.get("held-out count", np.nan), m.get("cleanlab count", np.nan)
        cleanlab = "" if pd.isna(theirs) else (f"{ours / m['true count'] - 1:+.0%} / "
                                               f"{theirs / m['true count'] - 1:+.0%}")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} {key[3]} | {m['true count']:.0f} | {before[key]:+.0%} | "
                     f"{error[key]:+.0%} | {int(runs['covered'].sum())}/{len(runs)} | {cleanlab} | "
                     f"{m['seed recall']:.2f} ({m['recall random']:.2f} / {m['recall ambiguous']:.2f}) | "
                     f"{m['true recall']:.2f} |")
    recall_error = (means["seed recall"] - means["true recall"]).abs()
    kind_error = {kind: means[f"recall {kind}"] - means["true recall"] for kind in ("random", "ambiguous")}
    kinds_alone = "; ".join(f"the {kind} seeds' alone in {int((error_of.abs() <= 0.10).sum())} (off by "
                            f"{error_of.min():+.2f} to {error_of.max():+.2f})" for kind, error_of in kind_error.items())
    lines += ["", f"Count within 25% of the truth in {int((error.abs() <= 0.25).sum())} of {len(means)} cells "
              f"(before: {int((before.abs() <= 0.25).sum())}); worst {error.abs().max():.0%} "
              f"({_name(error.abs().idxmax())}). The likely range held the truth in {int(held['covered'].sum())} of "
              f"{len(held)} runs of the seeds it was not measured on ({int(frame['covered'].sum())} of {len(frame)} "
              f"in all). Measured recall within 0.10 of the true recall in {int((recall_error <= 0.10).sum())} of "
              f"{len(means)} cells ({kinds_alone}); the true recall lay between the two kinds' recalls (within "
              f"0.05) in {int(frame['bracketed'].sum())} of {len(frame)} runs.", "", ratio_lines(frame)]
    return lines


def ratio_lines(frame: pd.DataFrame) -> str:
    """The likely ranges' ratios (true / estimated count) from the seed-1 runs, by whether a run memorised."""
    parts = []
    for memorised, runs in frame[frame["seed"] == RATIO_SEED].groupby("memorised"):
        ratio = runs["true count"] / runs["count"].clip(lower=1)
        parts.append(f"{'memorised' if memorised else 'scored whole'}: {ratio.min():.2f}-{ratio.max():.2f} over "
                     f"{len(runs)} runs")
    return ("Ratios true / estimated count on the seed-1 runs (the extremes set `mislabel.scoring.count`'s likely "
            "ranges, widened by the detectors' corpus for runs scored whole): " + "; ".join(parts) + ".")
