"""Measuring where fine-tuning falls short: learning curves over the number of labels, against baselines.

A learning curve trains the same recipe on nested samples of the training split (each
sample contains every smaller one, with the same label proportions) and tests each model
on the same test split. Beside it, two baselines that need no fine-tuning: a TF-IDF bag of
words with logistic regression (the walkthrough's baseline, fitted in a second), and a
logistic regression on the frozen checkpoint's mean-pooled sentence vectors.
:func:`crossover` reads off the smallest number of labels from which one curve stays
ahead of another by a margin.

The fine-tuning here is the walkthrough's loop (:func:`companion.training.train_epoch`,
AdamW with warm-up and linear decay) for a fixed number of epochs, with no validation
split: a reader with 100 labels does not have 1,280 more to choose epochs with.
:func:`epochs_for` sizes the run so that a small sample still gets enough updates. Used
in ``book/limits.ipynb`` and ``benchmarks/label_curve.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.pipeline import Pipeline, make_pipeline
from torch import nn
from transformers import PreTrainedTokenizerBase

from companion.batching import make_loader, tokenize_dataset
from companion.data import stratified_subset
from companion.env import seed_everything
from companion.models import load_classifier, mean_pool
from companion.training import evaluate, make_optimizer, make_scheduler, resolve_precision, set_epoch, train_epoch

__all__ = [
    "nested_subsets",
    "epochs_for",
    "CurvePoint",
    "fine_tune_on",
    "tfidf_classifier",
    "sentence_vectors",
    "feature_classifier",
    "crossover",
]


def nested_subsets(data: Dataset, sizes: Sequence[int], seed: int = 0) -> dict[int, Dataset]:
    """Stratified samples of ``data`` of each size in ``sizes``, each one inside every larger one.

    The largest is drawn from ``data`` with :func:`companion.data.stratified_subset`, each
    smaller one from the next larger, so a learning curve adds examples rather than
    redrawing them. Returns ``{size: subset}`` in increasing size.

    >>> ds = Dataset.from_dict({"text": list("abcdefghij"), "label": [0] * 5 + [1] * 5})
    >>> subsets = nested_subsets(ds, [2, 6])
    >>> set(subsets[2]["text"]) <= set(subsets[6]["text"]), sorted(subsets[2]["label"])
    (True, [0, 1])
    """
    sizes = sorted(set(sizes))
    if not sizes or any(not isinstance(n, int | np.integer) or n < 1 for n in sizes):
        raise ValueError(f"sizes must be positive integers, got {sizes}")
    if sizes[-1] > len(data):
        raise ValueError(f"the largest size, {sizes[-1]}, exceeds the {len(data)} examples of the data")
    subsets, current = {}, data
    for n in reversed(sizes):
        current = stratified_subset(current, n, seed=seed)
        subsets[n] = current
    return dict(sorted(subsets.items()))


def epochs_for(n: int, batch_size: int = 32, min_updates: int = 50, min_epochs: int = 2) -> int:
    """Epochs for ``n`` training examples: at least ``min_epochs``, and at least ``min_updates`` updates in all.

    A sample of 100 snippets is four batches of 32: one epoch would be four updates, far
    too few to move the weights, so small samples get more passes.

    >>> [epochs_for(n) for n in (100, 300, 1000, 3000)]
    [13, 5, 2, 2]
    """
    for name, value in (("n", n), ("batch_size", batch_size), ("min_updates", min_updates), ("min_epochs", min_epochs)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    batches = math.ceil(n / batch_size)
    return max(min_epochs, math.ceil(min_updates / batches))


@dataclass
class CurvePoint:
    """One fine-tuning run of a learning curve: its data size, schedule, time and test accuracy."""

    examples: int
    epochs: int
    updates: int
    train_seconds: float
    accuracy: float
    seed: int


def fine_tune_on(
    data: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    test_loader: torch.utils.data.DataLoader,
    lr: float = 2e-4,
    epochs: int | None = None,
    seed: int = 0,
    checkpoint: str = "minilm",
    pooling: str = "mean",
    max_length: int = 64,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    precision: str = "auto",
) -> tuple[nn.Module, CurvePoint]:
    """Fine-tune a fresh classifier on ``data`` for a fixed number of epochs, then test it once.

    The walkthrough's recipe: mean pooling, AdamW with weight decay on weights only,
    warm-up over 10% of the updates then linear decay, gradient clipping, length-grouped
    batches. ``epochs=None`` takes :func:`epochs_for`. No validation split is used: the
    last epoch's weights are tested. ``seed`` fixes the head's initial weights, the batch
    order and dropout. Returns the model and a :class:`CurvePoint`.
    """
    if len(data) == 0:
        raise ValueError("data is empty: nothing to fine-tune on")
    epochs = epochs_for(len(data), batch_size) if epochs is None else epochs
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    device = torch.device(device)
    dtype = resolve_precision(device, precision)
    loader = make_loader(tokenize_dataset(data, tokenizer, max_length), tokenizer, batch_size, group_by_length=True,
                         seed=seed)
    seed_everything(seed)
    model = load_classifier(checkpoint, pooling=pooling).to(device)
    optimizer = make_optimizer(model, lr=lr)
    scheduler = make_scheduler(optimizer, epochs * len(loader))
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        set_epoch(loader, epoch)
        train_epoch(model, loader, optimizer, scheduler, device, dtype, progress=False)
    seconds = time.perf_counter() - start
    accuracy = evaluate(model, test_loader, device, dtype).accuracy
    return model, CurvePoint(len(data), epochs, epochs * len(loader), seconds, accuracy, seed)


def tfidf_classifier(min_df: int = 2) -> Pipeline:
    """The walkthrough's bag-of-words baseline: word uni- and bigram TF-IDF, then logistic regression.

    ``min_df`` drops words and bigrams seen in fewer training texts (the walkthrough's 2).

    >>> baseline = tfidf_classifier(min_df=1).fit(["good", "fine film", "bad", "dull film"], [1, 1, 0, 0])
    >>> baseline.predict(["good"]).tolist()
    [1]
    """
    if not isinstance(min_df, int) or min_df < 1:
        raise ValueError(f"min_df must be a positive integer, got {min_df!r}")
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True),
                         LogisticRegression(C=4.0, max_iter=2000))


@torch.no_grad()
def sentence_vectors(
    encoder: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The frozen encoder's mean-pooled sentence vectors ``[N, hidden]`` (float32) and the labels ``[N]``.

    ``encoder`` is a bare encoder (:func:`companion.models.load_encoder`); ``dtype`` an
    autocast dtype or ``None`` for fp32. The vectors are what all-MiniLM-L6-v2 was trained
    to produce; a logistic regression on them is fine-tuning's cheapest rival.
    """
    device = torch.device(device)
    encoder.eval().to(device)
    vectors, labels = [], []
    for batch in loader:
        if "labels" not in batch:
            raise ValueError(f"the batch has no 'labels' (it has {sorted(batch)}); the vectors need them")
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        vectors.append(mean_pool(hidden.float(), mask).cpu())
        labels.append(batch["labels"].cpu())
    if not vectors:
        raise ValueError("the loader produced no batches (empty data)")
    return torch.cat(vectors).numpy(), torch.cat(labels).numpy()


def feature_classifier(Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0), folds: int = 5) -> LogisticRegressionCV:
    """A logistic regression for frozen sentence vectors, its strength ``C`` chosen by cross-validation.

    The ``folds``-fold cross-validation runs on the training sample itself, so that no
    labels beyond it are needed (a reader with 100 labels has no validation split to spare).

    >>> x = np.array([[0.0], [0.1], [0.2], [0.9], [1.0], [1.1]] * 2)
    >>> feature_classifier(folds=2).fit(x, [0, 0, 0, 1, 1, 1] * 2).predict([[0.05], [1.05]]).tolist()
    [0, 1]
    """
    if not Cs or any(not (math.isfinite(c) and c > 0) for c in Cs):
        raise ValueError(f"Cs must be positive, finite numbers, got {list(Cs)}")
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer of at least 2, got {folds!r}")
    return LogisticRegressionCV(Cs=list(Cs), cv=folds, max_iter=2000)


def crossover(sizes: Sequence[int], ours: Sequence[float], theirs: Sequence[float], margin: float = 0.0) -> int | None:
    """The smallest size from which ``ours`` beats ``theirs`` by more than ``margin`` at every larger size too.

    ``None`` when ``ours`` is not ahead by that margin at the largest size. Sizes are sorted
    together with their scores first.

    >>> crossover([100, 300, 1000], [0.60, 0.70, 0.80], [0.65, 0.66, 0.70], margin=0.02)
    300
    >>> crossover([100, 300], [0.6, 0.6], [0.7, 0.7]) is None
    True
    """
    if not (len(sizes) == len(ours) == len(theirs)) or not sizes:
        raise ValueError(f"need as many scores as sizes (and at least one), got {len(sizes)}, {len(ours)}, "
                         f"{len(theirs)}")
    if margin < 0:
        raise ValueError(f"margin must be zero or more, got {margin}")
    order = np.argsort(np.asarray(sizes))
    ahead = np.asarray(ours, dtype=float)[order] - np.asarray(theirs, dtype=float)[order] > margin
    if not ahead[-1]:
        return None
    first = len(ahead)
    while first > 0 and ahead[first - 1]:
        first -= 1
    return int(np.asarray(sizes)[order][first])
