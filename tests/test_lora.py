"""companion.lora: LoRA from scratch (against peft), merging, BitFit, and the byte counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from companion.lora import (
    LoRALinear,
    adamw_state_bytes,
    add_lora,
    bitfit,
    lora_state_dict,
    merge_lora,
    optimizer_state_bytes,
    trainable_bytes,
    trainable_state_dict,
)
from companion.models import DEFAULT_CHECKPOINT, load_classifier


@pytest.fixture()
def classifier():
    torch.manual_seed(0)
    return load_classifier(DEFAULT_CHECKPOINT, pooling="mean").eval()


@pytest.fixture(scope="module")
def batch(tokenizer):
    return tokenizer(["A gem.", "Tedious, overlong and smug."], padding=True, return_tensors="pt")


def randomize_b(model: nn.Module, seed: int = 1) -> None:
    """Give every B a non-zero value, so that the update changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


def test_zero_initialised_update_leaves_outputs_unchanged() -> None:
    torch.manual_seed(0)
    base = nn.Linear(16, 8)
    layer = LoRALinear(base, r=4, alpha=8)
    x = torch.randn(3, 16)
    assert torch.equal(layer(x), base(x))
    assert layer.scaling == 2.0 and not base.weight.requires_grad


def test_model_with_fresh_lora_gives_the_same_logits(classifier, batch) -> None:
    with torch.no_grad():
        before = classifier(**batch).logits
        names = add_lora(classifier, r=4, alpha=8)
        after = classifier(**batch).logits
    assert len(names) == 12 and names[0].endswith("layer.0.attention.self.query")
    assert torch.equal(before, after)


def test_merge_equals_unmerged(classifier, batch) -> None:
    add_lora(classifier)
    randomize_b(classifier)
    with torch.no_grad():
        unmerged = classifier(**batch).logits
        assert merge_lora(classifier) == 12
        merged = classifier(**batch).logits
    assert not any(isinstance(m, LoRALinear) for m in classifier.modules())
    assert torch.allclose(unmerged, merged, atol=1e-5)


def test_only_a_b_and_the_head_receive_gradients(classifier, batch) -> None:
    add_lora(classifier, target_modules=("query", "value"))
    randomize_b(classifier)
    classifier(**batch, labels=torch.tensor([1, 0])).loss.backward()
    with_grad = {name for name, p in classifier.named_parameters() if p.grad is not None}
    assert with_grad == set(trainable_state_dict(classifier))
    assert all(".lora_A." in n or ".lora_B." in n or n.startswith("classifier.") for n in with_grad)
    assert {"classifier.weight", "classifier.bias"} <= with_grad and len(with_grad) == 12 * 2 + 2


def test_agrees_with_peft_on_the_same_weights(classifier, batch) -> None:
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    reference = peft.get_peft_model(
        load_classifier(DEFAULT_CHECKPOINT, pooling="mean").eval(),
        peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"],
                        modules_to_save=["classifier"]),
    )
    add_lora(classifier, r=8, alpha=16)
    randomize_b(classifier)
    keys = peft.set_peft_model_state_dict(
        reference, {f"base_model.model.{k}": v for k, v in trainable_state_dict(classifier).items()})
    assert not keys.unexpected_keys
    with torch.no_grad():
        ours, theirs = classifier(**batch).logits, reference(**batch).logits
    assert (ours - theirs).abs().max() < 1e-6
    assert len(lora_state_dict(classifier)) == 24


@pytest.mark.parametrize("r", [0, -1, 385, 2.5])
def test_bad_rank_is_refused_naming_it(r) -> None:
    with pytest.raises(ValueError, match=f"got {r!r}"):
        LoRALinear(nn.Linear(384, 384), r=r)


def test_non_linear_base_is_refused() -> None:
    with pytest.raises(TypeError, match="Conv1d"):
        LoRALinear(nn.Conv1d(4, 4, 1))


def test_unknown_target_module_is_refused_naming_it(classifier) -> None:
    with pytest.raises(ValueError, match="'quer'.*query"):
        add_lora(classifier, target_modules=("quer",))
    with pytest.raises(ValueError, match="target_modules is empty"):
        add_lora(classifier, target_modules=())


def test_bitfit_trains_biases_and_the_head(classifier) -> None:
    trainable, total = bitfit(classifier)
    names = set(trainable_state_dict(classifier))
    assert all(n.endswith("bias") or n.startswith("classifier.") for n in names) and "classifier.weight" in names
    assert trainable == sum(p.numel() for p in trainable_state_dict(classifier).values()) < total / 100


def test_freezing_that_leaves_nothing_trainable_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing trainable in Linear"):
        bitfit(nn.Linear(4, 2, bias=False))


def test_byte_counts_match_a_real_adamw_step() -> None:
    model = nn.Sequential(nn.Linear(10, 5), nn.Linear(5, 2))
    model[0].requires_grad_(False)
    assert trainable_bytes(model) == (5 * 2 + 2) * 4
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model(torch.randn(3, 10)).sum().backward()
    optimizer.step()
    steps = sum(torch.is_tensor(s.get("step")) * s["step"].numel() * s["step"].element_size()
                for s in optimizer.state.values())
    assert optimizer_state_bytes(optimizer) == adamw_state_bytes(model) + steps
