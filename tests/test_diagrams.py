"""companion.diagrams: each diagram draws, carries the labels it promises, and rejects bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from companion.diagrams import (  # noqa: E402
    encoder_block_diagram,
    multi_head_diagram,
    padded_vs_grouped_diagram,
    pooler_path_diagram,
)


def texts(fig: Figure) -> str:
    """Every text of the figure (boxes, annotations, titles, axis labels), joined by newlines."""
    found = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    return "\n".join(t for t in found if t)


def render(fig: Figure) -> None:
    """Draw the figure on the Agg canvas (what savefig does) and close it."""
    fig.canvas.draw()
    plt.close(fig)


def test_encoder_block_has_both_sublayers_both_norms_and_both_residuals() -> None:
    fig = encoder_block_diagram()
    found = texts(fig)
    assert isinstance(fig, Figure)
    assert "multi-head self-attention" in found and "feed-forward" in found
    assert found.count("add & LayerNorm") == 2
    assert "residual: x" in found and "residual: y" in found
    assert "[batch, seq, 384]" in found and "Linear 384→1536" in found and "post-LN" in found
    render(fig)


def test_encoder_block_writes_the_sizes_it_is_given() -> None:
    found = texts(encoder_block_diagram(d_model=768, d_ff=3072, heads=12, layers=12))
    assert "[batch, seq, 768]" in found and "Linear 768→3072" in found and "12 heads of 64" in found
    plt.close("all")


def test_pooler_path_shows_cls_pooler_and_masked_mean_to_the_head() -> None:
    fig = pooler_path_diagram(num_labels=6)
    found = texts(fig)
    assert len(fig.axes) == 2
    assert "pooler: dense 384→384 + tanh" in found
    assert "mean over the real tokens" in found and "padding\nleft out" in found
    assert found.count("linear head  384 → 6") == 2 and "logits [batch, 6]" in found
    assert found.count("[PAD]") == 4  # two padding tokens in each panel
    render(fig)


def test_pooler_path_needs_cls_first() -> None:
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        pooler_path_diagram(tokens=["hello", "[SEP]"])


def test_multi_head_labels_every_shape_from_split_to_merge() -> None:
    fig = multi_head_diagram(seq_len=5)
    found = texts(fig)
    for shape in ["[batch, 5, 384]", "[batch, 12, 5, 32]", "[batch, 12, 5, 5]", "12×32 = 384"]:
        assert shape in found, shape
    assert "split into 12 heads" in found and "merge (concat)" in found and "output projection W_O" in found
    assert "head 0" in found and "head 11" in found
    render(fig)


def test_multi_head_default_sequence_is_symbolic_and_sizes_are_checked() -> None:
    found = texts(multi_head_diagram(d_model=64, heads=4))
    assert "[batch, 4, seq, 16]" in found and "√16" in found
    plt.close("all")
    with pytest.raises(ValueError, match="multiple"):
        multi_head_diagram(d_model=100, heads=12)
    with pytest.raises(ValueError, match="seq_len"):
        multi_head_diagram(seq_len=0)


def test_padded_vs_grouped_counts_tokens_in_the_titles() -> None:
    lengths = [5, 1, 4, 2]
    fig = padded_vs_grouped_diagram(lengths, batch_size=2, max_length=8)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 3
    # fixed: 4 x 8 = 32; per batch: 2 x 5 + 2 x 4 = 18; grouped [1, 2], [4, 5]: 2 x 2 + 2 x 5 = 14; real = 12
    assert "32 tokens computed, 12 real (38%)" in titles[0]
    assert "18 tokens computed, 12 real (67%)" in titles[1]
    assert "14 tokens computed, 12 real (86%)" in titles[2]
    hatched = [p for ax in fig.axes for p in ax.patches if p.get_hatch() and p.get_width() > 0]
    assert len(hatched) == 4 + 2 + 2  # padding drawn wherever an example is shorter than its batch
    assert "batch 2" in texts(fig)
    render(fig)


def test_padded_vs_grouped_default_draws_and_bad_input_is_refused() -> None:
    render(padded_vs_grouped_diagram())
    with pytest.raises(ValueError, match="empty"):
        padded_vs_grouped_diagram([])
    with pytest.raises(ValueError, match="batch_size"):
        padded_vs_grouped_diagram([3, 4], batch_size=0)
    with pytest.raises(ValueError, match="max_length"):
        padded_vs_grouped_diagram([3, 400], max_length=128)
