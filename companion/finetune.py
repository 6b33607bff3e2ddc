"""The walkthrough's fine-tune as a command-line program, for one process or many.

``book/scripts/finetune.py`` runs :func:`main`; so does ``python -m companion.finetune``.
It loads the Rotten Tomatoes splits, tokenizes them to 64 tokens, batches the training
split by length, fine-tunes with :func:`companion.training.fit` (AdamW, warm-up and
linear decay, clipping, early stopping on validation accuracy), evaluates the test split
once, and saves the model, a ``metrics.json`` and a model card (``README.md``, with the same
figures) into the output folder. Every step goes
through an :class:`~accelerate.Accelerator`, so the same program runs unchanged under
``accelerate launch``: one process or several, CPU or GPUs. See ``book/scaling_out.ipynb``.

    python book/scripts/finetune.py --train-size 2000 --epochs 1 --output _outputs/run
    accelerate launch --multi_gpu --num_processes 2 book/scripts/finetune.py --cpu --batch-size 16

Every argument is checked before anything is loaded (a bad one exits with status 2 and
argparse's one-line message), and so is the output folder (created, a write tried);
``--help`` answers at once, since torch and the rest are imported only to run. A run that
cannot get its data or that diverges exits with status 1 and one ``error:`` line, and saves
nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["build_parser", "run", "main", "run_program", "METRICS_FILE", "UsageError"]

#: Name of the file, in the output folder, that records what the run did and measured.
METRICS_FILE = "metrics.json"
#: :data:`companion.models.DEFAULT_CHECKPOINT`, repeated so that the parser needs no torch (a test checks it).
DEFAULT_CHECKPOINT = "minilm"
#: :data:`companion.models.POOLINGS`, repeated for the same reason.
POOLINGS = ("cls", "mean")
#: Values that argparse must read as negative numbers, not as options: -1, -0.5, -1e-5, -inf, -nan.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class UsageError(ValueError):
    """An argument that does not fit the checkpoint, the data or the output folder; reported as argparse does."""


def _number(kind: type, minimum: int | float = 0, maximum: int | None = None, above: bool = True) -> Callable:
    """An argparse type: a finite ``kind`` (``int`` or ``float``) above ``minimum`` (or equal when not ``above``)."""
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (above and value == minimum):
            bound = "positive" if (above and minimum == 0) else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _positive(kind: type) -> Callable:
    """An argparse type: a finite ``kind`` above zero."""
    return _number(kind)


def build_parser() -> argparse.ArgumentParser:
    """The program's arguments; ``--help`` prints them with their defaults."""
    parser = argparse.ArgumentParser(
        prog="finetune.py",
        description="Fine-tune a BERT checkpoint on the Rotten Tomatoes snippets (the walkthrough's recipe), "
        "on one process or, under `accelerate launch`, on several.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser._negative_number_matcher = NEGATIVE_NUMBER  # so that `--lr -1e-5` reaches the check below
    parser.add_argument(
        "--checkpoint",
        default=DEFAULT_CHECKPOINT,
        help="'minilm' (offline default), a local model folder, or a hub name when online",
    )
    parser.add_argument(
        "--pooling",
        choices=POOLINGS,
        default="mean",
        help="the head: 'mean' reads the mean of the token vectors, what all-MiniLM-L6-v2 was trained to give; "
        "'cls' reads BERT's pooler over [CLS]. Fine-tuned in full they score alike (the walkthrough compares them)",
    )
    parser.add_argument(
        "--train-size",
        type=_positive(int),
        default=None,
        help="size of a stratified sample of the training split; None: all of its 10,207 snippets",
    )
    parser.add_argument(
        "--eval-size",
        type=_positive(int),
        default=None,
        help="size of stratified samples of the validation and test splits; None: whole splits",
    )
    parser.add_argument("--epochs", type=_positive(int), default=3, help="upper bound; early stopping may end sooner")
    parser.add_argument(
        "--batch-size",
        type=_positive(int),
        default=32,
        help="examples per batch in EACH process; effective batch = this x processes x accumulation",
    )
    parser.add_argument(
        "--accumulation-steps",
        type=_positive(int),
        default=1,
        help="batches whose gradients are added up before each update",
    )
    parser.add_argument(
        "--lr",
        type=_positive(float),
        default=2e-4,
        help="peak learning rate (what the walkthrough's validation sweep chose, at batch 32)",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="auto: bf16 (or fp16) on a GPU, fp32 on a CPU without bf16 units, or what "
        "`accelerate launch --mixed_precision` / a config file says",
    )
    parser.add_argument(
        "--max-length",
        type=_number(int, 2, above=False),
        default=64,
        help="tokens kept per snippet, [CLS] and [SEP] included",
    )
    parser.add_argument("--patience", type=_positive(int), default=1, help="epochs without improvement before stopping")
    parser.add_argument(
        "--seed",
        type=_number(int, 0, 2**32 - 1, above=False),
        default=0,
        help="seed of the data sample, the batch order and the new head",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("_outputs") / "finetune",
        help="folder for the saved model, metrics.json and the model card (written by the main process only)",
    )
    parser.add_argument("--cpu", action="store_true", help="keep every process on the CPU (gloo between processes)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _check_checkpoint(name: str) -> None:
    """Refuse a ``--checkpoint`` that is a missing folder or a folder without ``config.json``; hub names pass."""
    if name == DEFAULT_CHECKPOINT:
        return
    path = Path(name).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise UsageError(f"argument --checkpoint: {name} is not a model folder (it holds no config.json)")
    looks_like_a_path = path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or name.endswith("/")
    if not path.exists() and looks_like_a_path:
        raise UsageError(
            f"argument --checkpoint: there is no folder {name}; give a model folder, a hub name, "
            f"or {DEFAULT_CHECKPOINT!r} (the default)"
        )


def _check_output(folder: Path) -> None:
    """Create the output folder and try a write there, before anything is loaded."""
    from companion.data import DataError, check_writable_folder

    try:
        check_writable_folder(folder, "the output folder", "choose another --output")
    except DataError as error:
        raise UsageError(f"argument --output: {error}") from None


def _data(args: argparse.Namespace, splits, tokenizer) -> dict:
    """The three splits, sampled to ``--train-size``/``--eval-size`` and tokenized."""
    from companion.batching import tokenize_dataset
    from companion.data import stratified_subset

    parts = {"train": splits["train"], "validation": splits["validation"], "test": splits["test"]}
    sizes = {"train": args.train_size, "validation": args.eval_size, "test": args.eval_size}
    for name, part in parts.items():
        if sizes[name] is not None and sizes[name] > len(part):
            option = "--train-size" if name == "train" else "--eval-size"
            raise UsageError(
                f"argument {option}: {sizes[name]:,} is more than the {len(part):,} snippets of the {name} split; "
                "leave it out to use the whole split"
            )
    return {
        name: tokenize_dataset(
            part if sizes[name] is None else stratified_subset(part, sizes[name], seed=args.seed),
            tokenizer,
            args.max_length,
        )
        for name, part in parts.items()
    }


def run(args: argparse.Namespace) -> dict:
    """Fine-tune, test and save as ``args`` say; return the record written to ``metrics.json``.

    Raises :class:`UsageError` for a ``--max-length`` beyond the checkpoint's positions or a
    sample size beyond its split, before any training.
    """
    import torch
    from accelerate.utils import gather_object

    from companion.batching import make_loader
    from companion.data import load_rotten_tomatoes
    from companion.distributed import effective_batch_size, evaluate, fit, make_accelerator, save_on_main
    from companion.env import quiet_libraries, seed_everything
    from companion.models import load_classifier, load_tokenizer

    started = time.perf_counter()
    quiet_libraries()
    accelerator = make_accelerator(args.precision, cpu=args.cpu)
    seed_everything(args.seed)
    tokenizer = load_tokenizer(args.checkpoint)
    if args.max_length > tokenizer.model_max_length:
        raise UsageError(
            f"argument --max-length: {args.max_length} is more than the {tokenizer.model_max_length} positions "
            f"of {args.checkpoint}"
        )
    with accelerator.main_process_first():  # the data cache is filled once
        splits = load_rotten_tomatoes(seed=0)
    data = _data(args, splits, tokenizer)
    train_loader = make_loader(data["train"], tokenizer, args.batch_size, group_by_length=True, seed=args.seed)
    val_loader = make_loader(data["validation"], tokenizer, batch_size=128)
    test_loader = make_loader(data["test"], tokenizer, batch_size=128)
    model = load_classifier(args.checkpoint, pooling=args.pooling)  # DDP copies process 0's weights to the others
    seed_everything(args.seed + accelerator.process_index)  # but each process draws its own dropout masks
    result = fit(
        model,
        train_loader,
        val_loader,
        accelerator,
        epochs=args.epochs,
        lr=args.lr,
        patience=args.patience,
        progress=not args.no_progress,
        accumulation_steps=args.accumulation_steps,
    )
    test = evaluate(model, test_loader, accelerator)
    written = save_on_main(accelerator, model, tokenizer, args.output)
    files_by_process = gather_object([len(written)])  # one count per process, in process order
    processes = accelerator.num_processes
    record = {
        "checkpoint": args.checkpoint,
        "pooling": args.pooling,
        "processes": processes,
        "distributed_type": str(accelerator.distributed_type).split(".")[-1],
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "threads_per_process": torch.get_num_threads(),
        "train_examples": len(data["train"]),
        "validation_examples": len(data["validation"]),
        "test_examples": int(test.confusion.sum()),
        "batch_size_per_process": args.batch_size,
        "accumulation_steps": args.accumulation_steps,
        "effective_batch_size": effective_batch_size(args.batch_size, processes, args.accumulation_steps),
        "lr": args.lr,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "updates": result.updates,
        "train_seconds": result.train_seconds,
        "updates_per_second": result.updates / result.train_seconds,
        "examples_per_second": len(data["train"]) * len(result.history) / result.train_seconds,
        "history": result.history,
        "test": test.as_dict(),
        "files_written_by_process": files_by_process,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "total_seconds": time.perf_counter() - started,
    }
    if accelerator.is_main_process:
        _write_metrics(record, Path(args.output))
        _write_card(record, Path(args.output), accelerator.unwrap_model(model))
    accelerator.print(
        f"{processes} process{'es' if processes > 1 else ''}, effective batch {record['effective_batch_size']}: "
        f"{result.updates} updates in "
        f"{result.train_seconds:.1f} s ({record['updates_per_second']:.2f}/s); "
        f"test accuracy {test.accuracy:.4f} on {record['test_examples']} snippets; saved to {args.output}"
    )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return record


def _write_metrics(record: dict, folder: Path) -> None:
    """``metrics.json`` as strict JSON (no NaN), written under a temporary name and then renamed."""
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    partial = folder / f".{METRICS_FILE}.{os.getpid()}.part"
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, folder / METRICS_FILE)


def _write_card(record: dict, folder: Path, model) -> Path:
    """The model card ``README.md`` beside the weights, with the figures of ``metrics.json``."""
    from companion.model_card import sentiment_card, write_model_card

    sizes = {name: record[f"{name}_examples"] for name in ("train", "validation", "test")}
    training = {"learning rate": record["lr"], "epochs run": record["epochs_run"],
                "effective batch": record["effective_batch_size"], "processes": record["processes"],
                "mixed precision": record["mixed_precision"]}
    card = sentiment_card(sizes, record["test"], base=record["checkpoint"], training=training)
    return write_model_card(folder, card, model)


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv`` (default: the command line), check the arguments and the output folder, and :func:`run`.

    A bad argument ends the program with status 2 and argparse's one-line message, before
    anything is loaded or trained; data that cannot be fetched, or a run that diverges,
    ends it with status 1 and one ``error:`` line on stderr, with nothing saved.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    created = not args.output.exists()
    try:
        _check_checkpoint(args.checkpoint)
        _check_output(args.output)
        return _run_reporting_errors(parser, args)
    except UsageError as error:
        parser.error(str(error))
    finally:
        if created and args.output.is_dir() and not any(args.output.iterdir()):
            args.output.rmdir()  # a failed run leaves no empty folder behind


def _run_reporting_errors(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """:func:`run`, with a checkpoint that cannot be loaded as a usage error and a failed run as one line."""
    from companion.data import DataError
    from companion.models import ModelError
    from companion.training import DivergedError

    try:
        return run(args)
    except ModelError as error:
        raise UsageError(f"argument --checkpoint: {error}") from None
    except (DataError, DivergedError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def run_program(command: Sequence[str], output: str | Path, threads_per_process: int | None = None) -> dict:
    """Run a command line of this program (plain, or under ``accelerate launch``) and return its metrics.

    ``threads_per_process`` sets ``OMP_NUM_THREADS`` for each process (see
    :func:`~companion.distributed.launch_env`). What the program printed is printed here;
    if it fails, the end of its error output is raised as a ``RuntimeError``. Returns the
    ``metrics.json`` it wrote into ``output``. Used in ``book/scaling_out.ipynb``.
    """
    from companion.distributed import launch_env

    done = subprocess.run(list(command), env=launch_env(threads_per_process), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"exit status {done.returncode}: {done.stderr[-3000:]}")
    print(done.stdout.strip())
    return json.loads((Path(output) / METRICS_FILE).read_text(encoding="utf-8"))


if __name__ == "__main__":  # pragma: no cover - exercised through book/scripts/finetune.py
    main()
