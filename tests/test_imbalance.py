"""companion.imbalance: balanced class weights and the weighted-loss wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from companion.batching import make_loader, tokenize_dataset
from companion.imbalance import WeightedLossClassifier, balanced_class_weights, per_class_scores
from companion.training import fit


def tiny_model(num_labels: int = 3) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=num_labels)
    return BertForSequenceClassification(config)


def test_balanced_weights_make_every_class_weigh_the_same() -> None:
    labels = [0] * 6 + [1] * 3 + [2]
    weights = balanced_class_weights(labels, 3)
    counts = torch.tensor([6.0, 3.0, 1.0])
    assert torch.allclose(weights * counts, torch.full((3,), len(labels) / 3))
    assert weights.dtype == torch.float32


@pytest.mark.parametrize(("labels", "message"), [([], "empty"), ([0, 3], "0..2"), ([0, 0, 1], r"classes \[2\]")])
def test_balanced_weights_bad_input(labels, message) -> None:
    with pytest.raises(ValueError, match=message):
        balanced_class_weights(labels, 3)


def test_wrapper_loss_is_weighted_cross_entropy() -> None:
    model = tiny_model().eval()
    batch = {"input_ids": torch.tensor([[101, 2000, 102], [101, 2001, 102]]), "labels": torch.tensor([0, 2])}
    uniform = WeightedLossClassifier(model, torch.ones(3))(**batch)
    assert torch.allclose(uniform.loss, model(**batch).loss)
    weights = torch.tensor([1.0, 1.0, 4.0])
    weighted = WeightedLossClassifier(model, weights)(**batch)
    expected = torch.nn.functional.cross_entropy(weighted.logits, batch["labels"], weight=weights)
    assert torch.allclose(weighted.loss, expected)
    no_labels = WeightedLossClassifier(model, weights)(input_ids=batch["input_ids"])
    assert no_labels.loss is None and no_labels.logits.shape == (2, 3)


def test_wrapper_checks_its_weights() -> None:
    with pytest.raises(ValueError, match="one weight per class"):
        WeightedLossClassifier(tiny_model(), torch.ones(2))
    with pytest.raises(ValueError, match="positive"):
        WeightedLossClassifier(tiny_model(), torch.tensor([1.0, 0.0, 1.0]))


def test_fit_trains_the_wrapped_model(tokenizer) -> None:
    data = Dataset.from_dict({"text": ["a", "b c", "d e f", "g", "h i"] * 4, "label": [0, 0, 0, 1, 2] * 4})
    loader = make_loader(tokenize_dataset(data, tokenizer), tokenizer, batch_size=4)
    model = tiny_model()
    before = model.classifier.weight.detach().clone()
    wrapped = WeightedLossClassifier(model, balanced_class_weights(data["label"], 3))
    result = fit(wrapped, loader, loader, epochs=1, lr=1e-2, progress=False)
    assert len(result.step_losses) == len(loader)
    assert not torch.equal(before, model.classifier.weight), "the wrapped model's own weights were updated"


def test_per_class_scores_match_scikit_learn() -> None:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    truth = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
    guess = [0, 1, 0, 1, 1, 2, 0, 2, 1, 2]  # class 3 is never predicted
    table = per_class_scores(confusion_matrix(truth, guess, labels=[0, 1, 2, 3]), ["a", "b", "c", "d"])
    precision, recall, f1, support = precision_recall_fscore_support(truth, guess, zero_division=0)
    assert np.allclose(table["precision"], precision) and np.allclose(table["recall"], recall)
    assert np.allclose(table["f1"], f1) and table["support"].tolist() == support.tolist()
    macro = precision_recall_fscore_support(truth, guess, average="macro", zero_division=0)[2]
    assert np.isclose(table["f1"].mean(), macro)
    with pytest.raises(ValueError, match="does not match"):
        per_class_scores(np.eye(3), ["a", "b"])
