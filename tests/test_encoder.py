"""Tests of companion.encoder (book/encoder.ipynb)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from companion.attention import padding_mask
from companion.encoder import (
    Embeddings,
    Encoder,
    EncoderLayer,
    LayerNorm,
    annotated_layer_norm,
    encoder_from_bert,
    encoder_layer_from_bert,
    gelu,
    layer_norm,
    parameter_breakdown,
    sinusoidal_positions,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def bert():
    from companion.models import load_encoder, load_tokenizer

    return load_encoder("minilm"), load_tokenizer("minilm")


def test_sinusoidal_positions() -> None:
    table = sinusoidal_positions(50, 16)
    assert table.shape == (50, 16)
    assert torch.allclose(table[:, 0], torch.sin(torch.arange(50.0)))
    assert torch.allclose(table[7, 3], torch.tensor(math.cos(7 / 10000 ** (2 / 16))))
    assert sinusoidal_positions(1, 2).tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="even d_model"):
        sinusoidal_positions(10, 7)


@pytest.mark.parametrize("shape", [(2, 5, 16), (1, 1, 8), (3, 4)])
def test_layer_norm_matches_torch(shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape) * 3 + 1
    weight, bias = torch.randn(shape[-1]), torch.randn(shape[-1])
    expected = F.layer_norm(x, shape[-1:], weight, bias, eps=1e-5)
    assert torch.allclose(layer_norm(x, weight, bias, eps=1e-5), expected, atol=1e-5)
    module, reference = LayerNorm(shape[-1], eps=1e-12), torch.nn.LayerNorm(shape[-1], eps=1e-12)
    assert torch.allclose(module(x), reference(x), atol=1e-5)


def test_annotated_layer_norm_differs() -> None:
    x = torch.randn(4, 8)
    ours, annotated = layer_norm(x, eps=0.0), annotated_layer_norm(x, eps=0.0)
    assert torch.allclose(ours, annotated * math.sqrt(8 / 7), atol=1e-5)
    with pytest.raises(ValueError, match="weight must have shape"):
        annotated_layer_norm(x, weight=torch.ones(3))


def test_layer_norm_bad_input() -> None:
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        layer_norm(torch.randn(2, 4), bias=torch.zeros(5))


def test_gelu_is_exact() -> None:
    x = torch.linspace(-6, 6, 101)
    assert torch.allclose(gelu(x), F.gelu(x), atol=1e-6)
    assert not torch.allclose(gelu(x), F.gelu(x, approximate="tanh"), atol=1e-5)


def test_checkpoint_uses_the_erf_gelu(bert) -> None:
    """The chapter says the checkpoint's ``hidden_act = "gelu"`` is the erf form our ``gelu`` computes."""
    model, _ = bert
    x = torch.linspace(-6, 6, 101)
    assert model.config.hidden_act == "gelu"
    assert torch.allclose(model.encoder.layer[0].intermediate.intermediate_act_fn(x), gelu(x), atol=1e-6)


def test_checkpoint_pooler_was_never_trained(bert) -> None:
    """The chapter's pooler section: an all-zero bias beside trained biases, and small weights."""
    model, _ = bert
    assert bool((model.pooler.dense.bias == 0).all())
    others = [p for name, p in model.named_parameters() if name.endswith("bias") and not name.startswith("pooler")]
    assert others and not any(bool((p == 0).any()) for p in others)
    assert model.pooler.dense.weight.std() < model.encoder.layer[-1].attention.output.dense.weight.std() / 3


def test_embeddings_and_layers_shapes() -> None:
    emb = Embeddings(vocab_size=20, max_positions=6, d_model=8)
    assert emb(torch.tensor([[3]])).shape == (1, 1, 8)
    with pytest.raises(ValueError, match="longer than the 6 positions"):
        emb(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(batch, length\)"):
        emb(torch.zeros(7, dtype=torch.long))
    layer = EncoderLayer(8, 2, 32).eval()
    assert layer(torch.randn(1, 1, 8)).shape == (1, 1, 8)
    encoder = Encoder(20, 6, 8, 2, 32, num_layers=2).eval()
    with pytest.raises(ValueError, match="attention_mask shape"):
        encoder(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="integers or booleans"):
        encoder(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3))


def test_encoder_padding_invariance() -> None:
    encoder = Encoder(20, 10, 8, 2, 32, num_layers=2).eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    padded = torch.tensor([[1, 5, 7, 2, 0, 0]])
    with torch.no_grad():
        alone = encoder(ids)
        both = encoder(padded, torch.tensor([[1, 1, 1, 1, 0, 0]]))
    assert torch.allclose(both[:, :4], alone, atol=1e-5)


def test_loaders_reject_other_modules() -> None:
    with pytest.raises(TypeError, match="BertLayer"):
        encoder_layer_from_bert(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="BertModel"):
        encoder_from_bert(torch.nn.Linear(2, 2))


def test_layer_reproduces_checkpoint(bert) -> None:
    model, tokenizer = bert
    batch = tokenizer(["The acting was superb.", "Dull."], padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
        for k in (0, len(model.encoder.layer) - 1):
            ours = encoder_layer_from_bert(model.encoder.layer[k])(hidden[k], padding_mask(batch["attention_mask"]))
            assert (ours - hidden[k + 1])[real].abs().max() < 1e-5


def test_encoder_reproduces_checkpoint(bert) -> None:
    model, tokenizer = bert
    batch = tokenizer(["A", "The acting was superb, the plot was not."], padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
        ours = encoder_from_bert(model)(**batch)
    assert (ours - expected)[real].abs().max() < 1e-5


def test_parameter_breakdown(bert) -> None:
    model, _ = bert
    parts = parameter_breakdown(model)
    assert sum(parts.values()) == sum(p.numel() for p in model.parameters())
    assert parts["layer norms"] == (2 * 6 + 1) * 2 * 384
    assert parts["attention"] == 6 * 4 * (384 * 384 + 384)
    with pytest.raises(ValueError, match="known BERT component"):
        parameter_breakdown(torch.nn.Linear(2, 2))
