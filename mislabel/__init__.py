"""Find mislabeled training samples from training dynamics (Jia et al., AAAI 2023).

The library surface: ``Recorder`` records dynamics from any training loop, ``rank`` scores the
samples into a table (labels changed on purpose by ``seed_flips`` let it check itself), ``score`` is
the scoring path under it, ``compare`` writes every method's scores and metrics side by side into a run
folder, ``find_issues`` runs the whole
find_issues pipeline on your own labelled images, ``train_detector`` trains a detector on runs with
synthetic flips (``DetectorRecipe`` its options), ``to_datalab`` exports a ranking in cleanlab
Datalab's schema; see ``mislabel/api.py`` and ``examples/``.
"""
__all__ = ["Recorder", "rank", "score", "seed_flips", "compare", "find_issues", "train_detector", "DetectorRecipe",
           "to_datalab"]


def __getattr__(name: str):
    """They load torch, so they are imported on first use: the command lines under ``mislabel.``
    check their arguments without paying seconds and ~1 GB for it."""
    if name in __all__:
        from mislabel import api

        return getattr(api, name)
    raise AttributeError(f"module 'mislabel' has no attribute {name!r}")
