"""Diagrams of the model and of batching: boxes and arrows drawn with matplotlib.

Each function returns its :class:`~matplotlib.figure.Figure` (show it with ``plt.show()``
or save it with ``fig.savefig``) and says which chapter uses it. The shapes written on
the diagrams default to the book's checkpoint (all-MiniLM-L6-v2: 384 features, 12 heads,
a feed-forward layer of 1536, 6 blocks).

>>> import matplotlib.pyplot as plt
>>> fig = multi_head_diagram(seq_len=5)
>>> plt.close(fig)
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

__all__ = ["encoder_block_diagram", "pooler_path_diagram", "multi_head_diagram", "padded_vs_grouped_diagram"]

#: Fill colours, one per kind of box, the same in every diagram.
COLORS = {
    "data": "#eeeeee",
    "attention": "#cfe2f3",
    "norm": "#fff2cc",
    "feed_forward": "#d9ead3",
    "head": "#f4cccc",
    "pooling": "#e6d8f0",
    "real": "#4a86c5",
    "padding": "#d9d9d9",
}


def _canvas(width: float, height: float, figsize: tuple[float, float], ax: Axes | None = None) -> tuple[Figure, Axes]:
    """An axes without frame or ticks whose data coordinates run over [0, width] x [0, height]."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return ax.figure, ax


def _box(ax: Axes, x: float, y: float, width: float, height: float, text: str, kind: str = "data",
         fontsize: float = 9, **style) -> None:
    """A rounded box centred on (x, y) with ``text`` written in it."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.02,rounding_size=0.15", facecolor=COLORS[kind],
                                edgecolor="#444444", linewidth=1.0, **style))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], color: str = "#333333",
           style: str = "-|>") -> None:
    """An arrow from ``start`` to ``end`` (data coordinates)."""
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": style, "color": color, "lw": 1.2,
                                                      "shrinkA": 0, "shrinkB": 0})


def _path(ax: Axes, points: Sequence[tuple[float, float]], color: str = "#333333") -> None:
    """A polyline through ``points`` whose last segment ends in an arrow head."""
    xs, ys = zip(*points[:-1], strict=True)
    ax.plot(xs, ys, color=color, lw=1.2, solid_joinstyle="round")
    _arrow(ax, points[-2], points[-1], color=color)


def encoder_block_diagram(d_model: int = 384, d_ff: int = 1536, heads: int = 12, layers: int = 6) -> Figure:
    """One BERT encoder block, post-LN as in BERT: attention, add & LayerNorm, feed-forward, add & LayerNorm.

    Both residual paths are drawn: the block's input goes around the attention to the
    first addition, and the first LayerNorm's output goes around the feed-forward layer
    to the second. Used in book/encoder.ipynb.
    """
    fig, ax = _canvas(10, 12.4, (6.4, 8.0))
    shape = f"[batch, seq, {d_model}]"
    x, width = 5.2, 5.6
    _box(ax, x, 0.7, width, 0.8, f"token vectors from the block below\n{shape}")
    _box(ax, x, 3.0, width, 1.0, f"multi-head self-attention\n({heads} heads of {d_model // heads} features)",
         "attention")
    _box(ax, x, 4.9, width, 0.8, "add & LayerNorm\ny = LayerNorm(x + attention(x))", "norm")
    _box(ax, x, 7.0, width, 1.0, f"feed-forward, on each token alone\nLinear {d_model}→{d_ff}, GELU, "
         f"Linear {d_ff}→{d_model}", "feed_forward")
    _box(ax, x, 8.9, width, 0.8, "add & LayerNorm\nLayerNorm(y + feed_forward(y))", "norm")
    _box(ax, x, 11.3, width, 0.8, f"to the next block (this one is repeated {layers} times)\n{shape}")
    for low, high in [(1.1, 2.5), (3.5, 4.5), (5.3, 6.5), (7.5, 8.5), (9.3, 10.9)]:
        _arrow(ax, (x, low), (x, high))
    residual = "#c0504d"
    left = x - width / 2
    _path(ax, [(x, 1.7), (1.4, 1.7), (1.4, 4.9), (left, 4.9)], color=residual)
    _path(ax, [(x, 5.9), (1.4, 5.9), (1.4, 8.9), (left, 8.9)], color=residual)
    for low, high, name in [(1.7, 4.9, "x"), (5.9, 8.9, "y")]:
        ax.plot([x], [low], "o", color=residual, ms=4)
        ax.text(1.15, (low + high) / 2, f"residual: {name}", rotation=90, ha="center", va="center",
                fontsize=8, color=residual)
    ax.add_patch(Rectangle((0.6, 1.4), 8.9, 8.2, fill=False, linestyle="--", edgecolor="#888888"))
    ax.text(9.4, 9.75, "one encoder block", ha="right", va="bottom", fontsize=9, color="#555555")
    ax.set_title(f"A BERT encoder block (post-LN): every arrow carries {shape}", fontsize=10)
    return fig


def pooler_path_diagram(num_labels: int = 2, d_model: int = 384, tokens: Sequence[str] | None = None) -> Figure:
    """From the encoder's token vectors to the classification head, two ways side by side.

    Left, BERT's own path (``BertForSequenceClassification``): the ``[CLS]`` vector goes
    through the pooler (dense + tanh) to a linear head. Right, mean pooling: the average of
    the real tokens' vectors (``attention_mask`` = 1; padding left out) goes to the head,
    the pooling sentence-transformers checkpoints such as all-MiniLM-L6-v2 are trained with.
    Used in book/walkthrough.ipynb.
    """
    tokens = list(tokens or ["[CLS]", "a", "dull", "film", ".", "[SEP]", "[PAD]", "[PAD]"])
    if not tokens or tokens[0] != "[CLS]":
        raise ValueError(f"tokens must start with [CLS], got {tokens[:1]}")
    mask = [0 if token == "[PAD]" else 1 for token in tokens]
    fig, axes = plt.subplots(1, 2, figsize=(11, 6.2))
    n = len(tokens)
    xs = [1 + 8 * i / max(n - 1, 1) for i in range(n)]
    for ax, title in zip(axes, ["BERT's pooler: [CLS] → dense + tanh → head",
                                "mean pooling over the real tokens → head"], strict=True):
        _canvas(10, 10.4, (5.5, 6.2), ax)
        ax.set_title(title, fontsize=10)
        for x, token, keep in zip(xs, tokens, mask, strict=True):
            ax.text(x, 0.3, token, ha="center", va="center", fontsize=8, rotation=45 if len(token) > 4 else 0)
            ax.text(x, 1.0, str(keep), ha="center", va="center", fontsize=8, color="#555555")
            _arrow(ax, (x, 1.3), (x, 1.9))
            ax.add_patch(Rectangle((x - 0.3, 3.0), 0.6, 1.0, facecolor=COLORS["real" if keep else "padding"],
                                   hatch="" if keep else "///", edgecolor="#444444"))
        ax.text(0.1, 1.0, "mask", ha="right", va="center", fontsize=8, color="#555555")
        _box(ax, 5, 2.4, 9.2, 0.7, "BERT encoder (6 blocks)", "attention")
        ax.text(9.7, 3.5, f"token\nvectors\n{d_model} each", ha="left", va="center", fontsize=7.5)
        _box(ax, 5, 7.6, 6.0, 0.7, f"dropout + linear head  {d_model} → {num_labels}", "head")
        _box(ax, 5, 9.2, 4.0, 0.6, f"logits [batch, {num_labels}]")
        _arrow(ax, (5, 7.95), (5, 8.9))
    left, right = axes
    _arrow(left, (xs[0], 4.0), (xs[0], 5.6))
    _box(left, 4.0, 6.0, 6.0, 0.8, f"pooler: dense {d_model}→{d_model} + tanh\n"
         "(BERT trained it for next-sentence prediction)", "pooling", fontsize=8.5)
    _arrow(left, (4.0, 6.4), (4.0, 7.25))
    left.text(5.5, 4.5, "only the [CLS] vector is used", ha="left", va="center", fontsize=8, color="#555555")
    for x, keep in zip(xs, mask, strict=True):
        if keep:
            _arrow(right, (x, 4.0), (5 + (x - 5) * 0.3, 5.6))
        else:
            right.text(x, 4.5, "×", ha="center", va="center", fontsize=14, color="#c0504d")
    _box(right, 5, 6.0, 7.4, 0.8, "mean over the real tokens:  Σ mask·h / Σ mask\n(no weights to learn)",
         "pooling", fontsize=8.5)
    _arrow(right, (5, 6.4), (5, 7.25))
    right.text(xs[-1], 5.0, "padding\nleft out", ha="center", va="center", fontsize=8, color="#c0504d")
    fig.tight_layout()
    return fig


def multi_head_diagram(seq_len: int | None = None, d_model: int = 384, heads: int = 12) -> Figure:
    """Multi-head self-attention as reshapes: project, split into heads, attend, merge, project.

    Every step is labelled with its tensor shape, for example
    ``[batch, seq, 384] → [batch, 12, seq, 32] → … → concat → output projection``;
    ``seq_len`` writes a number instead of ``seq``. Beside the steps, one token's vector
    is drawn cut into the heads' slices. Used in book/attention.ipynb.
    """
    if heads < 1 or d_model % heads:
        raise ValueError(f"d_model ({d_model}) must be a multiple of the number of heads ({heads})")
    if seq_len is not None and seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    seq = "seq" if seq_len is None else str(seq_len)
    d_head = d_model // heads
    fig, ax = _canvas(15, 14.4, (10, 8.6))
    x, width = 4.6, 8.4
    steps = [
        (13.6, f"token vectors X\n[batch, {seq}, {d_model}]", "data"),
        (11.6, None, "attention"),
        (9.4, f"split into {heads} heads: view [batch, {seq}, {heads}, {d_head}], swap axes 1 and 2\n"
              f"Q, K, V: [batch, {heads}, {seq}, {d_head}] each", "attention"),
        (7.2, f"scaled dot-product attention, all {heads} heads at once\nweights softmax(Q Kᵀ / √{d_head}): "
              f"[batch, {heads}, {seq}, {seq}]\nweights × V: [batch, {heads}, {seq}, {d_head}]", "attention"),
        (5.0, f"merge (concat) the heads: swap axes back, view\n[batch, {seq}, {heads}×{d_head} = {d_model}]",
         "attention"),
        (2.8, f"output projection W_O ({d_model}→{d_model}), mixes the heads\n[batch, {seq}, {d_model}]", "head"),
    ]
    for y, text, kind in steps:
        if text is not None:
            _box(ax, x, y, width, 1.5 if text.count("\n") > 1 else 1.2, text, kind, fontsize=9)
    for i, name in enumerate("QKV"):
        _box(ax, x - 2.9 + 2.9 * i, 11.6, 2.6, 1.1, f"{name} = X W_{name}\n[batch, {seq}, {d_model}]", "attention",
             fontsize=8.5)
        _arrow(ax, (x, 13.0), (x - 2.9 + 2.9 * i, 12.15))
        _arrow(ax, (x - 2.9 + 2.9 * i, 11.05), (x, 10.0))
    for high, low in [(8.8, 7.8), (6.6, 5.6), (4.4, 3.4), (2.2, 1.2)]:
        _arrow(ax, (x, high), (x, low))
    ax.text(x, 0.8, f"output [batch, {seq}, {d_model}]", ha="center", va="center", fontsize=9)
    # One token's projected vector, cut into the heads' slices, and the same slices after merging.
    left, bar_width = 9.6, 5.0
    cmap = plt.get_cmap("tab20")
    bars = [(9.4, f"one token's query: {d_model} features"), (5.0, f"merged: the {heads} outputs side by side")]
    for y, label in bars:
        for head in range(heads):
            ax.add_patch(Rectangle((left + bar_width * head / heads, y - 0.3), bar_width / heads, 0.6,
                                   facecolor=cmap(head % 20), edgecolor="white", linewidth=0.6))
        ax.text(left + bar_width / 2, y + 0.55, label, ha="center", va="bottom", fontsize=8.5)
    ax.text(left, 8.85, "head 0", ha="left", va="top", fontsize=8)
    ax.text(left + bar_width, 8.85, f"head {heads - 1}", ha="right", va="top", fontsize=8)
    ax.text(left + bar_width / 2, 8.3, f"each head owns {d_head} consecutive features\nand attends on its own",
            ha="center", va="top", fontsize=8.5)
    ax.set_title(f"Multi-head self-attention: {heads} heads of {d_head} features (d_model = {d_model})", fontsize=11)
    return fig


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    return [list(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size)]


def padded_vs_grouped_diagram(lengths: Sequence[int] | None = None, batch_size: int = 4,
                              max_length: int = 128) -> Figure:
    """The same examples batched three ways, padding hatched, the tokens each way costs in its title.

    Left, every example padded to ``max_length`` (the article's recipe); middle, each batch
    padded to its own longest example (dynamic padding); right, examples sorted by length
    before batching (length-grouped batches), so each batch pads little. ``lengths`` are
    token counts (a short, fixed sample of review lengths by default). Used in
    book/walkthrough.ipynb and book/speed.ipynb.
    """
    lengths = list(lengths if lengths is not None else [23, 41, 12, 30, 57, 18, 9, 35, 26, 15, 48, 21, 33, 11, 28, 19])
    if not lengths:
        raise ValueError("lengths is empty: give the token count of at least one example")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if min(lengths) < 1 or max(lengths) > max_length:
        raise ValueError(f"lengths must lie between 1 and max_length={max_length}, got {min(lengths)}..{max(lengths)}")
    real = sum(lengths)
    layouts = [
        (f"padded to a fixed {max_length}", [(batch, max_length) for batch in _batches(lengths, batch_size)]),
        ("padded per batch", [(batch, max(batch)) for batch in _batches(lengths, batch_size)]),
        ("grouped by length", [(batch, max(batch)) for batch in _batches(sorted(lengths), batch_size)]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.28 * len(lengths) + 2.4), sharex=True, sharey=True,
                             layout="constrained")
    for ax, (name, batches) in zip(axes, layouts, strict=True):
        row, total = 0.0, 0
        for number, (batch, width) in enumerate(batches, start=1):
            top = row
            for length in batch:
                ax.barh(row, length, height=0.8, color=COLORS["real"], edgecolor="white", linewidth=0.5)
                ax.barh(row, width - length, left=length, height=0.8, color=COLORS["padding"], hatch="///",
                        edgecolor="#999999", linewidth=0.5)
                row += 1
            total += width * len(batch)
            ax.text(width + 1, (top + row - 1) / 2, f"batch {number}", va="center", fontsize=8)
            row += 0.6
        ax.set_title(f"{name}\n{total:,} tokens computed, {real:,} real ({real / total:.0%})", fontsize=10)
        ax.set_xlabel("tokens (blue: real, hatched grey: padding)")
        ax.set_ylim(row - 0.4, -0.8)  # first example on top (the y axis is shared)
        ax.set_yticks([])
    axes[0].set_xlim(0, max_length * 1.2)  # one scale for all three: the areas compare
    axes[0].set_ylabel(f"{len(lengths)} examples, batches of {batch_size}")
    return fig
