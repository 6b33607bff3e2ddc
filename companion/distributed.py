"""Beyond one process: Hugging Face Accelerate around the book's own training loop.

The book does not write a distributed engine. ``accelerate`` does the work: it starts the
processes (``accelerate launch``), wraps the model in PyTorch's DistributedDataParallel
(or FSDP or DeepSpeed when an ``accelerate config`` file asks for them), gives each process
its shard of every data loader, averages gradients, and gathers predictions back. This
module holds the few helpers the book's loop needs around it: an :class:`~accelerate.Accelerator`
configured from the book's precision names, data loaders whose length-grouped batches
shard without losses, saving from the main process only, the launch command, and the
arithmetic of the effective batch size; and the loop itself under an accelerator:
:func:`train_epoch`, :func:`predict`, :func:`evaluate` and :func:`fit`, the plain loop
of :mod:`companion.training` with the few lines Accelerate changes (``accelerator.backward``,
``no_sync`` while gradients accumulate, ``clip_grad_norm_`` and ``gather_for_metrics``
through the accelerator). Used in ``book/scaling_out.ipynb`` and
``book/scripts/finetune.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import BatchSampler, DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from companion.models import save_model
from companion.training import (
    FitResult,
    Metrics,
    batch_groups,
    check_batch,
    check_loss,
    metrics_from_logits,
    num_labels_of,
    optimizer_for_fit,
    resolve_precision,
    set_epoch,
    train_with_early_stopping,
)

__all__ = [
    "make_accelerator",
    "DynamicBatches",
    "shardable",
    "prepared_loader",
    "unwrap",
    "save_on_main",
    "launch_command",
    "accelerate_config",
    "write_accelerate_config",
    "launch_env",
    "effective_batch_size",
    "scaled_learning_rate",
    "train_epoch",
    "predict",
    "evaluate",
    "fit",
]


def _mixed_precision(precision: str, cpu: bool) -> str | None:
    """Accelerate's name ("no", "bf16", "fp16") for one of the book's precision names."""
    if precision == "auto" and os.environ.get("ACCELERATE_MIXED_PRECISION", "no") != "no":
        return None  # `accelerate launch --mixed_precision bf16` or a config file decided
    if cpu or not torch.cuda.is_available():
        device = torch.device("cpu")
    else:
        device = torch.device("cuda")
    dtype = resolve_precision(device, precision)
    return {None: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def make_accelerator(precision: str = "auto", cpu: bool = False, **kwargs) -> Accelerator:
    """An :class:`~accelerate.Accelerator` for ``precision`` ("auto", "fp32", "bf16", "fp16").

    The names are those of :func:`companion.training.resolve_precision`: "auto" means
    bf16 (or fp16) autocast on a GPU and fp32 on a CPU without bf16 units, unless the
    launcher or an ``accelerate config`` file already chose a mixed precision other than
    "no" (Accelerate's default; ask for "fp32" to insist on full precision). ``cpu=True``
    keeps every process on the CPU (several processes then talk through the gloo
    backend). Extra keyword arguments go to ``Accelerator``.

    >>> make_accelerator("fp32", cpu=True).mixed_precision
    'no'
    """
    return Accelerator(cpu=cpu, mixed_precision=_mixed_precision(precision, cpu), **kwargs)


class DynamicBatches:
    """A batch sampler seen as batches of no fixed size, so that Accelerate shards every batch.

    Accelerate deals whole batches to the processes in turn. When the batch sampler
    announces a ``batch_size``, it treats a shorter batch as the end of the data; the
    length-grouped batches of :class:`~companion.batching.LengthGroupedBatchSampler` can be
    shorter in the middle of an epoch, and would be dropped. Without a ``batch_size``
    every batch is dealt, and the last round is completed with batches from the start so
    that every process takes the same number of steps.
    """

    def __init__(self, batch_sampler: Sequence[list[int]]) -> None:
        self.batch_sampler = batch_sampler  # fit() calls set_epoch on it through this name

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batch_sampler)

    def __len__(self) -> int:
        return len(self.batch_sampler)


def shardable(loader: DataLoader) -> DataLoader:
    """``loader`` itself, or a copy over :class:`DynamicBatches` when its batch sampler is a custom one."""
    sampler = loader.batch_sampler
    if sampler is None or type(sampler) is BatchSampler or isinstance(sampler, DynamicBatches):
        return loader
    return DataLoader(
        loader.dataset,
        batch_sampler=DynamicBatches(sampler),
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def prepared_loader(accelerator: Accelerator, loader: DataLoader) -> DataLoader:
    """``loader`` sharded across the processes by ``accelerator`` (unchanged if already prepared)."""
    from accelerate.data_loader import DataLoaderDispatcher, DataLoaderShard

    if isinstance(loader, DataLoaderShard | DataLoaderDispatcher):
        return loader
    return accelerator.prepare_data_loader(shardable(loader))


def unwrap(model: nn.Module, accelerator: Accelerator | None = None) -> nn.Module:
    """The plain model inside a DistributedDataParallel (or compiled) wrapper; ``model`` when alone."""
    if accelerator is not None:
        return accelerator.unwrap_model(model)
    return getattr(model, "module", model)


def save_on_main(
    accelerator: Accelerator, model: nn.Module, tokenizer: PreTrainedTokenizerBase, folder: str | Path
) -> list[Path]:
    """Save with :func:`~companion.models.save_model` from the main process only; return what this process wrote.

    Every process waits until all have finished training, the main process writes the
    unwrapped model and the tokenizer, and every process waits again until the files
    exist. The other processes write nothing and get an empty list. (Under FSDP the
    weights are sharded: gather them first with ``accelerator.get_state_dict``.)
    """
    accelerator.wait_for_everyone()
    written: list[Path] = []
    if accelerator.is_main_process:
        folder = Path(folder)
        before = _stamps(folder)
        save_model(accelerator.unwrap_model(model), tokenizer, folder)
        written = sorted(p for p, stamp in _stamps(folder).items() if before.get(p) != stamp)
    accelerator.wait_for_everyone()
    return written


def _stamps(folder: Path) -> dict[Path, int]:
    """Modification time (ns) of every file under ``folder``."""
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def launch_command(
    script: str | Path,
    args: Sequence[str] = (),
    num_processes: int = 2,
    cpu: bool = True,
    mixed_precision: str = "no",
    config_file: str | Path | None = None,
    module: bool = False,
) -> list[str]:
    """The ``accelerate launch`` command line that runs ``script`` in ``num_processes`` processes.

    Several processes on one machine are started by ``--multi_gpu``, which despite its
    name is Accelerate's torchrun launcher; with ``cpu=True`` the script is told
    ``--cpu`` so that each process asks its :class:`~accelerate.Accelerator` for the CPU
    and the processes talk through gloo. (``accelerate launch --cpu --num_processes 2``
    alone starts a single process unless MPI is set up.) ``--main_process_port 0`` picks a
    free port, so that two launches on one machine do not collide. With ``config_file``
    the file's settings apply instead of the flags. ``module=True`` runs ``script`` as a
    module name, like ``python -m``.

    >>> launch_command("train.py", ["--epochs", "1"])[3:6]
    ['--multi_gpu', '--num_processes', '2']
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file is not None:
        command += ["--config_file", str(config_file)]
    elif num_processes > 1:
        command += ["--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1"]
        command += ["--mixed_precision", mixed_precision, "--dynamo_backend", "no", "--main_process_port", "0"]
    else:
        command += ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", mixed_precision]
        command += ["--dynamo_backend", "no"]
    if module:
        command.append("-m")
    command.append(str(script))
    command += list(args)
    if cpu:
        command.append("--cpu")
    return command


def accelerate_config(kind: str = "gpus", num_processes: int = 4, mixed_precision: str = "bf16") -> dict:
    """The settings of an ``accelerate config`` file for one machine with ``num_processes`` GPUs.

    ``kind="gpus"``: one process per GPU, DistributedDataParallel over NCCL (what the
    chapter tests on the CPU, with gloo). ``kind="fsdp"``: Fully Sharded Data Parallel
    (FSDP2), each BERT layer's parameters, gradients and optimiser state sharded across
    the GPUs. Pass the written file to ``accelerate launch --config_file``.
    """
    if kind not in ("gpus", "fsdp"):
        raise ValueError(f"kind must be 'gpus' or 'fsdp', got {kind!r}")
    if num_processes < 1 or mixed_precision not in ("no", "bf16", "fp16"):
        raise ValueError(
            f"need num_processes >= 1 and mixed_precision no/bf16/fp16, got {num_processes}, {mixed_precision!r}"
        )
    config = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU" if kind == "gpus" else "FSDP",
        "mixed_precision": mixed_precision,
        "num_machines": 1,
        "num_processes": num_processes,
        "machine_rank": 0,
        "main_process_port": 0,
        "use_cpu": False,
    }
    if kind == "fsdp":
        config["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_transformer_layer_cls_to_wrap": "BertLayer",
            "fsdp_reshard_after_forward": True,
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_offload_params": False,
        }
    return config


def write_accelerate_config(path: str | Path, **settings) -> Path:
    """Write :func:`accelerate_config` (``settings`` are its arguments) as YAML to ``path``; return it."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(accelerate_config(**settings), sort_keys=False), encoding="utf-8")
    return path


def launch_env(threads_per_process: int | None = 1) -> dict[str, str]:
    """A copy of this process's environment with ``OMP_NUM_THREADS=threads_per_process``.

    Each launched process otherwise starts as many threads as the machine has cores: two
    processes on two cores would then run four busy threads and slow each other down.
    ``None`` leaves the variable as it is.
    """
    env = dict(os.environ)
    if threads_per_process is not None:
        if threads_per_process < 1:
            raise ValueError(f"threads_per_process must be at least 1, got {threads_per_process}")
        env["OMP_NUM_THREADS"] = str(threads_per_process)
    return env


def effective_batch_size(per_process: int, processes: int = 1, accumulation_steps: int = 1) -> int:
    """Examples behind one optimiser update: per-process batch x processes x accumulation steps.

    >>> effective_batch_size(16, processes=2), effective_batch_size(32, processes=4, accumulation_steps=2)
    (32, 256)
    """
    for name, value in (
        ("per_process", per_process),
        ("processes", processes),
        ("accumulation_steps", accumulation_steps),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    return per_process * processes * accumulation_steps


def scaled_learning_rate(lr: float, batch_size: int, new_batch_size: int, rule: str = "linear") -> float:
    """A starting point for the learning rate at ``new_batch_size``, from one that worked at ``batch_size``.

    ``"linear"`` scales with the batch (Goyal et al., for SGD), ``"sqrt"`` with its square
    root (often closer for Adam), ``"none"`` keeps it. A heuristic to start a search from,
    not a law: check it on the validation split.

    >>> scaled_learning_rate(1e-4, 32, 128), scaled_learning_rate(1e-4, 32, 128, "sqrt")
    (0.0004, 0.0002)
    """
    if lr <= 0 or batch_size < 1 or new_batch_size < 1:
        raise ValueError(f"need lr > 0 and batch sizes >= 1, got {lr}, {batch_size}, {new_batch_size}")
    factors = {"linear": new_batch_size / batch_size, "sqrt": (new_batch_size / batch_size) ** 0.5, "none": 1.0}
    if rule not in factors:
        raise ValueError(f"rule must be 'linear', 'sqrt' or 'none', got {rule!r}")
    return lr * factors[rule]


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    accelerator: Accelerator,
    max_grad_norm: float | None = 1.0,
    progress: bool = True,
    desc: str = "train",
    accumulation_steps: int = 1,
) -> list[float]:
    """:func:`companion.training.train_epoch` through ``accelerator``; each loss is the mean over processes.

    ``model``, ``optimizer``, ``loader`` and ``scheduler`` come from ``accelerator.prepare``.
    What differs from the plain loop: the backward pass and the clipping go through the
    accelerator (which applies its mixed precision), gradients are averaged across the
    processes once per update (``no_sync`` before the last batch of an accumulation
    group), and only the main process shows a progress bar.
    """
    num_labels = num_labels_of(unwrap(model, accelerator))
    model.train()
    losses = []
    batches = tqdm(loader, desc=desc, disable=not (progress and accelerator.is_main_process), leave=False)
    for group in batch_groups(batches, accumulation_steps):
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(group):
            check_batch(batch, num_labels)
            last = i == len(group) - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(model):
                loss = model(**batch).loss
                accelerator.backward(loss / len(group))
            losses.append(check_loss(accelerator.reduce(loss.detach(), "mean"), len(losses) + 1, optimizer))
        if max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    if not losses:
        raise ValueError("the training loader produced no batches (empty data)")
    return losses


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`companion.training.predict` with the processes sharing the work.

    Each process predicts its shard of ``loader`` (prepared here if it is not yet) and
    ``gather_for_metrics`` brings all of them back to every process in the loader's
    order, without the examples repeated to even out the last batches.
    """
    loader = prepared_loader(accelerator, loader)
    model.to(accelerator.device).eval()
    logits, labels = [], []
    for batch in loader:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        out, batch_labels = accelerator.gather_for_metrics((model(**inputs).logits, batch["labels"]))
        logits.append(out.float().cpu())
        labels.append(batch_labels.cpu())
    if not logits:
        raise ValueError("the evaluation loader produced no batches (empty data)")
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def evaluate(model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> Metrics:
    """:func:`companion.training.evaluate` with the processes sharing the work; every process gets the metrics."""
    return metrics_from_logits(*predict(model, loader, accelerator))


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    accelerator: Accelerator,
    epochs: int = 3,
    lr: float = 5e-5,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    max_grad_norm: float | None = 1.0,
    patience: int = 1,
    metric: str = "accuracy",
    progress: bool = True,
    accumulation_steps: int = 1,
) -> FitResult:
    """:func:`companion.training.fit` under ``accelerator`` (:func:`make_accelerator`): one process or many.

    Model, optimiser, both loaders and the schedule go through ``accelerator.prepare``;
    the accelerator's mixed precision applies. Each process trains on its shard of the
    batches; the schedule is defined over the batches of ``train_loader`` as given, and
    Accelerate advances it by one step per process at every update, so that it ends with
    the last update. Validation metrics are gathered from all processes, so every
    process takes the same early-stopping decision. The ``model`` passed in is trained
    in place and holds the best epoch's weights at the end.
    """
    optimizer, scheduler = optimizer_for_fit(
        model, train_loader, val_loader, epochs, lr, weight_decay, warmup_ratio, patience, metric, accumulation_steps
    )
    wrapped, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, shardable(train_loader), shardable(val_loader), scheduler
    )

    def train_one_epoch(epoch: int) -> list[float]:
        set_epoch(train_loader, epoch)
        return train_epoch(wrapped, train_loader, optimizer, scheduler, accelerator, max_grad_norm, progress,
                           f"epoch {epoch}", accumulation_steps)  # fmt: skip

    return train_with_early_stopping(
        unwrap(wrapped, accelerator), train_one_epoch, lambda: evaluate(wrapped, val_loader, accelerator), epochs,
        patience, metric, accumulation_steps,
    )  # fmt: skip
