"""companion.batching and companion.training on a tiny random BERT, so the tests stay fast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from companion.batching import LengthGroupedBatchSampler, make_loader, padding_stats, tokenize_dataset
from companion.training import (
    check_labels,
    decay_parameter_groups,
    evaluate,
    fit,
    make_optimizer,
    make_scheduler,
    resolve_precision,
    train_epoch,
)


def tiny_model(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=128, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=num_labels)
    return BertForSequenceClassification(config)


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every dropout layer off, so that two runs see the same network."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def toy_data(n: int = 96, seed: int = 0, num_labels: int = 2) -> Dataset:
    """Sentences of random ids drawn from a range that depends on the label: easy to learn."""
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for _ in range(n):
        label = int(rng.integers(num_labels))
        length = int(rng.integers(3, 20))
        low = 20 + label * (100 // num_labels)
        ids = [101, *rng.integers(low, low + 100 // num_labels, size=length - 2).tolist(), 102]
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * len(ids))
        rows["labels"].append(label)
    return Dataset.from_dict(rows)


def test_tokenize_dataset_truncates_and_does_not_pad(tokenizer) -> None:
    data = Dataset.from_dict({"text": ["short", "a much longer sentence " * 20], "label": [0, 1], "movie": ["a", "b"]})
    out = tokenize_dataset(data, tokenizer, max_length=16)
    assert out.column_names == ["labels", "input_ids", "token_type_ids", "attention_mask"]
    assert [len(ids) for ids in out["input_ids"]] == [3, 16]
    assert out["labels"] == [0, 1]


def test_tokenize_dataset_bad_input(tokenizer) -> None:
    with pytest.raises(ValueError, match="empty"):
        tokenize_dataset(Dataset.from_dict({"text": []}), tokenizer)
    with pytest.raises(ValueError, match="no column 'text'"):
        tokenize_dataset(Dataset.from_dict({"sentence": ["x"]}), tokenizer)


def test_dynamic_padding_pads_to_the_longest_in_each_batch(tokenizer) -> None:
    data = toy_data(40)
    dynamic = padding_stats(make_loader(data, tokenizer, batch_size=8))
    fixed = padding_stats(make_loader(data, tokenizer, batch_size=8, pad_to=64))
    grouped = padding_stats(make_loader(data, tokenizer, batch_size=8, group_by_length=True))
    real = sum(len(ids) for ids in data["input_ids"])
    assert dynamic["real_tokens"] == fixed["real_tokens"] == grouped["real_tokens"] == real
    assert fixed["padded_tokens"] == 40 * 64
    assert grouped["padded_tokens"] <= dynamic["padded_tokens"] < fixed["padded_tokens"]


def test_length_grouped_sampler_covers_every_index_once_and_groups_lengths() -> None:
    lengths = np.random.default_rng(0).integers(1, 100, size=103).tolist()
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, group=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(103))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches if len(b) > 1])
    assert spread < 30  # random batches of 8 would spread over ~75
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_sampler_bad_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        LengthGroupedBatchSampler([1, 2], batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        LengthGroupedBatchSampler([], batch_size=2)


def test_no_weight_decay_on_biases_and_layernorm() -> None:
    model = tiny_model()
    decay, no_decay = decay_parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert all("bias" not in names[id(p)] and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert isinstance(make_optimizer(model), torch.optim.AdamW)


def test_frozen_model_cannot_be_optimised() -> None:
    model = tiny_model()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer(model)


def test_schedule_warms_up_then_decays_to_zero() -> None:
    optimizer = make_optimizer(tiny_model(), lr=1.0)
    scheduler = make_scheduler(optimizer, total_steps=10, warmup_ratio=0.2)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:3] == [0.0, 0.5, 1.0] and rates[-1] == pytest.approx(0.125)
    with pytest.raises(ValueError, match="warmup_ratio"):
        make_scheduler(optimizer, 10, warmup_ratio=1.5)


def test_labels_out_of_range_are_a_clear_error(tokenizer) -> None:
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.1.*found 0\.\.2"):
        check_labels([0, 1, 2], num_labels=2)
    with pytest.raises(ValueError, match="empty"):
        check_labels([], num_labels=2)
    bad = toy_data(16).map(lambda row: {"labels": row["labels"] + 5})
    model = tiny_model()
    loader = make_loader(bad, tokenizer, batch_size=8)
    with pytest.raises(ValueError, match="labels must be in"):
        train_epoch(model, loader, make_optimizer(model), progress=False)
    with pytest.raises(ValueError, match="labels must be in"):
        fit(model, loader, loader, epochs=1, progress=False)


def test_evaluate_uses_one_prediction_per_sentence(tokenizer) -> None:
    data = toy_data(30)
    metrics = evaluate(tiny_model(), make_loader(data, tokenizer, batch_size=7))
    assert metrics.predictions.shape == (30,)
    assert metrics.probabilities.shape == (30, 2)
    assert metrics.confusion.sum() == 30 and metrics.confusion.shape == (2, 2)
    assert metrics.accuracy == pytest.approx(np.mean(metrics.predictions == np.array(data["labels"])))
    assert set(metrics.as_dict()) == {"loss", "accuracy", "precision", "recall", "f1"}


def test_evaluate_multiclass_uses_macro_scores(tokenizer) -> None:
    metrics = evaluate(tiny_model(num_labels=3), make_loader(toy_data(30, num_labels=3), tokenizer, batch_size=8))
    assert metrics.confusion.shape == (3, 3) and 0 <= metrics.f1 <= 1


def test_fit_learns_keeps_the_best_epoch_and_records_history(tokenizer) -> None:
    train = make_loader(toy_data(128, seed=1), tokenizer, batch_size=16, group_by_length=True)
    val = make_loader(toy_data(64, seed=2), tokenizer, batch_size=32)
    model = tiny_model()
    before = evaluate(model, val).accuracy
    result = fit(model, train, val, epochs=6, lr=1e-2, patience=2, progress=False)
    after = evaluate(model, val).accuracy
    assert after > max(before, 0.9)
    assert after == pytest.approx(max(row["val_accuracy"] for row in result.history))
    assert result.history[result.best_epoch - 1]["val_accuracy"] == pytest.approx(result.best_score)
    assert len(result.step_losses) == len(result.history) * len(train)
    assert np.mean(result.step_losses[-8:]) < np.mean(result.step_losses[:8])


def test_fit_stops_early_when_validation_stops_improving(tokenizer) -> None:
    train = make_loader(toy_data(32, seed=1), tokenizer, batch_size=16)
    val = make_loader(toy_data(32, seed=2), tokenizer, batch_size=32)
    result = fit(tiny_model(), train, val, epochs=20, lr=1e-9, patience=1, progress=False)
    assert result.stopped_early and len(result.history) == 2 and result.best_epoch == 1


def test_precision_choices() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision(cpu, "fp32") is None
    assert resolve_precision(cpu, "bf16") == torch.bfloat16
    assert resolve_precision(cpu, "auto") in (None, torch.bfloat16)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision(cpu, "fp16")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision(cpu, "int8")


def test_bf16_autocast_trains_on_cpu(tokenizer) -> None:
    model = tiny_model()
    loader = make_loader(toy_data(16), tokenizer, batch_size=8)
    losses = train_epoch(model, loader, make_optimizer(model), dtype=torch.bfloat16, progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_fit_accepts_a_plain_torch_dataset(tokenizer) -> None:
    """A loader over a map-style torch Dataset (not a datasets.Dataset) trains too."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    rows = list(toy_data(32))
    loader = DataLoader(rows, batch_size=16, collate_fn=DataCollatorWithPadding(tokenizer))
    result = fit(tiny_model(), loader, loader, epochs=1, lr=1e-3, progress=False)
    assert len(result.step_losses) == 2
    bad = DataLoader([{**r, "labels": 7} for r in rows], batch_size=16, collate_fn=DataCollatorWithPadding(tokenizer))
    with pytest.raises(ValueError, match="labels must be in"):
        fit(tiny_model(), bad, loader, epochs=1, progress=False)


def test_gradient_accumulation_equals_one_larger_batch(tokenizer) -> None:
    """Two batches of 8 with accumulation_steps=2 make the same update as one batch of 16."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    rows = list(toy_data(16, seed=3))
    collate = DataCollatorWithPadding(tokenizer)
    models = []
    for batch_size, steps in ((16, 1), (8, 2)):
        model = without_dropout(tiny_model())
        loader = DataLoader(rows, batch_size=batch_size, collate_fn=collate)
        optimizer = make_optimizer(model, lr=1e-2)
        losses = train_epoch(model, loader, optimizer, progress=False, accumulation_steps=steps)
        assert len(losses) == 16 // batch_size and optimizer.state_dict()["state"][0]["step"] == 1
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_accumulation_counts_updates_and_rejects_bad_values(tokenizer) -> None:
    model = tiny_model()
    loader = make_loader(toy_data(40), tokenizer, batch_size=8)  # 5 batches
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(optimizer, total_steps=3)
    losses = train_epoch(model, loader, optimizer, scheduler, progress=False, accumulation_steps=2)
    assert len(losses) == 5 and scheduler.last_epoch == 3  # groups of 2, 2 and a last group of 1
    with pytest.raises(ValueError, match="accumulation_steps"):
        train_epoch(model, loader, optimizer, progress=False, accumulation_steps=0)
    result = fit(tiny_model(), loader, loader, epochs=2, progress=False, accumulation_steps=2)
    assert len(result.step_losses) == 10


def test_optimizer_is_fused_where_torch_supports_it_and_matches_the_default() -> None:
    """The fused AdamW kernel makes the same update as the default one, to rounding."""
    models = [tiny_model(), tiny_model()]
    optimizers = [make_optimizer(models[0], lr=1e-2), make_optimizer(models[1], lr=1e-2, fused=False)]
    assert optimizers[0].defaults["fused"] and not optimizers[1].defaults["fused"]
    for model, optimizer in zip(models, optimizers, strict=True):
        for step in range(3):
            torch.manual_seed(step)
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
