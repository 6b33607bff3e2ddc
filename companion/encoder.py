"""The BERT encoder from scratch: positions, layer normalization, GELU, encoder layers, the stack.

``book/encoder.ipynb`` builds these pieces one by one, checks each against PyTorch
(``nn.LayerNorm``, ``nn.functional.gelu``), then loads the pre-trained checkpoint's weights
into them (:func:`encoder_layer_from_bert`, :func:`encoder_from_bert`) and reproduces the
checkpoint's own hidden states.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from companion.attention import MultiHeadSelfAttention, padding_mask

__all__ = [
    "sinusoidal_positions",
    "layer_norm",
    "annotated_layer_norm",
    "LayerNorm",
    "gelu",
    "Embeddings",
    "EncoderLayer",
    "Encoder",
    "encoder_layer_from_bert",
    "encoder_from_bert",
    "parameter_breakdown",
]


def sinusoidal_positions(num_positions: int, d_model: int) -> Tensor:
    """The fixed positional encoding of the original Transformer, (num_positions, d_model).

    Column 2i is sin(pos / 10000^(2i/d)), column 2i+1 the cosine at the same frequency.

    >>> sinusoidal_positions(4, 6)[0]
    tensor([0., 1., 0., 1., 0., 1.])
    """
    if num_positions < 1 or d_model < 2 or d_model % 2:
        raise ValueError(f"need num_positions >= 1 and an even d_model >= 2, got {num_positions} and {d_model}")
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    table = torch.zeros(num_positions, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


def _check_affine(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> None:
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != x.shape[-1:]:
            raise ValueError(
                f"{name} must have shape ({x.shape[-1]},) like the last dimension of x, got {tuple(p.shape)}"
            )


def layer_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dimension, with the biased variance.

    This is what ``torch.nn.LayerNorm`` computes.

    >>> layer_norm(torch.tensor([1.0, 2.0, 3.0]), eps=0.0)
    tensor([-1.2247,  0.0000,  1.2247])
    """
    _check_affine(x, weight, bias)
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def annotated_layer_norm(
    x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-6
) -> Tensor:
    """The Annotated Transformer's variant: (x - mean) / (std + eps), with the *unbiased* std.

    Kept only to measure how it differs from :func:`layer_norm` in ``book/encoder.ipynb``.

    >>> annotated_layer_norm(torch.tensor([1.0, 2.0, 3.0]), eps=0.0)
    tensor([-1.,  0.,  1.])
    """
    _check_affine(x, weight, bias)
    mean = x.mean(dim=-1, keepdim=True)
    y = (x - mean) / (x.std(dim=-1, keepdim=True, unbiased=True) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


class LayerNorm(nn.Module):
    """Layer normalization with a learned scale (``weight``) and shift (``bias``), from scratch.

    >>> LayerNorm(4)(torch.randn(2, 4)).shape
    torch.Size([2, 4])
    """

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        """Normalize each vector along the last dimension."""
        return layer_norm(x, self.weight, self.bias, self.eps)


def gelu(x: Tensor) -> Tensor:
    """The Gaussian error linear unit in its exact, erf form: x · Φ(x) = x/2 · (1 + erf(x/√2)).

    This is what ``hidden_act = "gelu"`` means in a Hugging Face config (our checkpoint's);
    ``"gelu_new"`` is the tanh approximation. Compared with both in book/encoder.ipynb.

    >>> gelu(torch.tensor([-1.0, 0.0, 1.0]))
    tensor([-0.1587,  0.0000,  0.8413])
    """
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class Embeddings(nn.Module):
    """BERT's input layer: word + learned position + token-type embeddings, then LayerNorm.

    >>> Embeddings(vocab_size=10, max_positions=8, d_model=4)(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 4])
    """

    def __init__(
        self, vocab_size: int, max_positions: int, d_model: int, type_vocab_size: int = 2, eps: float = 1e-12
    ) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_positions, d_model)
        self.token_type = nn.Embedding(type_vocab_size, d_model)
        self.norm = LayerNorm(d_model, eps)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """(batch, length) token ids to (batch, length, d_model) vectors."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        length = input_ids.shape[1]
        if length > self.position.num_embeddings:
            raise ValueError(f"sequence of {length} tokens is longer than the {self.position.num_embeddings} positions")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(length, device=input_ids.device)
        return self.norm(self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids))


class EncoderLayer(nn.Module):
    """One post-LN BERT encoder layer: x → LN(x + Attention(x)) → LN(h + W₂ GELU(W₁ h)).

    >>> EncoderLayer(d_model=12, num_heads=3, d_ff=48)(torch.randn(2, 5, 12)).shape
    torch.Size([2, 5, 12])
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(d_model, num_heads)
        self.attention_norm = LayerNorm(d_model, eps)
        self.intermediate = nn.Linear(d_model, d_ff)
        self.output = nn.Linear(d_ff, d_model)
        self.output_norm = LayerNorm(d_model, eps)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(batch, length, d_model) to the same shape; ``mask`` is boolean (see companion.attention)."""
        h = self.attention_norm(x + self.attention(x, mask))
        return self.output_norm(h + self.output(gelu(self.intermediate(h))))


class Encoder(nn.Module):
    """A whole BERT encoder: :class:`Embeddings` then a stack of :class:`EncoderLayer`.

    ``forward`` takes what a tokenizer returns and gives the last hidden state.

    >>> enc = Encoder(vocab_size=10, max_positions=8, d_model=12, num_heads=3, d_ff=48, num_layers=2)
    >>> enc(torch.tensor([[1, 2, 3]]), torch.tensor([[1, 1, 0]])).shape
    torch.Size([1, 3, 12])
    """

    def __init__(
        self,
        vocab_size: int,
        max_positions: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        num_layers: int,
        type_vocab_size: int = 2,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.embeddings = Embeddings(vocab_size, max_positions, d_model, type_vocab_size, eps)
        self.layers = nn.ModuleList(EncoderLayer(d_model, num_heads, d_ff, eps) for _ in range(num_layers))

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """Token ids (batch, length) and an optional 0/1 attention_mask to (batch, length, d_model)."""
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from "
                f"input_ids shape {tuple(input_ids.shape)}"
            )
        mask = None if attention_mask is None else padding_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, mask)
        return x


#: How the names of a Hugging Face ``BertLayer``'s weights map onto :class:`EncoderLayer`'s.
_LAYER_NAMES = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention.output",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}


def encoder_layer_from_bert(bert_layer: nn.Module) -> EncoderLayer:
    """An :class:`EncoderLayer` holding a copy of the weights of one Hugging Face ``BertLayer``.

    Used in book/encoder.ipynb: ``encoder_layer_from_bert(model.encoder.layer[2])``.
    """
    try:
        attention = bert_layer.attention.self
        d_model, d_ff = attention.query.in_features, bert_layer.intermediate.dense.out_features
        heads, eps = attention.num_attention_heads, bert_layer.output.LayerNorm.eps
    except AttributeError:
        raise TypeError(f"expected a Hugging Face BertLayer, got {type(bert_layer).__name__}") from None
    layer = EncoderLayer(d_model, heads, d_ff, eps)
    state = {}
    for name, tensor in bert_layer.state_dict().items():
        prefix, leaf = name.rsplit(".", 1)
        state[f"{_LAYER_NAMES[prefix]}.{leaf}"] = tensor.detach().clone()
    layer.load_state_dict(state)
    return layer.eval()


def encoder_from_bert(bert_model: nn.Module) -> Encoder:
    """An :class:`Encoder` holding a copy of a Hugging Face ``BertModel``'s weights, all but the pooler's.

    The pooler (dense + tanh over [CLS]) is what ``AutoModelForSequenceClassification``'s head
    reads; book/encoder.ipynb shows that all-MiniLM-L6-v2 never trained it.

    Used in book/encoder.ipynb: ``encoder_from_bert(load_encoder("minilm"))``.
    """
    try:
        emb, bert_layers = bert_model.embeddings, bert_model.encoder.layer
    except AttributeError:
        raise TypeError(f"expected a Hugging Face BertModel, got {type(bert_model).__name__}") from None
    first = bert_layers[0]
    encoder = Encoder(
        vocab_size=emb.word_embeddings.num_embeddings,
        max_positions=emb.position_embeddings.num_embeddings,
        d_model=emb.word_embeddings.embedding_dim,
        num_heads=first.attention.self.num_attention_heads,
        d_ff=first.intermediate.dense.out_features,
        num_layers=len(bert_layers),
        type_vocab_size=emb.token_type_embeddings.num_embeddings,
        eps=emb.LayerNorm.eps,
    )
    encoder.embeddings.word.weight.data.copy_(emb.word_embeddings.weight)
    encoder.embeddings.position.weight.data.copy_(emb.position_embeddings.weight)
    encoder.embeddings.token_type.weight.data.copy_(emb.token_type_embeddings.weight)
    encoder.embeddings.norm.load_state_dict(emb.LayerNorm.state_dict())
    encoder.layers = nn.ModuleList(encoder_layer_from_bert(layer) for layer in bert_layers)
    return encoder.eval()


def parameter_breakdown(bert_model: nn.Module) -> dict[str, int]:
    """Parameters of a Hugging Face BERT model per component: embeddings, attention, feed-forward, norms, pooler.

    Embedding tables count under "embeddings", every LayerNorm (the embeddings' included) under
    "layer norms"; weights and biases of the Q, K, V and output projections under "attention".

    Used in book/encoder.ipynb.
    """
    parts = {"embeddings": 0, "attention": 0, "feed-forward": 0, "layer norms": 0, "pooler": 0}
    for name, param in bert_model.named_parameters():
        if "LayerNorm" in name:
            part = "layer norms"
        elif "embeddings" in name:
            part = "embeddings"
        elif ".attention." in name:
            part = "attention"
        elif ".intermediate." in name or ".output." in name:
            part = "feed-forward"
        elif "pooler" in name:
            part = "pooler"
        else:
            raise ValueError(f"parameter {name!r} does not belong to a known BERT component")
        parts[part] += param.numel()
    return parts
