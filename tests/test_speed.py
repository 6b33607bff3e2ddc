"""companion.speed on a tiny random BERT: the measurements count the right things."""

from __future__ import annotations

import pytest
import torch
from test_training import tiny_model, toy_data, without_dropout

from companion.batching import make_loader, padding_stats
from companion.speed import (
    StepTiming,
    activation_bytes,
    flops_per_token,
    interleave,
    matmul_peak,
    optimizer_step_seconds,
    speed_table,
    time_trainer,
    time_training,
)


def no_dropout_model() -> torch.nn.Module:
    return without_dropout(tiny_model())


@pytest.fixture(scope="module")
def batches(tokenizer) -> list[dict]:
    return list(make_loader(toy_data(48, seed=4), tokenizer, batch_size=8, group_by_length=True))


def test_matmul_peak_is_a_plausible_rate() -> None:
    rate = matmul_peak(n=128, reps=3)
    assert 1e6 < rate < 1e15
    with pytest.raises(ValueError, match="positive"):
        matmul_peak(n=0)


def test_flops_per_token_counts_non_embedding_parameters_and_attention() -> None:
    model = tiny_model()
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    total = sum(p.numel() for p in model.parameters())
    assert flops_per_token(model, 10) == 6 * (total - embedding) + 12 * 1 * 16 * 10
    with pytest.raises(ValueError, match="config"):
        flops_per_token(torch.nn.Linear(2, 2), 10)
    with pytest.raises(ValueError, match="mean_length"):
        flops_per_token(model, 0)


def test_activation_memory_grows_with_the_batch(tokenizer) -> None:
    model = no_dropout_model()
    batch = next(iter(make_loader(toy_data(32, seed=5), tokenizer, batch_size=32, pad_to=24)))
    half = {k: v[:16] for k, v in batch.items()}
    small, large = activation_bytes(model, half), activation_bytes(model, batch)
    assert small > 0 and 1.8 < large / small < 2.2


def test_padding_stats_counts_a_list_of_batches(batches) -> None:
    tokens = padding_stats(batches)
    real, padded = tokens["real_tokens"], tokens["padded_tokens"]
    assert real == sum(int(b["attention_mask"].sum()) for b in batches)
    assert padded == sum(b["input_ids"].numel() for b in batches) and real <= padded


def test_trainer_and_companion_do_the_same_work_on_the_same_batches(batches) -> None:
    """Same model, batches, optimiser and schedule: the Trainer's losses equal the book loop's."""
    ours = time_training(no_dropout_model, batches, warmup=2, lr=1e-3)
    theirs = time_trainer(no_dropout_model, batches, warmup=2, lr=1e-3)
    assert ours.examples == theirs.examples == 32 and ours.real_tokens == theirs.real_tokens
    assert ours.loss == pytest.approx(theirs.loss, abs=1e-4)
    assert ours.seconds > 0 and theirs.seconds > 0
    with pytest.raises(ValueError, match="warm-up"):
        time_training(no_dropout_model, batches[:2], warmup=2)


def test_speed_table_uses_the_median_repeat() -> None:
    runs = iter([1.0, 4.0, 2.0])
    results = interleave({"a": lambda: StepTiming(next(runs), 100, 200, 10, 0.5)}, repeats=3)
    table = speed_table(results, flops_per_real_token=1e6, peaks={"a": 1e8})
    assert table.loc["a", "real tokens/s"] == pytest.approx(50.0)
    assert table.loc["a", "padding"] == pytest.approx(0.5)
    assert table.loc["a", "MFU"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="repeats"):
        interleave({}, repeats=0)


def test_fused_adamw_step_is_timed() -> None:
    assert optimizer_step_seconds(tiny_model(), fused=True, reps=2) > 0
    with pytest.raises(ValueError, match="reps"):
        optimizer_step_seconds(tiny_model(), fused=False, reps=0)
