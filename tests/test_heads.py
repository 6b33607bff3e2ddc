"""companion.models: the mean-pooling head beside BERT's [CLS] + pooler head."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from companion.models import (
    MeanPoolingClassifier,
    load_classifier,
    load_encoder,
    load_saved,
    mean_pool,
    save_model,
)


@pytest.fixture(scope="module")
def mean_classifier():
    torch.manual_seed(0)
    return load_classifier(pooling="mean").eval()


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    assert pooled.tolist() == [[2.0, 3.0]]


def test_mean_pool_same_vector_whatever_the_padding(tokenizer) -> None:
    encoder = load_encoder()
    short = tokenizer(["A gem."], return_tensors="pt")
    padded = tokenizer(["A gem."], padding="max_length", max_length=20, return_tensors="pt")
    with torch.no_grad():
        a = mean_pool(encoder(**short).last_hidden_state, short["attention_mask"])
        b = mean_pool(encoder(**padded).last_hidden_state, padded["attention_mask"])
    assert torch.allclose(a, b, atol=1e-5)


def test_mean_pool_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="attention_mask"):
        mean_pool(torch.zeros(2, 5, 4), torch.ones(2, 4))


def test_mean_classifier_reads_the_pretrained_encoder(mean_classifier, tokenizer) -> None:
    encoder = load_encoder()
    batch = tokenizer(["A gem.", "Tedious, overlong and smug."], padding=True, return_tensors="pt")
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if not name.startswith("pooler."):
                assert torch.equal(param, mean_classifier.bert.get_parameter(name)), name
        assert not hasattr(mean_classifier.bert, "pooler") or mean_classifier.bert.pooler is None
    assert mean_classifier(**batch).logits.shape == (2, 2)


def test_mean_classifier_loss_is_cross_entropy(mean_classifier, tokenizer) -> None:
    batch = tokenizer(["A gem.", "Smug."], padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        out = mean_classifier(**batch, labels=labels)
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_mean_classifier_saves_reloads_and_serves(mean_classifier, tokenizer, tmp_path) -> None:
    folder = save_model(mean_classifier, tokenizer, tmp_path / "mean")
    reloaded, reloaded_tokenizer = load_saved(folder)
    auto = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert isinstance(reloaded, MeanPoolingClassifier) and isinstance(auto, MeanPoolingClassifier)
    batch = tokenizer(["A warm, funny film."], return_tensors="pt")
    with torch.no_grad():
        logits = mean_classifier(**batch).logits
        assert torch.equal(logits, reloaded(**batch).logits)
    classify = pipeline("text-classification", model=reloaded, tokenizer=reloaded_tokenizer, device=-1)
    result = classify("A warm, funny film.")[0]
    assert result["label"] == ["negative", "positive"][int(logits.argmax())]
    assert result["score"] == pytest.approx(float(logits.softmax(-1).max()), abs=1e-5)


def test_unknown_pooling_is_refused() -> None:
    with pytest.raises(ValueError, match="pooling must be 'cls' or 'mean', got 'max'"):
        load_classifier(pooling="max")
