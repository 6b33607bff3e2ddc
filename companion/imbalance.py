"""Class imbalance: "balanced" class weights and a classifier whose loss uses them.

With a rare class (ABBR is under 2% of the TREC questions) plain cross-entropy spends
almost none of its gradient on that class. Weighting each example's loss by
``N / (K * count(class))`` makes every class weigh the same in total.
:class:`WeightedLossClassifier` wraps any ``AutoModelForSequenceClassification`` so that
its ``loss`` is that weighted cross-entropy; :func:`companion.training.fit` trains it
unchanged. Used in ``book/applications.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

__all__ = ["balanced_class_weights", "WeightedLossClassifier", "per_class_scores"]


def balanced_class_weights(labels: Sequence[int], num_labels: int) -> Tensor:
    """Weights ``N / (K * count_k)`` per class (scikit-learn's "balanced"), as float32.

    >>> [round(w, 4) for w in balanced_class_weights([0, 0, 0, 1], 2).tolist()]
    [0.6667, 2.0]
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("no labels to weigh (empty data)")
    if labels.min() < 0 or labels.max() >= num_labels:
        raise ValueError(f"labels must be in 0..{num_labels - 1}; found {labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=num_labels)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"classes {missing} have no examples, so they cannot be weighted")
    return torch.tensor(len(labels) / (num_labels * counts), dtype=torch.float32)


class WeightedLossClassifier(nn.Module):
    """A sequence classifier whose ``loss`` is cross-entropy weighted per class.

    Calls the wrapped model without labels and computes the loss from its logits, so
    any head works. ``config`` is the wrapped model's (``fit`` reads ``num_labels``
    from it); save the wrapped ``model`` itself, not the wrapper.
    """

    def __init__(self, model: PreTrainedModel, weights: Tensor) -> None:
        super().__init__()
        num_labels = model.config.num_labels
        if weights.shape != (num_labels,):
            raise ValueError(f"need one weight per class ({num_labels}), got shape {tuple(weights.shape)}")
        if not bool((weights > 0).all()):
            raise ValueError("class weights must be positive")
        self.model = model
        self.config = model.config
        self.register_buffer("weights", weights.float())

    def forward(self, labels: Tensor | None = None, **inputs: Tensor):
        """The wrapped model's output, with ``loss`` replaced by the weighted loss when labels are given."""
        output = self.model(**inputs)
        if labels is not None:
            output.loss = nn.functional.cross_entropy(output.logits.float(), labels, weight=self.weights)
        return output


def per_class_scores(confusion: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support of every class, from a confusion matrix (rows: true).

    A class that is never predicted has precision 0 (and so F1 0), as in scikit-learn
    with ``zero_division=0``; the mean of the ``f1`` column is the macro-F1.

    >>> per_class_scores(np.array([[3, 1], [0, 4]]), ["a", "b"]).round(3).to_dict("index")["a"]
    {'precision': 1.0, 'recall': 0.75, 'f1': 0.857, 'support': 4.0}
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix of shape {confusion.shape} does not match {len(names)} names")
    hits = np.diag(confusion).astype(float)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(float)}, index=list(names)
    )
