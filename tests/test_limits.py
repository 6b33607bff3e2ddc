"""companion.limits: nested samples, the schedule, the baselines, the fine-tuning run and the crossover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from companion.batching import make_loader, tokenize_dataset
from companion.limits import (
    crossover,
    epochs_for,
    feature_classifier,
    fine_tune_on,
    nested_subsets,
    sentence_vectors,
    tfidf_classifier,
)
from companion.models import load_encoder, mean_pool, save_model

TEXTS = ["a fine film", "a dull film", "great acting", "awful plot", "lovely score", "boring and long",
         "a joy", "a mess", "warm and funny", "cold and flat", "moving", "tedious"]
LABELS = [1, 0] * 6


def toy(n_repeats: int = 1) -> Dataset:
    return Dataset.from_dict({"text": TEXTS * n_repeats, "label": LABELS * n_repeats})


def tiny_checkpoint(folder: Path, tokenizer) -> str:
    """A 2-layer, 32-wide BERT with the default checkpoint's vocabulary, saved like a real one."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2)
    return str(save_model(BertForSequenceClassification(config), tokenizer, folder))


def test_nested_subsets_are_nested_and_stratified() -> None:
    data = Dataset.from_dict({"text": [f"t{i}" for i in range(200)], "label": [0] * 80 + [1] * 120})
    subsets = nested_subsets(data, [100, 10, 50], seed=3)
    assert list(subsets) == [10, 50, 100]
    assert set(subsets[10]["text"]) <= set(subsets[50]["text"]) <= set(subsets[100]["text"])
    assert [sum(subsets[n]["label"]) for n in (10, 50, 100)] == [6, 30, 60]
    assert nested_subsets(data, [50], seed=3)[50]["text"] != nested_subsets(data, [50], seed=4)[50]["text"]


@pytest.mark.parametrize("sizes, message", [([], "positive integers"), ([0, 10], "positive integers"),
                                            ([10, 500], "exceeds the 200")])
def test_nested_subsets_bad_sizes(sizes, message) -> None:
    data = Dataset.from_dict({"text": ["t"] * 200, "label": [0, 1] * 100})
    with pytest.raises(ValueError, match=message):
        nested_subsets(data, sizes)


def test_epochs_for_gives_small_samples_enough_updates() -> None:
    assert [epochs_for(n, 32, 50, 1) for n in (100, 300, 1000, 3000)] == [13, 5, 2, 1]
    assert epochs_for(10_000, 32, 50, 3) == 3
    with pytest.raises(ValueError, match="batch_size"):
        epochs_for(100, 0)
    with pytest.raises(ValueError, match="n must be"):
        epochs_for(0)


def test_crossover_reads_where_a_curve_stays_ahead() -> None:
    sizes = [1000, 100, 300]   # unsorted: scores move with their sizes
    assert crossover(sizes, [0.80, 0.70, 0.72], [0.70, 0.69, 0.65]) == 100
    assert crossover(sizes, [0.80, 0.70, 0.72], [0.70, 0.69, 0.65], margin=0.05) == 300
    assert crossover([100, 300, 1000], [0.8, 0.6, 0.9], [0.7, 0.7, 0.7]) == 1000   # ahead, behind, ahead again
    assert crossover([100, 300], [0.6, 0.7], [0.6, 0.7]) is None                   # ties are not ahead
    with pytest.raises(ValueError, match="as many scores as sizes"):
        crossover([100, 300], [0.6], [0.6, 0.7])
    with pytest.raises(ValueError, match="margin"):
        crossover([100], [0.6], [0.5], margin=-0.1)


def test_baselines_learn_the_toy_task_and_refuse_bad_settings() -> None:
    data = toy(3)
    assert tfidf_classifier(min_df=1).fit(data["text"], data["label"]).score(TEXTS, LABELS) == 1.0
    with pytest.raises(ValueError, match="min_df"):
        tfidf_classifier(min_df=0)
    with pytest.raises(ValueError, match="Cs"):
        feature_classifier(Cs=[0.1, -1.0])
    with pytest.raises(ValueError, match="folds"):
        feature_classifier(folds=1)


def test_sentence_vectors_are_the_mean_pooled_hidden_states(tmp_path: Path, tokenizer) -> None:
    encoder = load_encoder(tiny_checkpoint(tmp_path / "tiny", tokenizer))
    loader = make_loader(tokenize_dataset(toy(), tokenizer, 16), tokenizer, batch_size=5)
    x, y = sentence_vectors(encoder, loader)
    assert x.shape == (12, 32) and x.dtype == np.float32 and y.tolist() == LABELS
    batch = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"])
    assert np.allclose(x[:2], expected.numpy(), atol=1e-5)
    unlabelled = {name: t for name, t in next(iter(loader)).items() if name != "labels"}
    with pytest.raises(ValueError, match="no 'labels'"):
        sentence_vectors(encoder, [unlabelled])
    with pytest.raises(ValueError, match="no batches"):
        sentence_vectors(encoder, [])


def test_fine_tune_on_trains_for_the_schedule_and_tests_once(tmp_path: Path, tokenizer) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "tiny", tokenizer)
    test_loader = make_loader(tokenize_dataset(toy(), tokenizer, 16), tokenizer, batch_size=8)
    kwargs = dict(lr=1e-3, seed=1, checkpoint=checkpoint, max_length=16, batch_size=8, precision="fp32")
    model, point = fine_tune_on(toy(2), tokenizer, test_loader, epochs=3, **kwargs)
    assert (point.examples, point.epochs, point.updates, point.seed) == (24, 3, 9, 1)
    assert 0.0 <= point.accuracy <= 1.0 and point.train_seconds > 0
    assert type(model).__name__ == "MeanPoolingClassifier"
    _, again = fine_tune_on(toy(2), tokenizer, test_loader, epochs=3, **kwargs)
    assert again.accuracy == point.accuracy   # seeded: the same run twice
    assert fine_tune_on(toy(2), tokenizer, test_loader, **kwargs)[1].epochs == epochs_for(24, 8)
    with pytest.raises(ValueError, match="epochs"):
        fine_tune_on(toy(), tokenizer, test_loader, epochs=0, **kwargs)
    with pytest.raises(ValueError, match="empty"):
        fine_tune_on(toy().select([]), tokenizer, test_loader, **kwargs)
