"""How fast does fine-tuning run on this machine, and what does each technique buy?

Same checkpoint, same data sample, same batch size, same number of optimizer steps for
every configuration, measured in one run: repeats are interleaved (config A, B, C, A, B,
C, ...), warm-up steps are excluded, and the median repeat is reported. Each
configuration trains on a fixed list of collated batches, so data loading is left out.

    .venv/bin/python benchmarks/finetune_speed.py                 # CPU here; CUDA when present
    .venv/bin/python benchmarks/finetune_speed.py --steps 20 --repeats 5 --compile
    .venv/bin/python benchmarks/finetune_speed.py --json companion/records/cpu-KIND.json

Configurations (1-4 run the book's own ``companion.training.train_epoch``):
  1. article      -- every example padded to 128 tokens (the source article's recipe)
  2. dynamic      -- each batch padded to its longest example
  3. grouped      -- dynamic padding + length-grouped batches (shuffled buckets)
  3a. grouped, foreach AdamW -- 3 with torch's default (non-fused) AdamW kernel
  3b. grouped + torch.compile -- only with --compile
  4. grouped + bf16 autocast (CPU with bf16 units) or AMP (CUDA); skipped otherwise
  5. transformers.Trainer on exactly the batches of 3 (same order, same padding)

Per configuration: examples/s, real (non-pad) tokens/s, padding fraction, final training
loss (mean of the last 5 steps), model FLOP utilisation ((6 x non-embedding parameters +
attention term) x real tokens/s over the matmul peak measured here for the same dtype);
then activation memory per batch size, and inference sentences/s at batch sizes 1 and 64.
"""

from __future__ import annotations

import argparse
import itertools
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch

from companion import setup
from companion.batching import make_loader, tokenize_dataset
from companion.data import load_rotten_tomatoes, stratified_subset
from companion.env import cpu_kind, processor_name
from companion.models import load_classifier, load_tokenizer
from companion.speed import (
    activation_bytes,
    flops_per_token,
    inference_rate,
    interleave,
    matmul_peak,
    paired_speedup,
    speed_table,
    time_trainer,
    time_training,
)
from companion.training import resolve_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="minilm")
    parser.add_argument("--sample", type=int, default=2000, help="training snippets the batches are drawn from")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before the clock starts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--inference-sentences", type=int, default=256)
    parser.add_argument("--json", type=Path,
                        help="also write the figures to this JSON file (the book's records: companion/records/)")
    args = parser.parse_args()

    env = setup(seed=0)
    device = env.device
    tokenizer = load_tokenizer(args.checkpoint)
    splits = load_rotten_tomatoes()
    data = tokenize_dataset(stratified_subset(splits["train"], args.sample), tokenizer, max_length=128)
    n = args.warmup + args.steps

    def first_batches(**kwargs) -> list[dict]:
        return list(itertools.islice(make_loader(data, tokenizer, args.batch_size, **kwargs), n))

    batches = {
        "article (pad to 128)": first_batches(shuffle=True, pad_to=128),
        "dynamic padding": first_batches(shuffle=True),
        "dynamic + grouped": first_batches(group_by_length=True),
    }
    make_model = partial(load_classifier, args.checkpoint)
    grouped = batches["dynamic + grouped"]
    runs = {name: partial(time_training, make_model, b, args.warmup, device) for name, b in batches.items()}
    runs["grouped, foreach AdamW"] = partial(time_training, make_model, grouped, args.warmup, device, fused=False)
    if args.compile:
        runs["grouped + torch.compile"] = partial(
            time_training, make_model, grouped, args.warmup + 3, device, compile_model=True
        )
    amp = resolve_precision(device, "auto")  # bf16/fp16 on CUDA, bf16 on a CPU with bf16 units, else None
    amp_name = f"grouped + {str(amp).split('.')[-1]} autocast" if amp else None
    if amp:
        runs[amp_name] = partial(time_training, make_model, grouped, args.warmup, device, amp)
    else:
        print("grouped + bf16 autocast: skipped (this CPU has no bf16 matrix units; emulated bf16 is far slower)")
    runs["transformers.Trainer (same batches)"] = partial(time_trainer, make_model, grouped, args.warmup, device)
    if amp == torch.bfloat16:
        runs["Trainer + bf16 (same batches)"] = partial(time_trainer, make_model, grouped, args.warmup, device, True)
    results = interleave(runs, args.repeats)

    fp32_peak = matmul_peak(device, torch.float32)
    peaks = {name: fp32_peak for name in runs}
    if amp:
        peaks[amp_name] = matmul_peak(device, amp)
        if "Trainer + bf16 (same batches)" in peaks:
            peaks["Trainer + bf16 (same batches)"] = peaks[amp_name]
    model = make_model()
    mean_length = float(np.mean([len(ids) for ids in data["input_ids"]]))
    table = speed_table(results, flops_per_token(model, mean_length), peaks)
    print(f"\nmatmul peak (2048^3): fp32 {fp32_peak / 1e9:.0f} GFLOP/s"
          + (f", {str(amp).split('.')[-1]} {peaks[amp_name] / 1e9:.0f} GFLOP/s" if amp else ""))
    print(f"{args.steps} timed steps x batch {args.batch_size} after {args.warmup} warm-up steps, "
          f"median of {args.repeats} interleaved repeats, device {device.type}\n")
    formats = {"examples/s": "{:.1f}".format, "real tokens/s": "{:.0f}".format, "padding": "{:.1%}".format,
               "loss": "{:.3f}".format, "MFU": "{:.1%}".format}
    print(table.to_string(formatters=formats))
    rate = table["real tokens/s"]
    best = rate.drop([name for name in rate.index if "Trainer" in name]).idxmax()
    ratios = {
        "best_vs_article": rate[best] / rate["article (pad to 128)"],
        "companion_vs_trainer": rate["dynamic + grouped"] / rate["transformers.Trainer (same batches)"],
        "fused_vs_foreach": rate["dynamic + grouped"] / rate["grouped, foreach AdamW"],
        # step by step on the same batches, median over steps and repeats: robust to a disturbed step
        "companion_vs_trainer_paired": paired_speedup(results["transformers.Trainer (same batches)"],
                                                      results["dynamic + grouped"]),
    }
    if "Trainer + bf16 (same batches)" in results:
        ratios["companion_bf16_vs_trainer_bf16_paired"] = paired_speedup(results["Trainer + bf16 (same batches)"],
                                                                         results[amp_name])
    print(f"\nbest configuration of the book's loop: {best}; {ratios['best_vs_article']:.1f}x the article's recipe")
    print(f"book loop vs Trainer on the same batches: {ratios['companion_vs_trainer']:.2f}x in real tokens/s "
          f"(median repeat), {ratios['companion_vs_trainer_paired']:.2f}x step by step (median of paired steps)")
    if "companion_bf16_vs_trainer_bf16_paired" in ratios:
        print(f"the same in bf16: {ratios['companion_bf16_vs_trainer_bf16_paired']:.2f}x step by step")
    print(f"fused vs foreach AdamW: {ratios['fused_vs_foreach']:.2f}x")

    memory = {}
    longest = max(grouped, key=lambda b: b["input_ids"].shape[1])
    for size in (8, 16, 32):
        memory[size] = activation_bytes(model, {k: v[:size] for k, v in longest.items()}) / 2**20
        print(f"activation memory, batch {size:2d} x {longest['input_ids'].shape[1]} tokens: {memory[size]:6.1f} MB")
    if device.type == "cuda":
        print(f"peak CUDA memory over the run: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    texts = list(splits["validation"]["text"])[: args.inference_sentences]
    inference = {size: inference_rate(model, tokenizer, texts, size, device) for size in (1, 64)}
    for size, value in inference.items():
        print(f"inference, batch {size:2d}: {value:7.1f} sentences/s")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "command": "python benchmarks/finetune_speed.py " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("json", "compile")
            ) + (" --compile" if args.compile else ""),
            "machine": {"processor": processor_name(), "kind": cpu_kind(), "threads": torch.get_num_threads(),
                        "device": device.type, "torch": torch.__version__},
            "matmul_peak_gflops": {"fp32": fp32_peak / 1e9, **({str(amp): peaks[amp_name] / 1e9} if amp else {})},
            "table": table.reset_index().to_dict(orient="records"),
            "ratios": ratios,
            "activation_mb": memory,
            "inference_sentences_per_s": inference,
        }
        args.json.write_text(json.dumps(record, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
