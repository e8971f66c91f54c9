"""Record training dynamics from the frameworks people train with, as optional extras.

    mislabel.integrations.lightning      DynamicsCallback for PyTorch Lightning
                                         (pip install mislabel-detection[lightning])
    mislabel.integrations.transformers   DynamicsCallback + DynamicsTrainer for the Hugging Face Trainer
                                         (pip install mislabel-detection[transformers])

Both save a run folder that ``mislabel.rank``, ``compare``, ``train_detector.py`` and ``denoise
--td_dir`` accept. This package and ``IndexedDataset`` import no framework; only the two modules
above do, so ``import mislabel`` and the commands stay free of them.
"""
from __future__ import annotations

from mislabel.integrations.indexed import INDEX_KEY, IndexedDataset

__all__ = ["INDEX_KEY", "IndexedDataset", "missing_extra"]


def missing_extra(extra: str, err: ImportError) -> ImportError:
    """The one-line error for an integration imported without its framework (raise it ``from None``)."""
    return ImportError(f"mislabel.integrations.{extra} needs the {extra} extra ({err.name or err} is not "
                       f"installed): pip install 'mislabel-detection[{extra}]'")
