"""Tests of companion.attention and companion.widgets (book/attention.ipynb)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from companion.attention import (  # noqa: E402
    MultiHeadSelfAttention,
    additive_mask,
    causal_mask,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    split_heads,
)
from companion.widgets import attention_explorer, attention_grid, attention_maps, draw_attention  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def qkv(*shape: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.randn(*shape), torch.randn(*shape), torch.randn(*shape)


@pytest.mark.parametrize("shape", [(2, 3, 7, 16), (1, 1, 1, 4), (1, 5, 8), (3, 1, 2)])
def test_matches_torch_sdpa(shape: tuple[int, ...]) -> None:
    q, k, v = qkv(*shape)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(shape[:-1]), atol=1e-6)


def test_matches_torch_sdpa_with_boolean_masks() -> None:
    q, k, v = qkv(2, 4, 6, 8)
    for mask in (causal_mask(6), padding_mask(torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]]))):
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6)


def test_all_but_one_key_masked_copies_that_value() -> None:
    q, k, v = qkv(1, 5, 8)
    mask = torch.zeros(5, dtype=torch.bool)
    mask[3] = True
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(weights[..., 3], torch.ones(1, 5))
    assert torch.allclose(out, v[:, 3:4].expand(1, 5, 8), atol=1e-6)


def test_fully_masked_row_stays_finite() -> None:
    q, k, v = qkv(1, 3, 4)
    out, weights = scaled_dot_product_attention(q, k, v, torch.zeros(3, dtype=torch.bool))
    assert torch.isfinite(out).all()
    assert torch.allclose(weights, torch.full((1, 3, 3), 1 / 3))


def test_scaling_by_sqrt_d() -> None:
    q, k = torch.randn(1, 2, 16), torch.randn(1, 3, 16)
    _, weights = scaled_dot_product_attention(q, k, torch.randn(1, 3, 2))
    assert torch.allclose(weights, torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1))


def test_bad_shapes_and_mask_dtypes() -> None:
    q, k, v = qkv(2, 5, 8)
    with pytest.raises(ValueError, match="same feature size"):
        scaled_dot_product_attention(q, torch.randn(2, 5, 4), v)
    with pytest.raises(ValueError, match="same length"):
        scaled_dot_product_attention(q, k, torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 5))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        scaled_dot_product_attention(torch.randn(8), k, v)


def test_additive_mask() -> None:
    added = additive_mask(torch.tensor([True, False]))
    assert added[0] == 0 and added[1] == torch.finfo(torch.float32).min
    with pytest.raises(TypeError, match="boolean"):
        additive_mask(torch.tensor([1, 0]))


def test_padding_mask() -> None:
    mask = padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert padding_mask(torch.tensor([[True]])).shape == (1, 1, 1, 1)
    with pytest.raises(TypeError, match="integers or booleans"):
        padding_mask(torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\(batch, length\)"):
        padding_mask(torch.tensor([1, 0]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        padding_mask([[1, 0]])


def test_causal_mask() -> None:
    assert torch.equal(causal_mask(1), torch.ones(1, 1, dtype=torch.bool))
    assert causal_mask(4).sum() == 10 and not causal_mask(4)[0, 1]
    with pytest.raises(ValueError, match="positive integer"):
        causal_mask(0)


def test_split_and_merge_heads() -> None:
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[:, 1], x[..., 4:8])
    assert torch.equal(merge_heads(heads), x)
    assert split_heads(torch.randn(1, 1, 4), 4).shape == (1, 4, 1, 1)
    with pytest.raises(ValueError, match="not divisible"):
        split_heads(x, 5)
    with pytest.raises(ValueError, match="batch, length, d_model"):
        split_heads(torch.randn(5, 12), 3)
    with pytest.raises(ValueError, match="batch, heads, length, d_head"):
        merge_heads(x)


def _copy_into_torch_mha(attention: MultiHeadSelfAttention, d_model: int, heads: int) -> torch.nn.MultiheadAttention:
    mha = torch.nn.MultiheadAttention(d_model, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([attention.query.weight, attention.key.weight, attention.value.weight]))
        mha.in_proj_bias.copy_(torch.cat([attention.query.bias, attention.key.bias, attention.value.bias]))
        mha.out_proj.weight.copy_(attention.output.weight)
        mha.out_proj.bias.copy_(attention.output.bias)
    return mha.eval()


@pytest.mark.parametrize("batch,length", [(2, 6), (1, 1), (1, 4)])
def test_multi_head_matches_torch(batch: int, length: int) -> None:
    attention = MultiHeadSelfAttention(16, 4).eval()
    mha = _copy_into_torch_mha(attention, 16, 4)
    x = torch.randn(batch, length, 16)
    with torch.no_grad():
        expected, _ = mha(x, x, x, need_weights=False)
        assert torch.allclose(attention(x), expected, atol=1e-6)
    assert attention.weights.shape == (batch, 4, length, length)


def test_multi_head_padding_and_permutation() -> None:
    attention = MultiHeadSelfAttention(8, 2).eval()
    x = torch.randn(1, 5, 8)
    padded = torch.cat([x, torch.randn(1, 3, 8)], dim=1)
    mask = padding_mask(torch.tensor([[1] * 5 + [0] * 3]))
    perm = torch.randperm(5)
    with torch.no_grad():
        assert torch.allclose(attention(padded, mask)[:, :5], attention(x), atol=1e-6)
        assert torch.allclose(attention(x[:, perm]), attention(x)[:, perm], atol=1e-6)


def test_multi_head_bad_input() -> None:
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MultiHeadSelfAttention(10, 3)
    with pytest.raises(ValueError, match=r"expected \(batch, length, 8\)"):
        MultiHeadSelfAttention(8, 2)(torch.randn(1, 3, 6))


def test_drawing() -> None:
    fig, ax = plt.subplots()
    draw_attention(ax, torch.eye(3), ["a", "b", "c"], "title")
    with pytest.raises(ValueError, match="for 2 tokens"):
        draw_attention(ax, torch.eye(3), ["a", "b"])
    plt.close(fig)
    fig = attention_grid(torch.rand(5, 3, 3), ["a", "b", "c"], ncols=2, title="layer")
    assert len(fig.axes) == 6
    plt.close(fig)
    with pytest.raises(ValueError, match="heads, tokens, tokens"):
        attention_grid(torch.rand(3, 3), ["a", "b", "c"])


@pytest.fixture(scope="module")
def eager_model():
    from companion.models import load_encoder, load_tokenizer

    return load_encoder("minilm", attn_implementation="eager"), load_tokenizer("minilm")


def test_attention_maps_and_explorer(eager_model) -> None:
    model, tokenizer = eager_model
    tokens, maps = attention_maps(model, tokenizer, "A short test.")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert maps.shape == (6, 12, len(tokens), len(tokens))
    assert torch.allclose(maps.sum(-1), torch.ones(6, 12, len(tokens)), atol=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        attention_maps(model, tokenizer, " ")
    explorer = attention_explorer(model, tokenizer, ["A short test.", "Another one."])
    assert [w.description for w in explorer.children[:3]] == ["sentence", "layer", "head"]
    plt.close("all")
    with pytest.raises(ValueError, match="at least one sentence"):
        attention_explorer(model, tokenizer, [])


def test_padding_gives_same_cls_in_real_model(eager_model) -> None:
    model, tokenizer = eager_model
    sentences = ["A much longer sentence than the other one.", "Short."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        padded = model(**batch).last_hidden_state[:, 0]
        alone = torch.cat([model(**tokenizer(s, return_tensors="pt")).last_hidden_state[:, 0] for s in sentences])
        unmasked = model(input_ids=batch["input_ids"]).last_hidden_state[:, 0]
    assert torch.allclose(padded, alone, atol=1e-5)
    assert not torch.allclose(unmasked[1], alone[1], atol=1e-2)
