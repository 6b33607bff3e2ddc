"""Interactive views: attention maps and an explorer; a text box that classifies what you type.

Used in book/attention.ipynb and book/walkthrough.ipynb. Widgets need a live Jupyter
kernel; the rendered book shows a static figure or a printed result beside each one.
"""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor, nn

__all__ = ["attention_maps", "draw_attention", "attention_grid", "attention_explorer", "text_box",
           "text_classifier_box"]


def attention_maps(model: nn.Module, tokenizer, sentence: str) -> tuple[list[str], Tensor]:
    """The tokens of ``sentence`` and the model's attention weights, (layers, heads, tokens, tokens).

    The model must return attentions: load it with ``attn_implementation="eager"``.
    A text longer than the model's positions (512 for BERT) is cut to fit, with a warning.
    Used in book/attention.ipynb.
    """
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be a string, got {type(sentence).__name__} {sentence!r}")
    if not sentence.strip():
        raise ValueError("sentence must be a non-empty string")
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    batch = tokenizer(sentence, return_tensors="pt")
    if limit is not None and batch["input_ids"].shape[1] > limit:
        warnings.warn(
            f"the text has more tokens than the model's {limit} positions; showing attention over its first "
            f"{limit} tokens only",
            stacklevel=2,
        )
        batch = tokenizer(sentence, return_tensors="pt", truncation=True, max_length=limit)
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise ValueError('the model returned no attention weights; load it with attn_implementation="eager"')
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    return tokens, torch.stack([a[0] for a in out.attentions])


def draw_attention(ax: Axes, weights: Tensor, tokens: list[str], title: str | None = None) -> None:
    """One attention map on ``ax``: queries down the rows, keys along the columns, tokens as labels.

    >>> fig, ax = plt.subplots(); draw_attention(ax, torch.eye(2), ["a", "b"]); plt.close(fig)
    """
    if weights.dim() != 2 or weights.shape != (len(tokens), len(tokens)):
        raise ValueError(
            f"weights must be ({len(tokens)}, {len(tokens)}) for {len(tokens)} tokens, got {tuple(weights.shape)}"
        )
    ax.imshow(weights.detach().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title, fontsize=9)


def attention_grid(weights: Tensor, tokens: list[str], ncols: int = 4, title: str | None = None) -> Figure:
    """All heads of one layer, (heads, tokens, tokens), as a grid of small heatmaps; returns the figure.

    >>> fig = attention_grid(torch.rand(2, 3, 3), ["a", "b", "c"], ncols=2); plt.close(fig)
    """
    if weights.dim() != 3:
        raise ValueError(f"weights must be (heads, tokens, tokens), got shape {tuple(weights.shape)}")
    heads = weights.shape[0]
    nrows = -(-heads // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(8, 2.2 * nrows), squeeze=False, layout="constrained")
    for head, ax in enumerate(axes.flat):
        if head >= heads:
            ax.axis("off")
            continue
        ax.imshow(weights[head].detach().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"head {head}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks(range(len(tokens)), tokens, fontsize=6)
        if head // ncols == nrows - 1:
            ax.set_xlabel("key", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def attention_explorer(model: nn.Module, tokenizer, sentences: list[str]):
    """An ipywidgets explorer: pick a sentence, a layer and a head, see that head's attention map.

    Returns the ``ipywidgets.interactive`` object (display it as a cell's last expression).
    Used in book/attention.ipynb.
    """
    import ipywidgets as widgets

    if not sentences:
        raise ValueError("give at least one sentence to explore")
    cache: dict[str, tuple[list[str], Tensor]] = {}

    def show(sentence: str, layer: int, head: int) -> None:
        if not sentence.strip():
            print("type a sentence")
            return
        if sentence not in cache:
            cache[sentence] = attention_maps(model, tokenizer, sentence)
        tokens, maps = cache[sentence]
        fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
        draw_attention(ax, maps[layer, head], tokens, f"layer {layer}, head {head}")
        plt.show()

    config = model.config
    return widgets.interactive(
        show,
        sentence=widgets.Combobox(
            value=sentences[0], options=list(sentences), description="sentence", continuous_update=False
        ),
        layer=widgets.IntSlider(0, 0, config.num_hidden_layers - 1, description="layer"),
        head=widgets.IntSlider(0, 0, config.num_attention_heads - 1, description="head"),
    )


def format_prediction(prediction: dict) -> str:
    """One line for a ``text-classification`` pipeline result: label and probability.

    >>> format_prediction({"label": "positive", "score": 0.9731})
    'positive (p = 0.97)'
    """
    return f"{prediction['label']} (p = {prediction['score']:.2f})"


def text_box(respond, example: str, description: str = "text"):
    """A text box that shows ``respond(text)`` (a one-line string) for whatever is typed.

    Prints ``example -> respond(example)`` first, so a rendered page or a kernel-less run
    shows something; then returns the widget (display it as a cell's last expression).
    Used by :func:`text_classifier_box` and :func:`companion.triage.triage_box`.
    """
    import ipywidgets as widgets

    if not isinstance(example, str):
        raise TypeError(f"the example must be a string, got {type(example).__name__} {example!r}")
    if not example.strip():
        raise ValueError("give a non-empty example sentence")
    print(f"{example!r} -> {respond(example)}")
    box = widgets.Text(value=example, description=description, layout=widgets.Layout(width="90%"),
                       continuous_update=False)
    answer = widgets.Label()

    def update(change: dict | None = None) -> None:
        text = box.value.strip()
        answer.value = respond(text) if text else "type a sentence"

    box.observe(update, names="value")
    update()
    return widgets.VBox([box, answer])


def text_classifier_box(classify, example: str):
    """A text box that runs ``classify`` (a ``text-classification`` pipeline) on what is typed.

    Prints the static result for ``example`` first (see :func:`text_box`), then returns
    the widget. Used in book/walkthrough.ipynb.
    """
    return text_box(lambda text: format_prediction(classify(text)[0]), example, "review")
