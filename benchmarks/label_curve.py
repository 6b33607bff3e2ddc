"""The learning curve of book/limits.ipynb with more seeds, or with noisy labels.

The chapter fine-tunes on nested samples of 100 to 3,000 training snippets, repeating only
the smallest sizes with three seeds to stay within its time budget. This script runs every
size with every seed asked for, and, with ``--noise``, flips that share of each sample's
labels at random first (the article's other worry about labelled data: its quality).
Each run is the chapter's: ``companion.limits.fine_tune_on`` at the walkthrough's rate, a
fixed schedule (``epochs_for``), tested once on the whole test split.

    .venv/bin/python benchmarks/label_curve.py --sizes 100 300 1000 3000 --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/label_curve.py --sizes 1000 --seeds 0 1 2 --noise 0 0.2

Prints one line per run and, per size and noise level, the mean, lowest and highest test
accuracy; ``--json`` also writes the runs with the machine and versions.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from companion import setup
from companion.batching import make_loader, tokenize_dataset
from companion.data import load_rotten_tomatoes
from companion.env import cpu_kind
from companion.limits import epochs_for, fine_tune_on, nested_subsets
from companion.models import load_tokenizer


def flip_labels(sample, share: float, seed: int):
    """``sample`` with the labels of a random ``share`` of its rows flipped (0 <-> 1)."""
    flip = np.random.default_rng(seed).random(len(sample)) < share
    return sample.map(lambda row, i: {"label": 1 - row["label"] if flip[i] else row["label"]}, with_indices=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="minilm")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0], help="shares of labels flipped")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--min-updates", type=int, default=50)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--json", type=Path, help="also write the runs to this JSON file")
    args = parser.parse_args()
    if any(not 0 <= share < 0.5 for share in args.noise):
        parser.error("--noise shares must lie in [0, 0.5)")

    env = setup(seed=0)
    tokenizer = load_tokenizer(args.checkpoint)
    splits = load_rotten_tomatoes(seed=0)
    test_loader = make_loader(tokenize_dataset(splits["test"], tokenizer, 64), tokenizer, 128, group_by_length=True)
    runs, start = [], time.perf_counter()
    for seed in args.seeds:
        samples = nested_subsets(splits["train"], args.sizes, seed=seed)
        for n in sorted(args.sizes):
            for share in args.noise:
                sample = flip_labels(samples[n], share, seed) if share else samples[n]
                _, point = fine_tune_on(sample, tokenizer, test_loader, lr=args.lr, seed=seed,
                                        epochs=epochs_for(n, 32, args.min_updates, min_epochs=1),
                                        checkpoint=args.checkpoint, device=env.device, precision=args.precision)
                runs.append(asdict(point) | {"noise": share})
                print(f"seed {seed} | {n:>5} snippets | noise {share:.0%} | {point.epochs} epochs, {point.updates} "
                      f"updates, {point.train_seconds:.0f} s | test accuracy {point.accuracy:.4f}", flush=True)
    table = pd.DataFrame(runs).groupby(["examples", "noise"])["accuracy"].agg(["mean", "min", "max", "count"])
    print(table.round(4).to_string())
    if args.json:
        record = {"what": "learning curve of book/limits.ipynb (benchmarks/label_curve.py)", "lr": args.lr,
                  "runs": runs, "cpu": cpu_kind() if env.device.type == "cpu" else str(env.device),
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "date": str(date.today()),
                  "seconds": time.perf_counter() - start}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
