"""How good is good: the walkthrough's recipe on the WHOLE training split, three epochs.

The walkthrough trains, on a CPU, on a sample of the training split for one epoch, to
stay within its time budget. This script measures what the same recipe reaches without
that limit: every one of the 10,207 training snippets, three epochs (all of them run;
validation keeps the best), then the test split once, for each head asked for. The
chapter places its own result beside the record of the head it chose.

    .venv/bin/python benchmarks/full_split.py --pooling cls mean --lr 2e-4 \\
        --json companion/records/full_split.json

Prints one line per epoch and the test metrics; ``--json`` also writes them, with the
machine, the versions and the seconds it took, under ``runs`` by head (a head not run
this time keeps its earlier record in the file).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from companion import setup
from companion.batching import make_loader, tokenize_dataset
from companion.data import load_rotten_tomatoes
from companion.env import cpu_kind, seed_everything
from companion.models import POOLINGS, load_classifier, load_tokenizer
from companion.training import evaluate, fit, resolve_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="minilm")
    parser.add_argument("--pooling", choices=POOLINGS, nargs="+", default=list(POOLINGS))
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path,
                        help="also write the record to this JSON file (the book's: companion/records/full_split.json)")
    args = parser.parse_args()

    env = setup(seed=args.seed)
    tokenizer = load_tokenizer(args.checkpoint)
    splits = load_rotten_tomatoes(seed=0)
    data = {name: tokenize_dataset(part, tokenizer, args.max_length) for name, part in splits.items()}
    runs = {}
    for pooling in args.pooling:
        runs[pooling] = run(args, pooling, data, tokenizer, env.device)
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.is_file() else {}
        record = {"what": "the walkthrough's recipe on the whole training split (benchmarks/full_split.py)",
                  "runs": {**old.get("runs", {}), **runs}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"record written to {args.json}")


def run(args: argparse.Namespace, pooling: str, data: dict, tokenizer, device: torch.device) -> dict:
    """Fine-tune one head on the whole training split; the record of the run."""
    started = time.perf_counter()
    seed_everything(args.seed)
    train = make_loader(data["train"], tokenizer, args.batch_size, group_by_length=True, seed=args.seed)
    val = make_loader(data["validation"], tokenizer, batch_size=128)
    test = make_loader(data["test"], tokenizer, batch_size=128)
    model = load_classifier(args.checkpoint, pooling=pooling)
    result = fit(model, train, val, epochs=args.epochs, lr=args.lr, patience=args.epochs, device=device,
                 precision=args.precision, progress=False)  # patience = epochs: every epoch runs
    for row in result.history:
        print(pooling, {k: round(v, 4) for k, v in row.items()})
    metrics = evaluate(model, test, device, resolve_precision(device, args.precision))
    print(f"{pooling}: best epoch {result.best_epoch}; test {({k: round(v, 4) for k, v in metrics.as_dict().items()})}")
    return {
        "checkpoint": args.checkpoint,
        "pooling": pooling,
        "lr": args.lr,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "precision": str(resolve_precision(device, args.precision) or "fp32").replace("torch.", ""),
        "train_examples": len(data["train"]),
        "best_epoch": result.best_epoch,
        "history": result.history,
        "test": metrics.as_dict(),
        "test_examples": int(metrics.confusion.sum()),
        "train_seconds": result.train_seconds,
        "total_seconds": time.perf_counter() - started,
        "device": str(device),
        "cpu": cpu_kind(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": date.today().isoformat(),
    }


if __name__ == "__main__":
    main()
