"""Self-attention from scratch: scaled dot-product attention, masks, and multi-head attention.

Everything here is checked in ``book/attention.ipynb`` against
``torch.nn.functional.scaled_dot_product_attention``, ``torch.nn.MultiheadAttention`` and the
pre-trained checkpoint. Shapes follow one convention: a batch of sequences is
``(batch, length, d_model)``; split into heads it is ``(batch, heads, length, d_head)``.

Masks are **boolean, True where attention is allowed** (a query may look at that key), the
convention of ``torch.nn.functional.scaled_dot_product_attention``. A tokenizer's 0/1
``attention_mask`` becomes one with :func:`padding_mask`; :func:`additive_mask` turns a boolean
mask into the large negative numbers that are added to the scores before the softmax.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "scaled_dot_product_attention",
    "additive_mask",
    "padding_mask",
    "causal_mask",
    "split_heads",
    "merge_heads",
    "MultiHeadSelfAttention",
]


def _check_mask(mask: Tensor | None, scores_shape: torch.Size) -> None:
    """Raise a clear error when ``mask`` is not a boolean tensor broadcastable to the scores."""
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype}; "
            "turn a tokenizer's 0/1 attention_mask into one with padding_mask(attention_mask)"
        )
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores "
            f"of shape {tuple(scores_shape)} (..., queries, keys)"
        ) from None


def additive_mask(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """A boolean mask as numbers added to the scores: 0 where allowed, the dtype's minimum where not.

    Adding a very large negative number before the softmax gives that key a weight of
    ``exp(-huge) = 0``. The most negative finite number (rather than ``-inf``) keeps a row in
    which every key is masked finite: its softmax is uniform instead of NaN.

    >>> additive_mask(torch.tensor([True, False]))
    tensor([ 0.0000e+00, -3.4028e+38])
    """
    _check_mask(mask, mask.shape)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def scaled_dot_product_attention(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """softmax(Q Kᵀ / √d) V, returning ``(output, weights)``.

    ``query`` is ``(..., n_queries, d)``, ``key`` is ``(..., n_keys, d)``, ``value`` is
    ``(..., n_keys, d_v)``; ``mask`` (boolean, True = may attend) broadcasts to
    ``(..., n_queries, n_keys)``. The weights of each query sum to one over the keys.

    >>> q = k = v = torch.randn(2, 5, 8)
    >>> out, w = scaled_dot_product_attention(q, k, v)
    >>> out.shape, w.shape
    (torch.Size([2, 5, 8]), torch.Size([2, 5, 5]))
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor) or t.dim() < 2:
            raise ValueError(f"{name} must be a tensor with at least 2 dimensions (..., length, features)")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key must have the same feature size, got {query.shape[-1]} and {key.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"key and value must have the same length, got {key.shape[-2]} and {value.shape[-2]}")
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    _check_mask(mask, scores.shape)
    if mask is not None:
        scores = scores + additive_mask(mask, scores.dtype)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def padding_mask(attention_mask: Tensor) -> Tensor:
    """A tokenizer's ``attention_mask`` (batch, length) of 1s and 0s as a boolean (batch, 1, 1, length) mask.

    The two singleton dimensions broadcast over heads and queries: every query may look at
    every real token and at no padding token.

    >>> padding_mask(torch.tensor([[1, 1, 0]])).shape
    torch.Size([1, 1, 1, 3])
    """
    if not isinstance(attention_mask, Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise TypeError(
            f"attention_mask must hold integers or booleans (1 = token, 0 = padding), got {attention_mask.dtype}"
        )
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (batch, length), got shape {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]


def causal_mask(length: int, device: torch.device | str | None = None) -> Tensor:
    """The (length, length) boolean mask of a decoder: position i may attend to positions 0..i.

    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """Reshape (batch, length, d_model) into (batch, heads, length, d_model // heads).

    >>> split_heads(torch.zeros(2, 5, 12), num_heads=3).shape
    torch.Size([2, 3, 5, 4])
    """
    if x.dim() != 3:
        raise ValueError(f"expected (batch, length, d_model), got shape {tuple(x.shape)}")
    if num_heads < 1 or x.shape[-1] % num_heads:
        raise ValueError(f"d_model={x.shape[-1]} is not divisible into num_heads={num_heads} heads")
    batch, length, d_model = x.shape
    return x.view(batch, length, num_heads, d_model // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """Undo :func:`split_heads`: (batch, heads, length, d_head) back to (batch, length, heads * d_head).

    >>> x = torch.randn(2, 5, 12)
    >>> torch.equal(merge_heads(split_heads(x, 3)), x)
    True
    """
    if x.dim() != 4:
        raise ValueError(f"expected (batch, heads, length, d_head), got shape {tuple(x.shape)}")
    batch, heads, length, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * d_head)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention: project to Q, K, V, split into heads, attend, merge, project back.

    The four projections are named like BERT's (``query``, ``key``, ``value``, ``output``) so
    that a pre-trained layer's weights copy over one to one. ``forward`` returns the output
    and keeps the last attention weights, (batch, heads, length, length), in ``self.weights``.

    >>> attention = MultiHeadSelfAttention(d_model=12, num_heads=3)
    >>> attention(torch.randn(2, 5, 12)).shape
    torch.Size([2, 5, 12])
    """

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        if d_model < 1 or num_heads < 1 or d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be a positive multiple of num_heads={num_heads}")
        self.num_heads = num_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)
        self.weights: Tensor | None = None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Attend within each sequence of ``x`` (batch, length, d_model); ``mask`` is boolean."""
        if x.dim() != 3 or x.shape[-1] != self.query.in_features:
            raise ValueError(f"expected (batch, length, {self.query.in_features}), got shape {tuple(x.shape)}")
        q, k, v = (split_heads(proj(x), self.num_heads) for proj in (self.query, self.key, self.value))
        attended, self.weights = scaled_dot_product_attention(q, k, v, mask)
        return self.output(merge_heads(attended))
