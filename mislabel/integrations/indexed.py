"""The dataset wrapper that tells the callbacks which sample each row of a batch is.

Training dynamics are kept per sample, so every training batch must carry the samples' dataset
indices. ``IndexedDataset`` adds them without touching the dataset: a ``(inputs, target)`` item
becomes ``(inputs, target, index)``, a dict item (a Hugging Face row) gains an ``"index"`` entry.
The default collate functions turn the indices into a tensor like any other field.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

from mislabel.core.user_input import UserError

__all__ = ["INDEX_KEY", "IndexedDataset"]

INDEX_KEY = "index"  # the field of a dict batch that holds the sample indices


class IndexedDataset(Dataset):
    """``dataset`` with each item's index added: ``(x, y)`` -> ``(x, y, i)``, ``{...}`` -> ``{..., "index": i}``.

    :param dataset: any map-style dataset (``len`` and ``[i]``) whose items are ``(inputs, target)``
        pairs or dicts, such as a torchvision dataset or a tokenized Hugging Face ``datasets.Dataset``.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple | dict:
        item = self.dataset[index]
        if isinstance(item, Mapping):
            if INDEX_KEY in item:
                raise UserError(f"the dataset's items already have an {INDEX_KEY!r} field; IndexedDataset would "
                                "overwrite it (rename that field)")
            return {**item, INDEX_KEY: index}
        if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            return (item[0], item[1], index)
        raise UserError(f"IndexedDataset needs items that are (inputs, target) pairs or dicts; item {index} is a "
                        f"{type(item).__name__}" + (f" of {len(item)}" if isinstance(item, Sequence) else ""))
