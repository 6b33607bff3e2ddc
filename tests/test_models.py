"""companion.models: the default checkpoint, label names, freezing, saving and reloading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from companion.models import (
    DEFAULT_CHECKPOINT,
    ModelError,
    checkpoint_path,
    count_parameters,
    freeze,
    load_classifier,
    load_saved,
    save_model,
)


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return load_classifier(DEFAULT_CHECKPOINT).eval()


def test_default_name_resolves_to_the_installed_folder() -> None:
    folder = Path(checkpoint_path())
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert checkpoint_path("some/local-or-hub-name") == "some/local-or-hub-name"


def test_tokenizer_is_bert_uncased_wordpiece(tokenizer) -> None:
    assert tokenizer.tokenize("The Cat is CUTE") == ["the", "cat", "is", "cute"]
    assert tokenizer("hi")["input_ids"][0] == tokenizer.cls_token_id == 101


def test_classifier_carries_label_names(classifier) -> None:
    assert classifier.config.id2label == {0: "negative", 1: "positive"}
    assert classifier.config.label2id == {"negative": 0, "positive": 1}
    assert classifier.config.num_labels == 2


def test_unknown_local_path_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="'minilm'"):
        load_classifier("/nonexistent/checkpoint")


def test_offline_hub_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="hub.*'minilm'"):
        load_classifier("no-such-user/no-such-model")


@pytest.mark.parametrize("labels", [["only"], ["a", "a"]])
def test_bad_label_lists_are_refused(labels) -> None:
    with pytest.raises(ValueError, match="distinct"):
        load_classifier(labels=labels)


def test_freezing_strategies_count_parameters(classifier) -> None:
    total = count_parameters(classifier)[1]
    head = sum(p.numel() for p in classifier.classifier.parameters())
    assert head == 384 * 2 + 2
    assert freeze(classifier, "all") == (total, total)
    assert freeze(classifier, "head") == (head, total)
    layer = sum(p.numel() for p in classifier.bert.encoder.layer[-1].parameters())
    pooler = sum(p.numel() for p in classifier.bert.pooler.parameters())
    assert freeze(classifier, "top", top_k=2) == (head + pooler + 2 * layer, total)
    assert not any(p.requires_grad for p in classifier.bert.embeddings.parameters())
    freeze(classifier, "all")


def test_freezing_bad_input(classifier) -> None:
    with pytest.raises(ValueError, match="strategy"):
        freeze(classifier, "bottom")
    with pytest.raises(ValueError, match="top_k"):
        freeze(classifier, "top", top_k=7)


def test_save_and_reload_gives_identical_logits(classifier, tokenizer, tmp_path: Path) -> None:
    batch = tokenizer(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = classifier(**batch).logits
    folder = save_model(classifier, tokenizer, tmp_path / "model")
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pkl"))
    model, reloaded_tokenizer = load_saved(folder)
    with torch.no_grad():
        again = reloaded_tokenizer(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
        after = model(**again).logits
    assert torch.equal(before, after)
    assert model.config.id2label[1] == "positive"


def test_load_saved_needs_a_saved_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="config.json"):
        load_saved(tmp_path)


def test_checkpoint_folder_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BOOK_CHECKPOINT_DIR", checkpoint_path())
    assert checkpoint_path() == checkpoint_path("minilm")
    monkeypatch.setenv("BOOK_CHECKPOINT_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="no config.json"):
        checkpoint_path()
