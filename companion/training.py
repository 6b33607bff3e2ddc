"""The fine-tuning loop: optimiser, schedule, one epoch, evaluation, and ``fit``.

Fixes the article's loop: the tokenizer is not a global, the seed is set, AdamW comes
from ``torch.optim`` (``transformers.AdamW`` was removed) with no weight decay on biases
and LayerNorm weights, the learning rate warms up then decays linearly, gradients are
clipped, the validation set chooses the epoch (early stopping keeps the best weights),
and ``evaluate`` takes the argmax over the **last** dimension — one label per sentence,
not per token. Used in ``book/walkthrough.ipynb``.

Every loop function takes an optional ``accelerator`` (an ``accelerate.Accelerator``,
see :mod:`companion.distributed`): the same code then runs in several processes under
``accelerate launch`` (``book/scaling_out.ipynb``). Without one, nothing changes.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

if TYPE_CHECKING:  # accelerate is imported only when an accelerator is passed
    from accelerate import Accelerator

__all__ = [
    "decay_parameter_groups",
    "make_optimizer",
    "make_scheduler",
    "cpu_has_fast_bf16",
    "resolve_precision",
    "check_labels",
    "train_epoch",
    "predict",
    "Metrics",
    "evaluate",
    "FitResult",
    "fit",
]


def decay_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser groups: weights that decay, and biases plus normalisation weights that do not."""
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d)
    no_decay = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "bias" or isinstance(module, norm_types):
                no_decay.add(id(param))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters (everything is frozen)")
    return [
        {"params": [p for p in trainable if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in trainable if id(p) in no_decay], "weight_decay": 0.0},
    ]


def make_optimizer(
    model: nn.Module, lr: float = 5e-5, weight_decay: float = 0.01, fused: bool | None = None
) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with decoupled weight decay on weights only.

    ``fused=None`` picks torch's fused kernel when every trainable parameter is a floating
    point tensor on a CPU or CUDA device: one kernel updates all parameters, where the
    default ``foreach`` implementation runs several passes over them. On the book's CPU
    this took an AdamW step of the 22.7M-parameter MiniLM classifier from about 110 ms to
    about 22 ms (see ``book/speed.ipynb``). Pass ``fused=False`` for the default kernel.
    """
    if lr <= 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    groups = decay_parameter_groups(model, weight_decay)
    if fused is None:
        params = [p for group in groups for p in group["params"]]
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, fused=fused)


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to zero."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)


def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively (AMX or AVX-512 BF16).

    Without such units, bf16 on a CPU is emulated and far slower than fp32.
    """
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("auto", "fp32", "bf16", "fp16") on ``device``.

    ``None`` means plain fp32. "auto" picks bf16 on a CUDA GPU that supports it, else
    fp16 on CUDA, bf16 on a CPU with native bf16 units, and fp32 otherwise.
    """
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("fp16 autocast is for CUDA; use 'bf16' or 'fp32' on this device")
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def check_labels(labels: Iterable[int] | torch.Tensor, num_labels: int) -> None:
    """Raise a clear ``ValueError`` if any label is outside ``0 .. num_labels - 1``.

    On a GPU an out-of-range label otherwise surfaces as an opaque device-side assert.
    """
    values = torch.as_tensor(labels if isinstance(labels, torch.Tensor) else list(labels))
    if values.numel() == 0:
        raise ValueError("no labels to check (empty data)")
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= num_labels:
        raise ValueError(f"labels must be in 0..{num_labels - 1} for a {num_labels}-class head; found {low}..{high}")


def _num_labels(model: nn.Module) -> int:
    return int(getattr(getattr(model, "config", None), "num_labels", 0)) or 2


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    max_grad_norm: float | None = 1.0,
    progress: bool = True,
    desc: str = "train",
    accumulation_steps: int = 1,
    accelerator: Accelerator | None = None,
) -> list[float]:
    """One pass over ``loader``: forward, loss, backward, clip, step. Returns each batch's loss.

    With ``accumulation_steps`` = k > 1 the gradients of k consecutive batches are added up
    (each loss divided by k) before one optimiser and scheduler step, so the update is that
    of a k times larger batch while memory holds only one batch; a last, shorter group at
    the end of the loader still gets its step. Labels are checked against the model's
    number of classes before every batch.

    With an ``accelerator``, ``model``, ``optimizer``, ``loader`` and ``scheduler`` come from
    ``accelerator.prepare`` and ``device`` is ignored: the backward pass and the clipping go
    through the accelerator, its mixed precision replaces ``dtype`` (which must stay
    ``None``), gradients are averaged across processes once per update (not after every
    accumulated batch), each returned loss is the mean over the processes, and only the
    main process shows a progress bar.
    """
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}")
    if accelerator is not None:
        if dtype is not None:
            raise ValueError("with an accelerator, choose the precision on it (make_accelerator), not with dtype")
        device = accelerator.device
        progress = progress and accelerator.is_main_process
    device = torch.device(device)
    model.train()
    num_labels = _num_labels(getattr(model, "module", model))
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    losses = []
    batches = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for group in _groups(batches, accumulation_steps):
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(group):
            check_labels(batch["labels"], num_labels)
            batch = _to(batch, device)
            if accelerator is not None:
                losses.append(_accelerated_backward(accelerator, model, batch, len(group), i == len(group) - 1))
                continue
            with _autocast(device, dtype):
                loss = model(**batch).loss
            scaled = loss / len(group) if len(group) > 1 else loss
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
            losses.append(loss.item())
        if scaler is not None:
            scaler.unscale_(optimizer)
        if max_grad_norm and accelerator is not None:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        elif max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
    if not losses:
        raise ValueError("the training loader produced no batches (empty data)")
    return losses


def _accelerated_backward(accelerator: Accelerator, model: nn.Module, batch: dict, group: int, last: bool) -> float:
    """Forward and backward of one batch through ``accelerator``; the loss averaged over processes.

    Gradients are synchronised across processes only on the ``last`` batch of an
    accumulation group; before it, ``no_sync`` lets each process add up its own.
    """
    with contextlib.nullcontext() if last else accelerator.no_sync(model):
        loss = model(**batch).loss
        accelerator.backward(loss / group if group > 1 else loss)
    return accelerator.reduce(loss.detach(), "mean").item()


def _groups(batches: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Consecutive lists of ``size`` batches (the last may be shorter)."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    accelerator: Accelerator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``[N, num_labels]`` (float32) and labels ``[N]`` for every example of ``loader``.

    With an ``accelerator``, each process predicts its shard of ``loader`` (prepared here
    if it is not yet) and ``gather_for_metrics`` brings all of them back to every process
    in the loader's order, without the examples repeated to even out the last batches.
    """
    if accelerator is not None:
        from companion.distributed import prepared_loader

        loader, device = prepared_loader(accelerator, loader), accelerator.device
        model.to(device)
    device = torch.device(device)
    model.eval()
    logits, labels = [], []
    for batch in loader:
        batch_labels = batch.pop("labels")
        with _autocast(device, dtype):
            out = model(**_to(batch, device)).logits
        if accelerator is not None:
            out, batch_labels = accelerator.gather_for_metrics((out, batch_labels.to(device)))
        labels.append(batch_labels.cpu())
        logits.append(out.float().cpu())
    if not logits:
        raise ValueError("the evaluation loader produced no batches (empty data)")
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


@dataclass
class Metrics:
    """Classification metrics of one evaluation (binary: of the positive class; else macro)."""

    loss: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    confusion: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)
    probabilities: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, float]:
        """The scalar metrics only."""
        return {k: v for k, v in asdict(self).items() if isinstance(v, float)}


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    accelerator: Accelerator | None = None,
) -> Metrics:
    """Loss, accuracy, precision, recall, F1 and confusion matrix on ``loader``.

    Sequence-classification logits are ``[batch, num_labels]``, so the predicted class is
    the argmax over the last dimension: one label per sentence. With an ``accelerator``
    the processes share the work and every process gets the metrics of the whole loader
    (see :func:`predict`).
    """
    logits, labels = predict(model, loader, device, dtype, accelerator)
    num_labels = logits.shape[-1]
    check_labels(labels, num_labels)
    log_probs = torch.log_softmax(torch.from_numpy(logits), dim=-1)
    loss = float(nn.functional.nll_loss(log_probs, torch.from_numpy(labels).long()))
    predictions = logits.argmax(axis=-1)
    average = "binary" if num_labels == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, average=average, zero_division=0)
    return Metrics(
        loss=loss,
        accuracy=float(accuracy_score(labels, predictions)),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        confusion=confusion_matrix(labels, predictions, labels=list(range(num_labels))),
        predictions=predictions,
        probabilities=log_probs.exp().numpy(),
    )


@dataclass
class FitResult:
    """What :func:`fit` measured: per-epoch history, per-step losses, the best epoch."""

    history: list[dict[str, float]]
    step_losses: list[float]
    best_epoch: int
    best_score: float
    seconds: float
    stopped_early: bool
    train_seconds: float = 0.0  #: time spent in :func:`train_epoch` (no validation)
    updates: int = 0  #: optimiser updates taken (by each process, under an accelerator)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    epochs: int = 3,
    lr: float = 5e-5,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    max_grad_norm: float | None = 1.0,
    patience: int = 1,
    metric: str = "accuracy",
    device: torch.device | str = "cpu",
    precision: str = "auto",
    progress: bool = True,
    accumulation_steps: int = 1,
    accelerator: Accelerator | None = None,
) -> FitResult:
    """Fine-tune with AdamW and a linear schedule, validating after every epoch.

    Stops when the validation ``metric`` has not improved for ``patience`` epochs and
    restores the weights of the best epoch, so the returned model is the one the
    validation set chose. Labels are checked by :func:`train_epoch` before every step,
    so a bad label stops the run before the first update. ``accumulation_steps`` adds up
    the gradients of that many batches per update (see :func:`train_epoch`); the schedule
    counts updates, not batches.

    With an ``accelerator`` (:func:`companion.distributed.make_accelerator`), model,
    optimiser, both loaders and the schedule go through ``accelerator.prepare``; its mixed
    precision applies (leave ``precision`` at "auto") and ``device`` is ignored. Each
    process then trains on its shard of the batches; the schedule is defined over the
    batches of ``train_loader`` as given, and Accelerate advances it by one step per
    process at every update, so that it ends with the last update. Validation metrics
    are gathered from all processes, so every process takes the same early-stopping
    decision. The ``model`` passed in is trained in place, as without an accelerator.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if metric not in ("accuracy", "f1", "loss"):
        raise ValueError(f"metric must be 'accuracy', 'f1' or 'loss', got {metric!r}")
    if accelerator is None:
        device = torch.device(device)
        dtype = resolve_precision(device, precision)
        model.to(device)
    elif precision != "auto":
        raise ValueError("with an accelerator, choose the precision on it (make_accelerator), not with precision")
    else:
        device, dtype = accelerator.device, None
    plain = model
    optimizer = make_optimizer(model, lr, weight_decay)
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}")
    updates_per_epoch = -(-len(train_loader) // accumulation_steps)
    scheduler = make_scheduler(optimizer, epochs * updates_per_epoch, warmup_ratio)
    if accelerator is not None:
        from companion.distributed import shardable

        model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
            model, optimizer, shardable(train_loader), shardable(val_loader), scheduler
        )
        plain = accelerator.unwrap_model(model)
    sign = -1.0 if metric == "loss" else 1.0
    best_score, best_epoch, best_state, waited = -float("inf"), 0, None, 0
    history, step_losses = [], []
    train_seconds, updates = 0.0, 0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        _set_epoch(train_loader, epoch)
        epoch_start = time.perf_counter()
        losses = train_epoch(
            model, train_loader, optimizer, scheduler, device, dtype, max_grad_norm, progress, f"epoch {epoch}",
            accumulation_steps, accelerator,
        )
        train_seconds += time.perf_counter() - epoch_start
        updates += -(-len(losses) // accumulation_steps)
        step_losses.extend(losses)
        val = evaluate(model, val_loader, device, dtype, accelerator)
        row = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        row.update({f"val_{k}": v for k, v in val.as_dict().items()})
        history.append({**row, "seconds": time.perf_counter() - start})
        score = sign * getattr(val, metric)
        if score > best_score:
            best_score, best_epoch, waited = score, epoch, 0
            best_state = copy.deepcopy(plain.state_dict())
        else:
            waited += 1
            if waited >= patience:
                break
    plain.load_state_dict(best_state)
    return FitResult(
        history=history,
        step_losses=step_losses,
        best_epoch=best_epoch,
        best_score=sign * best_score,
        seconds=time.perf_counter() - start,
        stopped_early=len(history) < epochs,
        train_seconds=train_seconds,
        updates=updates,
    )


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's batch sampler, through any wrapper Accelerate put around it, which epoch starts."""
    if hasattr(loader, "set_epoch"):  # accelerate's DataLoaderShard (and its seeded shufflers)
        loader.set_epoch(epoch)
    sampler = getattr(loader, "batch_sampler", None)
    while sampler is not None:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        sampler = getattr(sampler, "batch_sampler", None)
