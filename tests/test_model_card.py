"""save_model writes a model card (README.md with YAML front matter) when given one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard as HubModelCard
from test_triage import tiny_classifier
from transformers import BertConfig

from companion.model_card import CARD_FILE, ModelCard, render_card, sentiment_card, write_model_card
from companion.models import MeanPoolingClassifier, load_saved, save_model

SPLITS = {"train": 8000, "validation": 1022, "test": 1066}
METRICS = {"loss": 0.4321, "accuracy": 0.8123, "precision": 0.8, "recall": 0.82, "f1": 0.81}


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_save_model_writes_the_card_beside_the_weights(tmp_path: Path, tokenizer) -> None:
    model = tiny_classifier(["negative", "positive"], winner=1)
    card = sentiment_card(SPLITS, METRICS, training={"learning rate": 2e-4, "epochs run": 1})
    folder = save_model(model, tokenizer, tmp_path / "model", card=card)
    text = (folder / CARD_FILE).read_text()
    meta = front_matter(text)
    assert meta["license"] == "apache-2.0" and meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["pipeline_tag"] == "text-classification" and meta["language"] == "en"
    assert meta["metrics"] == ["accuracy", "f1", "precision", "recall"]
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Base checkpoint", "## Data and split", "## Metrics", "## Intended use", "## Limits",
                        "## How to load", "## References"]
    for expected in ("| train | 8,000 |", "| test | 1,066 |", "| accuracy | 0.8123 |", "(1,066 examples)",
                     "0 = `negative`, 1 = `positive`", "BERT's pooler output", "English only", "Two classes only",
                     "Short texts", "load_saved(", "Pang and Lee", "learning rate 0.0002"):
        assert expected in text, expected
    assert load_saved(folder)[0].config.id2label == {0: "negative", 1: "positive"}  # the card changes nothing else


def test_the_hub_reads_the_card_and_its_results(tmp_path: Path) -> None:
    """huggingface_hub parses the front matter, including the test results of model-index (no network)."""
    path = write_model_card(tmp_path, sentiment_card(SPLITS, METRICS))
    card = HubModelCard.load(path)
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and card.data.license == "apache-2.0"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"accuracy": 0.8123, "f1": 0.81, "precision": 0.8, "recall": 0.82}
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}


def test_without_a_card_save_model_writes_what_it_always_wrote(tmp_path: Path, tokenizer) -> None:
    folder = save_model(tiny_classifier(["a", "b"], winner=0), tokenizer, tmp_path / "plain")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                         "tokenizer_config.json"]


def test_the_mean_pooling_head_and_another_base_are_described(tmp_path: Path) -> None:
    config = BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    model = MeanPoolingClassifier(config)
    card = ModelCard(base=str(tmp_path), task="a toy task")  # a local folder: no hub name, licence unknown
    text = write_model_card(tmp_path, card, model).read_text()
    meta = front_matter(text)
    assert "base_model" not in meta and meta["license"] == "other" and "metrics" not in meta
    assert "mean of the token vectors" in text and "import companion.models" in text
    assert "Not measured for this card." in text and "Not stated." in text
    hub = ModelCard(base="bert-base-uncased", task="a toy task", license="mit")
    assert front_matter(render_card(hub))["base_model"] == "bert-base-uncased"
    assert front_matter(render_card(hub))["license"] == "mit"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base": "", "task": "t"}, "base must be a non-empty string"),
        ({"base": "minilm", "task": " "}, "task must be a non-empty string"),
        ({"base": "minilm", "task": "t", "splits": {"train": -1}}, r"splits\['train'\] must be a number"),
        ({"base": "minilm", "task": "t", "metrics": {"accuracy": "high"}}, r"metrics\['accuracy'\] must be"),
        ({"base": "minilm", "task": "t", "metrics": {"accuracy": float("nan")}}, r"metrics\['accuracy'\] must be"),
    ],
)
def test_bad_card_fields_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelCard(**kwargs)


def test_a_card_needs_a_folder_and_a_model_card(tmp_path: Path, tokenizer) -> None:
    with pytest.raises(ValueError, match="existing folder"):
        write_model_card(tmp_path / "missing", sentiment_card(SPLITS, METRICS))
    with pytest.raises(TypeError, match="card must be a ModelCard or None, got dict"):
        save_model(tiny_classifier(["a", "b"], winner=0), tokenizer, tmp_path / "m", card={"base": "minilm"})
    assert not (tmp_path / "m").exists()  # refused before anything is written
