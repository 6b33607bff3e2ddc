"""From text to padded batches: tokenization, dynamic padding and length-grouped batches.

The article padded every example to 128 tokens inside ``__getitem__``. The book
tokenizes once without padding (:func:`tokenize_dataset`), pads each batch only to its
own longest sentence (``DataCollatorWithPadding``), and optionally groups sentences of
similar length into the same batch (:class:`LengthGroupedBatchSampler`) so that little
padding is left at all. Used in ``book/walkthrough.ipynb``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

__all__ = ["tokenize_dataset", "LengthGroupedBatchSampler", "make_loader", "padding_stats"]


def tokenize_dataset(
    data: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int = 128, text_column: str = "text"
) -> Dataset:
    """Tokenize ``text_column`` in batches, truncating to ``max_length`` and **not** padding.

    Returns a dataset with ``input_ids``, ``attention_mask`` and ``labels`` (renamed from
    ``label``), ready for ``DataCollatorWithPadding``.
    """
    if len(data) == 0:
        raise ValueError("cannot tokenize an empty dataset")
    if text_column not in data.column_names:
        raise ValueError(f"dataset has no column {text_column!r}; columns are {data.column_names}")
    if max_length < 2:
        raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")

    def encode(batch: dict) -> dict:
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    keep = {"label"}
    tokenized = data.map(encode, batched=True, remove_columns=[c for c in data.column_names if c not in keep])
    if "label" in tokenized.column_names:
        tokenized = tokenized.rename_column("label", "labels")
    return tokenized


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples, in a shuffled order.

    Indices are shuffled, cut into "mega-batches" of ``batch_size * group`` examples,
    each mega-batch is sorted by length and cut into batches, and the batches are
    shuffled again. Call :meth:`set_epoch` to draw a new order each epoch.

    >>> sampler = LengthGroupedBatchSampler([5, 1, 4, 2, 3, 6], batch_size=2, group=3)
    >>> sorted(len(b) for b in sampler)
    [2, 2, 2]
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, group: int = 50, seed: int = 0) -> None:
        if batch_size < 1 or group < 1:
            raise ValueError(f"batch_size and group must be positive, got {batch_size} and {group}")
        if len(lengths) == 0:
            raise ValueError("cannot batch an empty dataset")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.group = group
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use a different (still deterministic) order for ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        size = self.batch_size * self.group
        batches = []
        for start in range(0, len(order), size):
            mega = order[start : start + size]
            mega = mega[np.argsort(-self.lengths[mega], kind="stable")]
            batches.extend(mega[i : i + self.batch_size].tolist() for i in range(0, len(mega), self.batch_size))
        for k in rng.permutation(len(batches)):
            yield batches[k]

    def __len__(self) -> int:
        size = self.batch_size * self.group
        full, rest = divmod(len(self.lengths), size)
        return full * self.group + -(-rest // self.batch_size)


def make_loader(
    data: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 32,
    shuffle: bool = False,
    group_by_length: bool = False,
    pad_to: int | None = None,
    seed: int = 0,
) -> DataLoader:
    """A ``DataLoader`` over a :func:`tokenize_dataset` result.

    By default each batch is padded to its own longest example (dynamic padding);
    ``pad_to=128`` reproduces the article's pad-everything-to-128 recipe for comparison.
    ``group_by_length`` batches similar lengths together (training only).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if pad_to is None:
        collator = DataCollatorWithPadding(tokenizer, padding="longest", return_tensors="pt")
    else:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to, return_tensors="pt")
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids", "labels") if c in data.column_names]
    data = data.with_format(columns=columns)
    if group_by_length:
        lengths = [len(ids) for ids in data["input_ids"]]
        sampler = LengthGroupedBatchSampler(lengths, batch_size, seed=seed)
        return DataLoader(data, batch_sampler=sampler, collate_fn=collator)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=collator, generator=generator)


def padding_stats(loader: Iterable[dict]) -> dict[str, float]:
    """Real and padded token counts over one pass of ``loader`` (or a list of batches; no model involved)."""
    real = padded = 0
    for batch in loader:
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
    return {"real_tokens": real, "padded_tokens": padded, "padding_fraction": 1 - real / padded}
