"""How fast does fine-tuning run on this machine, and what does each technique buy?

Same checkpoint, same data sample, same batch size, same number of optimizer steps for
every configuration, measured in one run: repeats are interleaved (config A, B, C, A, B,
C, ...), warm-up steps are excluded, and the median over repeats is reported.

    .venv/bin/python benchmarks/finetune_speed.py            # CPU here; CUDA when present
    .venv/bin/python benchmarks/finetune_speed.py --steps 20 --repeats 5

Configurations:
  1. article   -- every example padded to 128 tokens (the source article's recipe)
  2. dynamic   -- each batch padded to its longest example
  3. grouped   -- dynamic padding + length-grouped batches (shuffled buckets)
  4. grouped-amp -- 3 + bf16 autocast (CPU with bf16 units) or AMP (CUDA); skipped otherwise
  5. trainer   -- transformers.Trainer, train_sampling_strategy="group_by_length", same steps

Configurations 1-4 run ``companion.training.train_epoch`` itself (forward, loss, backward,
clipping, AdamW, schedule, label check), so the figures are those of the book's loop.
Per configuration: examples/s, real (non-pad) tokens/s, padding fraction, peak memory,
final training loss (mean of the last steps), and model FLOP utilisation: (6 x
non-embedding parameters + the attention term) x real tokens/s over the peak matmul rate
measured here for the same dtype. Then inference sentences/s at batch sizes 1 and 64.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import time

import numpy as np
import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from companion import setup
from companion.batching import make_loader, tokenize_dataset
from companion.data import load_rotten_tomatoes, stratified_subset
from companion.models import load_classifier, load_tokenizer
from companion.training import cpu_has_fast_bf16, make_optimizer, make_scheduler, train_epoch


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of an n x n x n matrix product on ``device`` (median of ``reps``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(reps + 2):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak GPU memory since the last reset; ``None`` on a CPU (see :func:`process_peak_rss_mb`)."""
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None


def process_peak_rss_mb() -> float:
    """The whole process's peak resident memory (a CPU has no per-configuration counter)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def flops_per_token(model: torch.nn.Module, mean_len: float) -> float:
    """Training FLOPs per real token: 6 x non-embedding parameters + 12 x layers x width x length."""
    embed = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    params = sum(p.numel() for p in model.parameters()) - embed
    cfg = model.config
    return 6 * params + 12 * cfg.num_hidden_layers * cfg.hidden_size * mean_len


def counted(batches, tally: dict):
    """Pass batches through, adding up their real and padded tokens."""
    for batch in batches:
        tally["real"] += int(batch["attention_mask"].sum())
        tally["padded"] += batch["attention_mask"].numel()
        yield batch


def run_loop(loader, args, device, dtype) -> dict:
    """``warmup`` + ``steps`` optimizer steps of ``companion.training.train_epoch``; times the last ``steps``."""
    torch.manual_seed(0)
    reset_peak_memory(device)
    model = load_classifier(args.checkpoint).to(device)
    optimizer = make_optimizer(model, lr=args.lr)
    scheduler = make_scheduler(optimizer, args.warmup + args.steps)
    batches = iter(loader)
    train_epoch(model, itertools.islice(batches, args.warmup), optimizer, scheduler, device, dtype, progress=False)
    tally = {"real": 0, "padded": 0}
    sync(device)
    start = time.perf_counter()
    losses = train_epoch(model, counted(itertools.islice(batches, args.steps), tally), optimizer, scheduler,
                         device, dtype, progress=False)
    sync(device)
    return {"seconds": time.perf_counter() - start, **tally, "loss": float(np.mean(losses[-5:])),
            "peak_mb": peak_memory_mb(device), "model": model}


class _StepClock(TrainerCallback):
    """Starts the clock when the warm-up steps are done."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device, self.start = warmup, device, None

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - Trainer's signature
        if state.global_step == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()


def run_trainer(data, tokenizer, args, device, bf16: bool) -> dict:
    """The same work with transformers.Trainer; real tokens are counted in its collator."""
    from transformers import DataCollatorWithPadding

    base = DataCollatorWithPadding(tokenizer)
    seen = {"real": 0, "padded": 0, "batches": 0}

    def collate(features):
        batch = base(features)
        seen["real"] += int(batch["attention_mask"].sum())
        seen["padded"] += batch["attention_mask"].numel()
        seen["batches"] += 1
        return batch

    clock = _StepClock(args.warmup, device)
    torch.manual_seed(0)
    reset_peak_memory(device)
    training_args = TrainingArguments(
        output_dir="/tmp/finetune_speed_trainer", max_steps=args.warmup + args.steps, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, weight_decay=0.01, warmup_steps=0.1, max_grad_norm=1.0,
        train_sampling_strategy="group_by_length", report_to="none", save_strategy="no",
        logging_strategy="steps", logging_steps=1,
        disable_tqdm=True, seed=0, bf16=bf16, use_cpu=device.type == "cpu", dataloader_num_workers=0,
    )
    trainer = Trainer(model=load_classifier(args.checkpoint), args=training_args, train_dataset=data,
                      data_collator=collate, callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # keep the per-step loss in log_history, off the screen
    trainer.train()
    sync(device)
    step_losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    seconds = time.perf_counter() - clock.start
    # The data loader may collate a batch ahead of the last step: use the mean per collated batch.
    real = seen["real"] / seen["batches"] * args.steps
    padded = seen["padded"] / seen["batches"] * args.steps
    return {"seconds": seconds, "real": real, "padded": padded, "loss": float(np.mean(step_losses[-5:])),
            "peak_mb": peak_memory_mb(device), "model": None}


def inference_rate(model, tokenizer, texts: list[str], batch_size: int, device, limit: int) -> float:
    """Sentences per second of the model in eval mode, dynamic padding, no gradients."""
    model.eval()
    texts = texts[:limit]
    with torch.no_grad():
        for i in range(0, min(len(texts), batch_size * 2), batch_size):  # warm-up
            model(**tokenizer(texts[i : i + batch_size], padding=True, return_tensors="pt").to(device))
        sync(device)
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            model(**tokenizer(texts[i : i + batch_size], padding=True, return_tensors="pt").to(device))
        sync(device)
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="minilm")
    parser.add_argument("--sample", type=int, default=2000, help="training snippets the batches are drawn from")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before the clock starts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--inference-sentences", type=int, default=256)
    args = parser.parse_args()

    env = setup(seed=0)
    device = env.device
    splits = load_rotten_tomatoes()
    tokenizer = load_tokenizer(args.checkpoint)
    data = tokenize_dataset(stratified_subset(splits["train"], args.sample), tokenizer, max_length=128)
    amp_dtype = None
    if device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif cpu_has_fast_bf16():
        amp_dtype = torch.bfloat16
    loaders = {
        "article (pad to 128)": (lambda: make_loader(data, tokenizer, args.batch_size, shuffle=True, pad_to=128), None),
        "dynamic padding": (lambda: make_loader(data, tokenizer, args.batch_size, shuffle=True), None),
        "dynamic + grouped": (lambda: make_loader(data, tokenizer, args.batch_size, group_by_length=True), None),
    }
    if amp_dtype is not None:
        loaders[f"grouped + {str(amp_dtype).split('.')[-1]} autocast"] = (loaders["dynamic + grouped"][0], amp_dtype)
    else:
        print("grouped + bf16 autocast: skipped (this CPU has no bf16 matrix units; emulated bf16 is far slower)")
    results: dict[str, list[dict]] = {name: [] for name in [*loaders, "transformers.Trainer (grouped)"]}
    for repeat in range(args.repeats):
        for name, (make, dtype) in loaders.items():
            run = run_loop(make(), args, device, dtype)
            if repeat < args.repeats - 1:
                run["model"] = None  # keep one trained model (the last) for the inference figures
            results[name].append(run)
        results["transformers.Trainer (grouped)"].append(
            run_trainer(data, tokenizer, args, device, bf16=amp_dtype == torch.bfloat16 and device.type == "cuda"))
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    mean_len = np.mean([len(ids) for ids in data["input_ids"]])
    model = results["dynamic + grouped"][-1]["model"]
    per_token = flops_per_token(model, mean_len)
    peaks = {None: matmul_peak(device, torch.float32)}
    if amp_dtype is not None:
        peaks[amp_dtype] = matmul_peak(device, amp_dtype)
    print(f"\nmeasured matmul peak: fp32 {peaks[None] / 1e9:.0f} GFLOP/s"
          + (f", {str(amp_dtype).split('.')[-1]} {peaks[amp_dtype] / 1e9:.0f} GFLOP/s" if amp_dtype else ""))
    print(f"{args.steps} timed steps x batch {args.batch_size}, median of {args.repeats} interleaved repeats, "
          f"device {device.type}\n")
    header = f"{'configuration':34s} {'examples/s':>10s} {'real tok/s':>10s} {'padding':>8s} {'peak MB':>8s} " \
             f"{'loss':>6s} {'MFU':>6s}"
    print(header)
    print("-" * len(header))
    rates = {}
    for name, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        real = statistics.median(r["real"] for r in runs)
        padded = statistics.median(r["padded"] for r in runs)
        rates[name] = real / seconds
        dtype = next((d for n, (_, d) in loaders.items() if n == name), None)
        mfu = per_token * rates[name] / peaks.get(dtype, peaks[None])
        peak = runs[-1]["peak_mb"]
        print(f"{name:34s} {args.steps * args.batch_size / seconds:10.1f} {rates[name]:10.0f} "
              f"{1 - real / padded:8.1%} {'-' if peak is None else f'{peak:.0f}':>8s} {runs[-1]['loss']:6.3f} "
              f"{mfu:6.1%}")
    if device.type == "cpu":
        print(f"(peak memory on a CPU: the whole process peaked at {process_peak_rss_mb():.0f} MB resident)")
    best = max(rates, key=rates.get)
    print(f"\nbest configuration: {best}; {rates[best] / rates['article (pad to 128)']:.1f}x the article's recipe "
          "in real tokens/s")
    print(f"companion loop (dynamic + grouped) vs Trainer: "
          f"{rates['dynamic + grouped'] / rates['transformers.Trainer (grouped)']:.2f}x in real tokens/s")
    texts = list(splits["validation"]["text"])
    for batch_size in (1, 64):
        rate = inference_rate(model, tokenizer, texts, batch_size, device, args.inference_sentences)
        print(f"inference, batch {batch_size:2d}: {rate:7.1f} sentences/s")


if __name__ == "__main__":
    main()
