"""companion.speed on a tiny random BERT: the measurements count the right things."""

from __future__ import annotations

import pytest
import torch
from test_training import tiny_model, toy_data, without_dropout

from companion.batching import make_loader, padding_stats
from companion.speed import (
    StepClock,
    StepTiming,
    activation_bytes,
    flops_per_token,
    interleave,
    matmul_peak,
    optimizer_step_seconds,
    paired_speedup,
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
    assert len(ours.step_seconds) == len(theirs.step_seconds) == 4  # one time per timed step, each
    assert sum(ours.step_seconds) == pytest.approx(ours.seconds, rel=0.05)
    assert sum(theirs.step_seconds) <= theirs.seconds
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


def test_step_clock_times_every_step_of_a_loop() -> None:
    clock = StepClock([{"a": 1}, {"a": 2}, {"a": 3}])
    seen = [batch["a"] for batch in clock]
    assert seen == [1, 2, 3] and len(clock.step_seconds) == 3 and all(t >= 0 for t in clock.step_seconds)
    list(clock)  # a second pass: the times are those of the last one
    assert len(clock.step_seconds) == 3


def test_paired_speedup_compares_step_by_step_and_ignores_outliers() -> None:
    def run(steps: list[float]) -> StepTiming:
        return StepTiming(sum(steps), 100, 100, 10, 0.5, steps)

    base = [run([1.0, 2.0, 4.0]), run([1.0, 2.0, 40.0])]  # one step of the second repeat was disturbed
    other = [run([0.5, 1.0, 2.0]), run([0.5, 1.0, 2.0])]
    assert paired_speedup(base, other) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same steps"):
        paired_speedup([run([1.0])], [run([1.0, 2.0])])
