"""From text to padded batches: tokenization, dynamic padding and length-grouped batches.

The article padded every example to 128 tokens inside ``__getitem__``. The book
tokenizes once without padding (:func:`tokenize_dataset`), pads each batch only to its
own longest sentence (``DataCollatorWithPadding``), and optionally groups sentences of
similar length into the same batch (:class:`LengthGroupedBatchSampler`) so that little
padding is left at all. Used in ``book/walkthrough.ipynb``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

__all__ = [
    "tokenize_dataset",
    "UnknownTokensWarning",
    "unknown_token_share",
    "LengthGroupedBatchSampler",
    "make_loader",
    "padding_stats",
]

#: Share of [UNK] tokens above which :func:`tokenize_dataset` warns that the checkpoint cannot read the text.
UNKNOWN_SHARE_WARNING = 0.1


class UnknownTokensWarning(UserWarning):
    """Much of a data set's text is unknown to the checkpoint's vocabulary (``[UNK]`` tokens)."""


def unknown_token_share(data: Dataset, tokenizer: PreTrainedTokenizerBase) -> float:
    """Share of ``[UNK]`` among the tokens of a tokenized data set, leaving out ``[CLS]``, ``[SEP]`` and padding.

    With the default checkpoint, ``"hi 🎉"`` gives ``[CLS] hi [UNK] [SEP]``: a share of 0.5.
    Used by :func:`tokenize_dataset` to warn about text the checkpoint cannot read.
    """
    unk = tokenizer.unk_token_id
    if unk is None:
        return 0.0
    ids = np.concatenate([np.asarray(row, dtype=np.int64) for row in data["input_ids"]] or [np.zeros(0, np.int64)])
    ids = ids[~np.isin(ids, [i for i in tokenizer.all_special_ids if i != unk])]
    return float(np.mean(ids == unk)) if ids.size else 0.0


def tokenize_dataset(
    data: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int = 128, text_column: str = "text"
) -> Dataset:
    """Tokenize ``text_column`` in batches, truncating to ``max_length`` and **not** padding.

    Returns a dataset with ``input_ids``, ``attention_mask`` and ``labels`` (renamed from
    ``label``, or kept when already so named), ready for ``DataCollatorWithPadding``. Warns
    (:class:`UnknownTokensWarning`) when more than a tenth of the tokens are ``[UNK]``:
    text the checkpoint's vocabulary cannot read, such as another script or emoji.
    """
    if len(data) == 0:
        raise ValueError("cannot tokenize an empty dataset")
    if text_column not in data.column_names:
        raise ValueError(f"dataset has no column {text_column!r}; columns are {data.column_names}")
    if max_length < 2:
        raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
    if {"label", "labels"} <= set(data.column_names):
        raise ValueError("dataset has both a 'label' and a 'labels' column; remove one of them")
    not_text = next(((i, t) for i, t in enumerate(data[text_column]) if not isinstance(t, str)), None)
    if not_text is not None:
        raise ValueError(
            f"row {not_text[0]} of column {text_column!r} is {not_text[1]!r}, not a string; drop or fill such rows"
        )

    def encode(batch: dict) -> dict:
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    keep = {"label", "labels"}
    tokenized = data.map(encode, batched=True, remove_columns=[c for c in data.column_names if c not in keep])
    if "label" in tokenized.column_names:
        tokenized = tokenized.rename_column("label", "labels")
    share = unknown_token_share(tokenized, tokenizer)
    if share > UNKNOWN_SHARE_WARNING:
        warnings.warn(
            f"{share:.0%} of the tokens of this data set are {tokenizer.unk_token}: the checkpoint's vocabulary "
            f"({type(tokenizer).__name__}, {len(tokenizer):,} tokens, from {tokenizer.name_or_path}) cannot read "
            "much of this text (another script, emoji?), and the model sees only unknown tokens there; "
            "use a checkpoint whose vocabulary covers the text",
            UnknownTokensWarning,
            stacklevel=2,
        )
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
    labels: bool = True,
) -> DataLoader:
    """A ``DataLoader`` over a :func:`tokenize_dataset` result.

    By default each batch is padded to its own longest example (dynamic padding);
    ``pad_to=128`` reproduces the article's pad-everything-to-128 recipe for comparison.
    ``group_by_length`` batches similar lengths together (training only). The data must
    have ``input_ids`` and, unless ``labels=False`` (prediction only), ``labels``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    needed = ["input_ids", "labels"] if labels else ["input_ids"]
    missing = [c for c in needed if c not in data.column_names]
    if missing:
        raise ValueError(
            f"the data has no column {missing[0]!r} (its columns: {', '.join(data.column_names)}); "
            + ("tokenize it first with tokenize_dataset" if missing[0] == "input_ids"
               else "name the label column 'label' or 'labels', or pass labels=False for prediction only")
        )
    if len(data) == 0:
        raise ValueError("cannot make a loader over an empty dataset")
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
