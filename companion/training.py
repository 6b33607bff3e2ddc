"""The fine-tuning loop: optimiser, schedule, one epoch, evaluation, and ``fit``.

Fixes the article's loop: the tokenizer is not a global, the seed is set, AdamW comes
from ``torch.optim`` (``transformers.AdamW`` was removed) with no weight decay on biases
and LayerNorm weights, the learning rate warms up then decays linearly, gradients are
clipped, the validation set chooses the epoch (early stopping keeps the best weights),
and ``evaluate`` takes the argmax over the **last** dimension — one label per sentence,
not per token. ``book/walkthrough.ipynb`` writes the loop out on the page and checks it
against :func:`train_epoch`.

This is the plain, single-process loop. Several processes or GPUs (Hugging Face
Accelerate) are :mod:`companion.distributed`'s business: it reuses the pieces below
(:func:`check_batch`, :func:`check_loss`, :func:`metrics_from_logits`,
:func:`train_with_early_stopping`) rather than threading an accelerator through them.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

__all__ = [
    "decay_parameter_groups",
    "make_optimizer",
    "make_scheduler",
    "cpu_has_fast_bf16",
    "resolve_precision",
    "DivergedError",
    "check_labels",
    "check_batch",
    "check_loss",
    "optimizer_for_fit",
    "num_labels_of",
    "batch_groups",
    "set_epoch",
    "train_epoch",
    "predict",
    "Metrics",
    "metrics_from_logits",
    "evaluate",
    "FitResult",
    "train_with_early_stopping",
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
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"the learning rate must be a positive, finite number, got {lr}")
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


class DivergedError(RuntimeError):
    """Training produced a non-finite loss: the weights are no longer usable.

    ``step`` is the batch (counted from 1 within the epoch) whose loss was not finite.
    """

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


def check_labels(labels: Iterable[int] | torch.Tensor, num_labels: int) -> None:
    """Raise a clear ``ValueError`` unless every label is an integer in ``0 .. num_labels - 1``.

    On a GPU an out-of-range label otherwise surfaces as an opaque device-side assert;
    float labels (``1.0``) would make ``transformers`` switch the model to multi-label
    classification, for good.
    """
    values = torch.as_tensor(labels if isinstance(labels, torch.Tensor) else list(labels))
    if values.numel() == 0:
        raise ValueError("no labels to check (empty data)")
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(
            f"labels must be integer class ids, got {values.dtype} values such as {values.flatten()[0].item()!r}; "
            "convert them with int() (or cast the column to int64)"
        )
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= num_labels:
        raise ValueError(f"labels must be in 0..{num_labels - 1} for a {num_labels}-class head; found {low}..{high}")


def check_batch(batch: dict, num_labels: int) -> None:
    """Raise a clear ``ValueError`` for a batch without ``labels`` or with labels the head cannot take.

    Called on every training batch before the forward pass, so that nothing runs, and
    nothing in the model changes, on bad data.
    """
    if "labels" not in batch:
        raise ValueError(
            f"the batch has no 'labels' (it has {sorted(batch)}); tokenize the data with "
            "companion.batching.tokenize_dataset, which keeps the label column as 'labels'"
        )
    check_labels(batch["labels"], num_labels)


def check_loss(loss: torch.Tensor, step: int, optimizer: torch.optim.Optimizer | None = None) -> float:
    """The loss as a float; :class:`DivergedError` at step ``step`` if it is NaN or infinite."""
    value = loss.item()
    if not math.isfinite(value):
        lr = "" if optimizer is None else f" (it was {optimizer.param_groups[0].get('initial_lr', 'unknown')})"
        raise DivergedError(f"training diverged at step {step}: the loss is {value}; lower the learning rate{lr}", step)
    return value


def num_labels_of(model: nn.Module) -> int:
    """The number of classes of a classifier (``config.num_labels``; 2 when it has no config)."""
    return int(getattr(getattr(model, "config", None), "num_labels", 0)) or 2


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def batch_groups(batches: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Consecutive lists of ``size`` batches (the last may be shorter): one list per optimiser update."""
    if size < 1:
        raise ValueError(f"accumulation_steps must be at least 1, got {size}")
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def train_epoch(
    model: nn.Module,
    loader: Iterable[dict],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    max_grad_norm: float | None = 1.0,
    progress: bool = True,
    desc: str = "train",
    accumulation_steps: int = 1,
) -> list[float]:
    """One pass over ``loader``: forward, loss, backward, clip, step, schedule. Returns each batch's loss.

    ``dtype`` is the autocast dtype (``None``: fp32; fp16 adds a gradient scaler). With
    ``accumulation_steps`` = k > 1 the gradients of k consecutive batches are added up
    (each loss divided by k) before one update, the update of a k times larger batch. A
    batch's labels are checked before its forward pass, and a non-finite loss stops the
    run with :class:`DivergedError`.
    """
    device, num_labels = torch.device(device), num_labels_of(model)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    model.train()
    losses = []
    for group in batch_groups(tqdm(loader, desc=desc, disable=not progress, leave=False), accumulation_steps):
        optimizer.zero_grad(set_to_none=True)
        for batch in group:
            check_batch(batch, num_labels)
            with _autocast(device, dtype):
                loss = model(**_to(batch, device)).loss
            losses.append(check_loss(loss, len(losses) + 1, optimizer))
            loss = loss / len(group)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        if max_grad_norm:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        if scheduler is not None:
            scheduler.step()
    if not losses:
        raise ValueError("the training loader produced no batches (empty data)")
    return losses


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable[dict], device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``[N, num_labels]`` (float32) and labels ``[N]`` for every example of ``loader``."""
    device = torch.device(device)
    model.eval()
    logits, labels = [], []
    for batch in loader:
        if "labels" not in batch:
            raise ValueError(f"the batch has no 'labels' (it has {sorted(batch)}); evaluation needs them")
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with _autocast(device, dtype):
            logits.append(model(**_to(inputs, device)).logits.float().cpu())
        labels.append(batch["labels"].cpu())
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


def metrics_from_logits(logits: np.ndarray, labels: np.ndarray) -> Metrics:
    """Loss, accuracy, precision, recall, F1 and confusion matrix from logits ``[N, C]`` and labels ``[N]``.

    The predicted class is the argmax over the last dimension: one label per sentence.
    """
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


def evaluate(
    model: nn.Module, loader: Iterable[dict], device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> Metrics:
    """Loss, accuracy, precision, recall, F1 and confusion matrix of ``model`` on ``loader``.

    Sequence-classification logits are ``[batch, num_labels]``, so the predicted class is
    the argmax over the last dimension: one label per sentence.
    """
    return metrics_from_logits(*predict(model, loader, device, dtype))


@dataclass
class FitResult:
    """What :func:`fit` measured: per-epoch history, per-step losses, the best epoch."""

    history: list[dict[str, float]]
    step_losses: list[float]
    best_epoch: int
    best_score: float
    seconds: float
    stopped_early: bool
    train_seconds: float = 0.0  #: time spent training (no validation)
    updates: int = 0  #: optimiser updates taken (by each process, under several processes)


def _check_fit_arguments(epochs: int, metric: str, patience: int, accumulation_steps: int) -> None:
    """A clear ``ValueError`` for an argument of :func:`fit` out of range."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if metric not in ("accuracy", "f1", "loss"):
        raise ValueError(f"metric must be 'accuracy', 'f1' or 'loss', got {metric!r}")
    if patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}")


def _check_not_empty(loader: Iterable, name: str) -> int:
    """``len(loader)``; a clear error before any training when it is 0."""
    try:
        size = len(loader)
    except TypeError:
        raise ValueError(f"the {name} loader has no length; build it with companion.batching.make_loader") from None
    if size == 0:
        raise ValueError(f"the {name} loader is empty (0 batches): check the data it was built from")
    return size


def optimizer_for_fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    epochs: int,
    lr: float,
    weight_decay: float,
    warmup_ratio: float,
    patience: int,
    metric: str,
    accumulation_steps: int,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """What :func:`fit` (and :func:`companion.distributed.fit`) do before training.

    Refuses bad arguments and empty loaders before any work, then makes the AdamW
    optimiser and the schedule, which counts optimiser updates (``accumulation_steps``
    batches each), not batches.
    """
    _check_fit_arguments(epochs, metric, patience, accumulation_steps)
    batches = _check_not_empty(train_loader, "training")
    _check_not_empty(val_loader, "validation")
    optimizer = make_optimizer(model, lr, weight_decay)
    return optimizer, make_scheduler(optimizer, epochs * -(-batches // accumulation_steps), warmup_ratio)


def train_with_early_stopping(
    model: nn.Module,
    train_one_epoch: Callable[[int], list[float]],
    validate: Callable[[], Metrics],
    epochs: int,
    patience: int = 1,
    metric: str = "accuracy",
    accumulation_steps: int = 1,
) -> FitResult:
    """Train epoch after epoch, validate after each, stop when ``metric`` stalls; restore the best weights.

    ``train_one_epoch(epoch)`` trains one epoch and returns its batch losses;
    ``validate()`` evaluates ``model`` (the plain module, whose weights are saved and
    restored). The loop stops when the validation ``metric`` has not improved for
    ``patience`` epochs, and a non-finite validation loss raises :class:`DivergedError`.
    Shared by :func:`fit` and :func:`companion.distributed.fit`.
    """
    _check_fit_arguments(epochs, metric, patience, accumulation_steps)
    sign = -1.0 if metric == "loss" else 1.0
    best_score, best_epoch, best_state, waited = -float("inf"), 0, None, 0
    history, step_losses = [], []
    train_seconds, updates = 0.0, 0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        losses = train_one_epoch(epoch)
        train_seconds += time.perf_counter() - epoch_start
        updates += -(-len(losses) // accumulation_steps)
        step_losses.extend(losses)
        val = validate()
        if not math.isfinite(val.loss):
            raise DivergedError(f"training diverged: the validation loss is {val.loss} after epoch {epoch}; "
                                "lower the learning rate")
        row = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        row.update({f"val_{k}": v for k, v in val.as_dict().items()})
        history.append({**row, "seconds": time.perf_counter() - start})
        score = sign * getattr(val, metric)
        if score > best_score:
            best_score, best_epoch, waited = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
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
) -> FitResult:
    """Fine-tune with AdamW and a linear schedule, validating after every epoch.

    Stops when the validation ``metric`` has not improved for ``patience`` epochs and
    restores the weights of the best epoch, so the returned model is the one the
    validation set chose. Empty loaders and bad arguments are refused before any work;
    every batch's labels are checked before its forward pass, and a non-finite loss stops
    the run with :class:`DivergedError`. ``accumulation_steps`` adds up the gradients of
    that many batches per update (see :func:`train_epoch`); the schedule counts updates.
    For several processes or GPUs, see :func:`companion.distributed.fit`.
    """
    device = torch.device(device)
    dtype = resolve_precision(device, precision)
    model.to(device)
    optimizer, scheduler = optimizer_for_fit(
        model, train_loader, val_loader, epochs, lr, weight_decay, warmup_ratio, patience, metric, accumulation_steps
    )

    def train_one_epoch(epoch: int) -> list[float]:
        set_epoch(train_loader, epoch)
        return train_epoch(model, train_loader, optimizer, scheduler, device, dtype, max_grad_norm, progress,
                           f"epoch {epoch}", accumulation_steps)  # fmt: skip

    return train_with_early_stopping(
        model, train_one_epoch, lambda: evaluate(model, val_loader, device, dtype), epochs, patience, metric,
        accumulation_steps,
    )  # fmt: skip


def set_epoch(loader: Iterable, epoch: int) -> None:
    """Tell the loader's batch sampler (through any wrapper around it) which epoch starts, for its shuffling."""
    if hasattr(loader, "set_epoch"):  # e.g. accelerate's DataLoaderShard
        loader.set_epoch(epoch)
    sampler = getattr(loader, "batch_sampler", None)
    while sampler is not None:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        sampler = getattr(sampler, "batch_sampler", None)
