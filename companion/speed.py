"""Measuring fine-tuning speed: matmul peak, FLOPs per token, timed training steps, MFU.

Every configuration is timed on a fixed list of already-collated batches, so data loading
is left out and two loops given the same list do exactly the same work. Repeats are
interleaved across configurations (A, B, C, A, B, C, ...) so that a machine that slows
down for a while hurts all of them alike, and the median repeat is reported.
:func:`time_training` runs the book's own :func:`companion.training.train_epoch`;
:func:`time_trainer` runs ``transformers.Trainer`` on the same batches. Used by
``book/speed.ipynb`` and ``benchmarks/finetune_speed.py``.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from companion.batching import padding_stats
from companion.training import make_optimizer, make_scheduler, train_epoch

__all__ = [
    "sync",
    "matmul_peak",
    "flops_per_token",
    "activation_bytes",
    "StepTiming",
    "StepClock",
    "paired_speedup",
    "time_training",
    "time_trainer",
    "interleave",
    "speed_table",
    "inference_rate",
    "optimizer_step_seconds",
]


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work, so that a clock read afterwards includes it (no-op on a CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 10
) -> float:
    """FLOP/s of an ``n x n`` by ``n x n`` matrix product: the best this machine does, median of ``reps``."""
    if n < 1 or reps < 1:
        raise ValueError(f"n and reps must be positive, got {n} and {reps}")
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for i in range(reps + 2):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        if i >= 2:  # the first products warm caches and kernels up
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def flops_per_token(model: nn.Module, mean_length: float) -> float:
    """Training FLOPs per real token: 6 x non-embedding parameters + 12 x layers x width x length.

    Forward costs 2 FLOPs per parameter per token and backward twice that; the second term
    is the attention scores and their weighted sum, which grow with the sequence length.
    Embedding lookups are not matrix products, so their parameters are left out.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "num_hidden_layers"):
        raise ValueError("flops_per_token needs a transformers model with a config (layers, width)")
    if mean_length <= 0:
        raise ValueError(f"mean_length must be positive, got {mean_length}")
    embedding = sum(p.numel() for name, p in model.named_parameters() if "embeddings" in name)
    params = sum(p.numel() for p in model.parameters()) - embedding
    return 6 * params + 12 * config.num_hidden_layers * config.hidden_size * mean_length


def activation_bytes(model: nn.Module, batch: dict) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training forward.

    This is the part of training memory that grows with the batch (weights, gradients and
    optimiser state do not). Tensors are counted once per storage, so views are not
    counted twice; the parameters themselves are left out.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    del loss
    return sum(seen.values())


@dataclass
class StepTiming:
    """One timed run: seconds for the timed steps, their tokens and examples, the last losses.

    ``step_seconds`` holds the duration of each timed step, from the moment the loop asked
    for its batch to the moment it asked for the next one (or finished): the whole cycle,
    forward, backward, clipping, optimiser and schedule, as the loop runs it.
    """

    seconds: float
    real_tokens: int
    padded_tokens: int
    examples: int
    loss: float
    step_seconds: list[float] = field(default_factory=list)


class StepClock:
    """The batches of a list, handed out one by one, with the time at which each was asked for.

    Wrapping the batches is how the book's loop is timed per step without changing it:
    the gap between two requests is one step.
    """

    def __init__(self, batches: Sequence[dict], device: torch.device | str = "cpu") -> None:
        self.batches, self.device, self.stamps = list(batches), device, []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        for batch in self.batches:
            sync(self.device)
            self.stamps.append(time.perf_counter())
            yield batch
        sync(self.device)
        self.stamps.append(time.perf_counter())

    @property
    def step_seconds(self) -> list[float]:
        """Seconds of each step of the last pass."""
        return [b - a for a, b in itertools.pairwise(self.stamps[-len(self.batches) - 1 :])]


def paired_speedup(baseline: Sequence[StepTiming], other: Sequence[StepTiming]) -> float:
    """Median over repeats and steps of baseline step time / other step time, step by step.

    Both runs must have timed the same batches in the same order (as :func:`time_training`
    and :func:`time_trainer` do when given the same list): comparing step i with step i
    cancels the batch-to-batch differences in length, and the median ignores the steps
    that another process on the machine happened to slow down. Above 1: ``other`` is faster.
    """
    ratios = []
    for base, run in zip(baseline, other, strict=True):
        if len(base.step_seconds) != len(run.step_seconds) or not base.step_seconds:
            raise ValueError("paired runs need per-step times of the same steps")
        ratios += [a / b for a, b in zip(base.step_seconds, run.step_seconds, strict=True)]
    return statistics.median(ratios)


def _split(batches: Sequence[dict], warmup: int) -> tuple[Sequence[dict], Sequence[dict]]:
    if warmup < 0 or len(batches) <= warmup:
        raise ValueError(f"need more batches ({len(batches)}) than warm-up steps ({warmup})")
    return batches[:warmup], batches[warmup:]


def _timing(
    seconds: float, timed: Sequence[dict], losses: Sequence[float], step_seconds: Sequence[float] = ()
) -> StepTiming:
    tokens = padding_stats(timed)
    real, padded = tokens["real_tokens"], tokens["padded_tokens"]
    tail = list(losses)[-5:]
    examples = sum(len(b["labels"]) for b in timed)
    return StepTiming(seconds, real, padded, examples, sum(tail) / len(tail), list(step_seconds))


def time_training(
    make_model: Callable[[], nn.Module],
    batches: Sequence[dict],
    warmup: int = 2,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    lr: float = 1e-4,
    fused: bool | None = None,
    compile_model: bool = False,
) -> StepTiming:
    """Time :func:`companion.training.train_epoch` over ``batches`` after ``warmup`` untimed steps.

    A fresh model from ``make_model`` (seeded) takes one optimiser step per batch; ``dtype``
    is the autocast dtype (``None``: fp32), ``fused`` is passed to
    :func:`~companion.training.make_optimizer`, ``compile_model`` wraps the model in
    ``torch.compile`` (its compilation falls in the warm-up, which should then be longer).
    """
    first, timed = _split(batches, warmup)
    torch.manual_seed(0)
    model = make_model().to(device)
    optimizer = make_optimizer(model, lr=lr, fused=fused)
    scheduler = make_scheduler(optimizer, len(batches))
    runner = torch.compile(model, dynamic=True) if compile_model else model
    if first:
        train_epoch(runner, first, optimizer, scheduler, device, dtype, progress=False)
    clock = StepClock(timed, device)
    sync(device)
    start = time.perf_counter()
    losses = train_epoch(runner, clock, optimizer, scheduler, device, dtype, progress=False)
    sync(device)
    return _timing(time.perf_counter() - start, timed, losses, clock.step_seconds)


def time_trainer(
    make_model: Callable[[], nn.Module],
    batches: Sequence[dict],
    warmup: int = 2,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    lr: float = 1e-4,
    output_dir: str | None = None,
) -> StepTiming:
    """Time ``transformers.Trainer`` on the very same ``batches`` (same order, same padding).

    Settings match :func:`time_training`: AdamW (the Trainer's default fused kernel) with
    weight decay 0.01, linear schedule with the same whole number of warm-up steps as
    :func:`~companion.training.make_scheduler` (10 %, rounded down), clipping at 1.0, one step per
    batch, no logging, evaluation or saving (``output_dir`` defaults to a temporary folder).
    """
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    first, timed = _split(batches, warmup)
    device = torch.device(device)

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.start: float | None = None
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - Trainer's signature
            sync(device)
            self.ends.append(time.perf_counter())
            if state.global_step == len(first):
                self.start = self.ends[-1]

    class SameBatches(Trainer):
        def get_train_dataloader(self) -> DataLoader:
            return self.accelerator.prepare(DataLoader(list(batches), batch_size=None))

    clock = Clock()
    scratch = tempfile.TemporaryDirectory(prefix="speed-trainer-")
    args = TrainingArguments(
        output_dir=output_dir or scratch.name, max_steps=len(batches), learning_rate=lr, weight_decay=0.01,
        warmup_steps=int(0.1 * len(batches)), max_grad_norm=1.0, report_to="none", save_strategy="no",
        logging_strategy="steps", logging_steps=1, disable_tqdm=True, seed=0, bf16=bf16,
        use_cpu=device.type == "cpu", dataloader_num_workers=0,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = SameBatches(model=make_model(), args=args, callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # per-step losses go to log_history, not the screen
    if len(first) == 0:
        sync(device)
        clock.start = time.perf_counter()
    with scratch:
        trainer.train()
        sync(device)
        seconds = time.perf_counter() - clock.start
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    ends = [clock.start, *clock.ends[len(first) :]]  # a whole cycle each: from one step's end to the next
    return _timing(seconds, timed, losses, [b - a for a, b in itertools.pairwise(ends)])


def interleave(runs: dict[str, Callable[[], StepTiming]], repeats: int = 3) -> dict[str, list[StepTiming]]:
    """Run every configuration once per repeat, in turn, ``repeats`` times."""
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    results: dict[str, list[StepTiming]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(run())
    return results


def speed_table(
    results: dict[str, list[StepTiming]], flops_per_real_token: float, peaks: dict[str, float]
) -> pd.DataFrame:
    """One row per configuration from the median repeat: rates, padding, loss and MFU.

    ``peaks`` maps each configuration to the matmul FLOP/s of its dtype; model FLOP
    utilisation is ``flops_per_real_token x real tokens/s / peak``.
    """
    rows = []
    for name, runs in results.items():
        if not runs:
            raise ValueError(f"no timed runs for {name!r}")
        run = sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]
        rate = run.real_tokens / run.seconds
        rows.append({
            "configuration": name,
            "examples/s": run.examples / run.seconds,
            "real tokens/s": rate,
            "padding": 1 - run.real_tokens / run.padded_tokens,
            "loss": run.loss,
            "MFU": flops_per_real_token * rate / peaks[name],
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("configuration")


@torch.no_grad()
def inference_rate(
    model: nn.Module, tokenizer, texts: Sequence[str], batch_size: int, device: torch.device | str = "cpu"
) -> float:
    """Sentences per second in eval mode with dynamic padding, tokenization included."""
    if not texts or batch_size < 1:
        raise ValueError("need at least one text and a positive batch size")
    model.eval().to(device)
    chunks = [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    model(**tokenizer(chunks[0], padding=True, return_tensors="pt").to(device))  # warm-up
    sync(device)
    start = time.perf_counter()
    for chunk in chunks:
        model(**tokenizer(chunk, padding=True, return_tensors="pt").to(device))
    sync(device)
    return len(texts) / (time.perf_counter() - start)


def optimizer_step_seconds(model: nn.Module, fused: bool, reps: int = 10) -> float:
    """Median seconds of one AdamW step over all trainable parameters of ``model``.

    Gradients are filled with small random numbers first; the model's weights change, so
    pass a model you no longer need (a fresh copy).
    """
    if reps < 1:
        raise ValueError(f"reps must be positive, got {reps}")
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn_like(p) * 1e-3
    optimizer = make_optimizer(model, lr=1e-5, fused=fused)
    optimizer.step()  # creates the moment buffers
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
