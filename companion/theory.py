"""The math of fine-tuning, from scratch and checked: losses in logits, their gradients, update rules.

Everything here works on plain ``torch`` tensors and is compared, in the chapter and in
``tests/test_theory.py``, with the library it imitates: ``torch.nn.functional`` for the
losses, autograd and central finite differences for the gradients, ``torch.optim`` for the
update rules and ``transformers`` for the learning-rate schedule.

Losses take **logits** (scores before the sigmoid or softmax), never probabilities, and are
written with ``softplus`` and ``log-sum-exp`` so that a logit of ±100 (a probability of
exactly 0 or 1 in floating point) gives a finite loss and a finite gradient.

Used in book/finetuning_math.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "softplus",
    "log_sum_exp",
    "softmax",
    "binary_cross_entropy_with_logits",
    "bce_grad",
    "softmax_cross_entropy",
    "cross_entropy_grad",
    "finite_difference_grad",
    "relative_error",
    "sgd_step",
    "AdamState",
    "adam_step",
    "adamw_step",
    "run_update_rule",
    "run_torch_optimizer",
    "constant_with_warmup",
    "linear_warmup_decay",
    "scheduler_values",
    "SentenceFeatures",
    "encode_sentences",
    "anchor_similarities",
    "standardise",
    "regularised_logistic_loss",
    "gradient_descent_path",
    "loss_surface",
    "head_loss_curve",
    "tail_mean",
]

REDUCTIONS = ("mean", "sum", "none")
UPDATE_RULES = ("sgd", "adam", "adamw")


# --------------------------------------------------------------------------- checks at the boundary


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _check_binary(logits: Tensor, labels: Tensor) -> Tensor:
    """Validate a binary batch; return the labels as a float tensor of the logits' dtype."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if logits.numel() == 0:
        raise ValueError("the batch is empty: give at least one logit")
    if logits.shape != labels.shape:
        raise ValueError(
            f"logits and labels must have the same shape, got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if not torch.is_floating_point(logits):
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    labels = labels.to(logits.dtype)
    if bool(((labels < 0) | (labels > 1)).any()):
        bad = labels[(labels < 0) | (labels > 1)][0].item()
        raise ValueError(f"binary labels must lie in [0, 1] (0 = negative, 1 = positive), got {bad}")
    return labels


def _check_multiclass(logits: Tensor, labels: Tensor) -> Tensor:
    """Validate a (batch, classes) batch with integer labels; return the labels as int64."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (batch, classes), got shape {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("the batch is empty: give at least one example")
    if logits.shape[1] < 2:
        raise ValueError(f"softmax cross-entropy needs two or more classes, got {logits.shape[1]}")
    if not torch.is_floating_point(logits):
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must be one class index per example, shape ({logits.shape[0]},), got {tuple(labels.shape)}"
        )
    if torch.is_floating_point(labels) and not bool((labels == labels.round()).all()):
        raise ValueError("labels must be integer class indices")
    labels = labels.long()
    classes = logits.shape[1]
    if bool(((labels < 0) | (labels >= classes)).any()):
        bad = labels[(labels < 0) | (labels >= classes)][0].item()
        raise ValueError(f"labels must be class indices in 0..{classes - 1}, got {bad}")
    return labels


# --------------------------------------------------------------------------- stable building blocks


def softplus(z: Tensor) -> Tensor:
    """``log(1 + exp(z))`` without overflow: ``max(z, 0) + log1p(exp(-|z|))``.

    >>> [round(v, 4) for v in softplus(torch.tensor([-100.0, 0.0, 100.0])).tolist()]
    [0.0, 0.6931, 100.0]
    """
    z = torch.as_tensor(z)
    return z.clamp(min=0) + torch.log1p(torch.exp(-z.abs()))


def log_sum_exp(z: Tensor, dim: int = -1) -> Tensor:
    """``log(sum(exp(z)))`` along ``dim``, shifted by the maximum so that nothing overflows.

    >>> round(log_sum_exp(torch.tensor([1000.0, 1000.0])).item(), 2)
    1000.69
    """
    z = torch.as_tensor(z)
    if z.numel() == 0 or z.shape[dim] == 0:
        raise ValueError("log_sum_exp of an empty tensor is undefined")
    top = z.max(dim=dim, keepdim=True).values.detach()
    return (top + torch.log(torch.exp(z - top).sum(dim=dim, keepdim=True))).squeeze(dim)


def softmax(z: Tensor, dim: int = -1) -> Tensor:
    """``exp(z) / sum(exp(z))`` along ``dim``, computed after subtracting the largest logit.

    The shift changes nothing mathematically and keeps ``exp`` from overflowing.

    >>> [round(p, 4) for p in softmax(torch.tensor([0.0, math.log(4.0)])).tolist()]
    [0.2, 0.8]
    """
    z = torch.as_tensor(z)
    if z.numel() == 0 or z.shape[dim] == 0:
        raise ValueError("softmax of an empty tensor is undefined")
    shifted = torch.exp(z - z.max(dim=dim, keepdim=True).values.detach())
    return shifted / shifted.sum(dim=dim, keepdim=True)


# --------------------------------------------------------------------------- losses and their gradients


def binary_cross_entropy_with_logits(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of a sigmoid output, from the logit ``z``: ``softplus(z) - y z``.

    Equal to ``-[y log σ(z) + (1 - y) log(1 - σ(z))]`` but finite for any ``z``. Labels
    are 0 or 1 (values in between are read as soft targets). Matches
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    >>> round(binary_cross_entropy_with_logits(torch.tensor([math.log(4.0)]), torch.tensor([1.0])).item(), 4)
    0.2231
    """
    _check_reduction(reduction)
    labels = _check_binary(logits, labels)
    logits = torch.as_tensor(logits)
    return _reduce(softplus(logits) - labels * logits, reduction)


def bce_grad(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Analytic gradient of :func:`binary_cross_entropy_with_logits` with respect to the logits.

    Per example it is ``σ(z) - y``; the mean divides by the batch size.

    >>> bce_grad(torch.tensor([0.0]), torch.tensor([1.0])).tolist()
    [-0.5]
    """
    _check_reduction(reduction)
    labels = _check_binary(logits, labels)
    grad = torch.sigmoid(torch.as_tensor(logits)) - labels
    return grad / labels.numel() if reduction == "mean" else grad


def softmax_cross_entropy(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of a softmax over ``(batch, classes)`` logits: ``log_sum_exp(z) - z[y]``.

    Matches ``torch.nn.functional.cross_entropy``; labels are class indices.

    >>> round(softmax_cross_entropy(torch.tensor([[0.0, math.log(4.0)]]), torch.tensor([1])).item(), 4)
    0.2231
    """
    _check_reduction(reduction)
    labels = _check_multiclass(logits, labels)
    logits = torch.as_tensor(logits)
    picked = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    return _reduce(log_sum_exp(logits, dim=1) - picked, reduction)


def cross_entropy_grad(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Analytic gradient of :func:`softmax_cross_entropy` with respect to the logits.

    Per example it is ``softmax(z) - onehot(y)``; the mean divides by the batch size.

    >>> cross_entropy_grad(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).tolist()
    [[0.5, -0.5]]
    """
    _check_reduction(reduction)
    labels = _check_multiclass(logits, labels)
    logits = torch.as_tensor(logits)
    onehot = torch.nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
    grad = softmax(logits, dim=1) - onehot
    return grad / logits.shape[0] if reduction == "mean" else grad


def finite_difference_grad(fn: Callable[[Tensor], Tensor], x: Tensor, eps: float = 1e-6) -> Tensor:
    """Central finite differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every entry of ``x``.

    ``fn`` maps a tensor shaped like ``x`` to a scalar. Work in float64: in float32 the
    rounding error of ``f`` swamps the difference for small ``eps``.

    >>> finite_difference_grad(lambda t: (t ** 2).sum(), torch.tensor([3.0], dtype=torch.float64)).round().tolist()
    [6.0]
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    x = torch.as_tensor(x)
    if x.numel() == 0:
        raise ValueError("cannot differentiate with respect to an empty tensor")
    flat = x.detach().clone().reshape(-1)
    grad = torch.empty_like(flat)
    for i in range(flat.numel()):
        saved = flat[i].item()
        flat[i] = saved + eps
        up = float(fn(flat.reshape(x.shape)))
        flat[i] = saved - eps
        down = float(fn(flat.reshape(x.shape)))
        flat[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad.reshape(x.shape)


def relative_error(a: Tensor, b: Tensor) -> float:
    """``‖a - b‖ / max(‖a‖, ‖b‖)``, and 0.0 when both are zero; a scale-free measure of agreement.

    >>> relative_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    0.0
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare shapes {tuple(a.shape)} and {tuple(b.shape)}")
    scale = max(a.norm().item(), b.norm().item())
    return 0.0 if scale == 0.0 else (a - b).norm().item() / scale


# --------------------------------------------------------------------------- update rules


def _check_step(param: Tensor, grad: Tensor, lr: float, weight_decay: float) -> None:
    if param.shape != grad.shape:
        raise ValueError(f"param and grad must have the same shape, got {tuple(param.shape)} and {tuple(grad.shape)}")
    if lr < 0:
        raise ValueError(f"the learning rate must be non-negative, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")


def sgd_step(param: Tensor, grad: Tensor, lr: float, weight_decay: float = 0.0) -> Tensor:
    """One SGD step with coupled L2 decay: ``θ - η (∇L + λ θ)``; returns the new parameters.

    This is ``torch.optim.SGD(lr=η, weight_decay=λ)`` without momentum, and the update
    the source article writes as ``θ - η ∇L - η λ θ``.

    >>> sgd_step(torch.tensor([1.0]), torch.tensor([0.5]), lr=0.1, weight_decay=0.0).tolist()
    [0.949999988079071]
    """
    _check_step(param, grad, lr, weight_decay)
    return param - lr * (grad + weight_decay * param)


@dataclass(frozen=True)
class AdamState:
    """Adam's memory for one parameter tensor: moving averages of ``g`` and ``g²`` and the step count."""

    exp_avg: Tensor
    exp_avg_sq: Tensor
    step: int = 0

    @classmethod
    def zeros_like(cls, param: Tensor) -> AdamState:
        """The state before the first step: both averages zero, step 0."""
        return cls(torch.zeros_like(param), torch.zeros_like(param), 0)


def _adam_update(
    param: Tensor, grad: Tensor, state: AdamState, lr: float, betas: tuple[float, float], eps: float
) -> tuple[Tensor, AdamState]:
    beta1, beta2 = betas
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"betas must lie in [0, 1), got {betas}")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if state.exp_avg.shape != param.shape:
        raise ValueError(f"the Adam state is for shape {tuple(state.exp_avg.shape)}, not {tuple(param.shape)}")
    step = state.step + 1
    m = beta1 * state.exp_avg + (1 - beta1) * grad
    v = beta2 * state.exp_avg_sq + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    return param - lr * m_hat / (v_hat.sqrt() + eps), AdamState(m, v, step)


def adam_step(
    param: Tensor,
    grad: Tensor,
    state: AdamState,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[Tensor, AdamState]:
    """One Adam step with **coupled** L2 decay: ``λθ`` is added to the gradient before the moments.

    The decay then passes through Adam's normalisation, so a weight with a small gradient is
    pulled to zero at up to ``lr`` per step whatever ``λ`` is. This is
    ``torch.optim.Adam(weight_decay=λ)``. Returns ``(new_param, new_state)``.

    >>> p, s = adam_step(torch.tensor([1.0]), torch.tensor([0.5]), AdamState.zeros_like(torch.tensor([1.0])), lr=0.1)
    >>> round(p.item(), 4), s.step
    (0.9, 1)
    """
    _check_step(param, grad, lr, weight_decay)
    return _adam_update(param, grad + weight_decay * param, state, lr, betas, eps)


def adamw_step(
    param: Tensor,
    grad: Tensor,
    state: AdamState,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> tuple[Tensor, AdamState]:
    """One AdamW step: shrink ``θ`` by ``(1 - ηλ)``, then an Adam step on the raw gradient.

    Decoupled weight decay (Loshchilov & Hutter): the decay never enters the moments.
    This is ``torch.optim.AdamW``. Returns ``(new_param, new_state)``.

    >>> p, s = adamw_step(torch.tensor([1.0]), torch.tensor([0.0]), AdamState.zeros_like(torch.tensor([1.0])),
    ...                   lr=0.1, weight_decay=0.5)
    >>> round(p.item(), 4)
    0.95
    """
    _check_step(param, grad, lr, weight_decay)
    return _adam_update(param * (1 - lr * weight_decay), grad, state, lr, betas, eps)


def _autograd(loss_fn: Callable[[Tensor], Tensor], param: Tensor) -> Tensor:
    leaf = param.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(leaf), leaf)
    return grad


def _check_rule(rule: str, steps: int) -> None:
    if rule not in UPDATE_RULES:
        raise ValueError(f"rule must be one of {UPDATE_RULES}, got {rule!r}")
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")


def run_update_rule(
    loss_fn: Callable[[Tensor], Tensor],
    param: Tensor,
    rule: str,
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> Tensor:
    """Minimise ``loss_fn`` with this module's ``sgd_step``/``adam_step``/``adamw_step``.

    Gradients come from autograd, so a comparison with :func:`run_torch_optimizer` tests
    the update rule alone. Returns the trajectory, shape ``(steps + 1, *param.shape)``.
    Used in book/finetuning_math.ipynb.
    """
    _check_rule(rule, steps)
    current = param.detach().clone()
    state = AdamState.zeros_like(current)
    path = [current]
    for _ in range(steps):
        grad = _autograd(loss_fn, current)
        if rule == "sgd":
            current = sgd_step(current, grad, lr, weight_decay)
        elif rule == "adam":
            current, state = adam_step(current, grad, state, lr, betas, eps, weight_decay)
        else:
            current, state = adamw_step(current, grad, state, lr, betas, eps, weight_decay)
        path.append(current)
    return torch.stack(path)


def run_torch_optimizer(
    loss_fn: Callable[[Tensor], Tensor],
    param: Tensor,
    rule: str,
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> Tensor:
    """The same run as :func:`run_update_rule`, with ``torch.optim.SGD``, ``Adam`` or ``AdamW``.

    Returns the trajectory, shape ``(steps + 1, *param.shape)``. Used in book/finetuning_math.ipynb.
    """
    _check_rule(rule, steps)
    weight = nn.Parameter(param.detach().clone())
    if rule == "sgd":
        optimizer = torch.optim.SGD([weight], lr=lr, weight_decay=weight_decay)
    elif rule == "adam":
        optimizer = torch.optim.Adam([weight], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.AdamW([weight], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    path = [weight.detach().clone()]
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(weight).backward()
        optimizer.step()
        path.append(weight.detach().clone())
    return torch.stack(path)


# --------------------------------------------------------------------------- learning-rate schedules


def _check_schedule(step: int, peak_lr: float, warmup_steps: int) -> None:
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    if peak_lr < 0:
        raise ValueError(f"peak_lr must be non-negative, got {peak_lr}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be non-negative, got {warmup_steps}")


def constant_with_warmup(step: int, peak_lr: float, warmup_steps: int = 0) -> float:
    """Learning rate at ``step``: a linear ramp from 0 over ``warmup_steps``, then ``peak_lr``.

    With ``warmup_steps=0`` this is the constant schedule.

    >>> [constant_with_warmup(s, 1.0, warmup_steps=2) for s in range(4)]
    [0.0, 0.5, 1.0, 1.0]
    """
    _check_schedule(step, peak_lr, warmup_steps)
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    return peak_lr


def linear_warmup_decay(step: int, peak_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate at ``step``: linear warmup from 0 to ``peak_lr``, then linear decay to 0 at ``total_steps``.

    The same formula as ``transformers.get_linear_schedule_with_warmup``.

    >>> [linear_warmup_decay(s, 1.0, warmup_steps=2, total_steps=6) for s in range(7)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    _check_schedule(step, peak_lr, warmup_steps)
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    return peak_lr * max(0.0, (total_steps - step) / (total_steps - warmup_steps))


def scheduler_values(make_scheduler: Callable, steps: int, peak_lr: float, **kwargs) -> list[float]:
    """The learning rates a library scheduler sets at steps ``0..steps``, read from a throw-away optimizer.

    ``make_scheduler(optimizer, **kwargs)`` is, for example,
    ``transformers.get_linear_schedule_with_warmup``. Used in book/finetuning_math.ipynb.

    >>> scheduler_values(lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (s + 1)), 2, 1.0)
    [1.0, 0.5, 0.3333333333333333]
    """
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=peak_lr)
    scheduler, values = make_scheduler(optimizer, **kwargs), []
    for _ in range(steps + 1):
        values.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return values


# --------------------------------------------------------------------------- real sentence features


class SentenceFeatures(NamedTuple):
    """What the encoder makes of a batch of sentences: the pooler's output and the mean of the token vectors.

    ``pooled`` is what ``AutoModelForSequenceClassification``'s head reads (the pooler's
    tanh of the [CLS] vector; never trained in all-MiniLM-L6-v2); ``mean`` is the sentence
    embedding the checkpoint was trained to give, what ``load_classifier(pooling="mean")`` reads.
    """

    pooled: Tensor
    mean: Tensor


def encode_sentences(
    model: nn.Module, tokenizer, texts: Sequence[str], max_length: int = 48, batch_size: int = 32
) -> SentenceFeatures:
    """Run a BERT-style encoder (bare or inside a classifier) once over ``texts``, without gradients.

    ``pooled`` is what the head of ``AutoModelForSequenceClassification`` reads: the
    pooler's tanh of the [CLS] vector, a layer all-MiniLM-L6-v2 never trained. ``mean``
    averages the last layer over real tokens, the sentence embedding the checkpoint was
    trained to give. The model must have a pooler (``load_encoder()`` or
    ``load_classifier(pooling="cls")``). Used in book/finetuning_math.ipynb.
    """
    from companion.models import mean_pool  # here, so that the rest of the module needs no transformers

    texts = list(texts)
    if not texts:
        raise ValueError("give at least one sentence to encode")
    if max_length < 2 or batch_size < 1:
        raise ValueError(f"max_length must be at least 2 and batch_size at least 1, got {max_length}, {batch_size}")
    base = getattr(model, getattr(model, "base_model_prefix", ""), model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pooled, mean = [], []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size], truncation=True, max_length=max_length, padding=True,
                return_tensors="pt",
            ).to(device)
            out = base(**batch)
            if out.pooler_output is None:
                raise ValueError(
                    f"{type(model).__name__} has no pooler, so it has no pooled features: encode with "
                    "load_encoder() or load_classifier(pooling='cls'), whose encoders keep the pooler"
                )
            pooled.append(out.pooler_output.float().cpu())
            mean.append(mean_pool(out.last_hidden_state, batch["attention_mask"]).float().cpu())
    model.train(was_training)
    return SentenceFeatures(torch.cat(pooled), torch.cat(mean))


def anchor_similarities(embeddings: Tensor, anchors: Tensor) -> Tensor:
    """Cosine similarity of every embedding (rows) with every anchor (rows): shape ``(n, anchors)``.

    >>> anchor_similarities(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]])).tolist()
    [[1.0, 0.0]]
    """
    if embeddings.dim() != 2 or anchors.dim() != 2 or embeddings.shape[1] != anchors.shape[1]:
        raise ValueError(
            "embeddings and anchors must be (n, d) and (k, d) with the same d, "
            f"got {tuple(embeddings.shape)} and {tuple(anchors.shape)}"
        )
    if embeddings.shape[0] == 0 or anchors.shape[0] == 0:
        raise ValueError("need at least one embedding and one anchor")
    unit = torch.nn.functional.normalize
    return unit(embeddings, dim=1) @ unit(anchors, dim=1).T


def standardise(features: Tensor) -> Tensor:
    """Each column shifted to mean 0 and scaled to standard deviation 1.

    >>> standardise(torch.tensor([[1.0], [3.0]])).tolist()
    [[-0.7071067690849304], [0.7071067690849304]]
    """
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (n, d) with n >= 2, got {tuple(features.shape)}")
    std = features.std(dim=0)
    if bool((std == 0).any()):
        raise ValueError("a feature is constant: it cannot be standardised")
    return (features - features.mean(dim=0)) / std


def _check_xy(features: Tensor, labels: Tensor) -> None:
    if features.dim() != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (n, d) matrix, got {tuple(features.shape)}")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}")


def regularised_logistic_loss(weights: Tensor, features: Tensor, labels: Tensor, weight_decay: float = 0.0) -> Tensor:
    """Mean binary cross-entropy of ``features @ weights`` plus ``(λ/2)‖w‖²`` (no bias).

    Its gradient is ``Xᵀ(σ(Xw) - y)/N + λw``: gradient descent on it is exactly
    :func:`sgd_step` with ``weight_decay=λ``. Used in book/finetuning_math.ipynb.

    >>> round(regularised_logistic_loss(torch.zeros(2), torch.ones(3, 2), torch.tensor([0.0, 1, 1])).item(), 4)
    0.6931
    """
    _check_xy(features, labels)
    if weights.shape != (features.shape[1],):
        raise ValueError(f"weights must have shape ({features.shape[1]},), got {tuple(weights.shape)}")
    data = binary_cross_entropy_with_logits(features @ weights, labels.to(features.dtype))
    return data + 0.5 * weight_decay * (weights * weights).sum()


def gradient_descent_path(
    features: Tensor, labels: Tensor, lr: float, weight_decay: float, steps: int, start: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Full-batch gradient descent on :func:`regularised_logistic_loss`, with the analytic gradient.

    Returns ``(path, losses)``: the weights before each step and after the last, shape
    ``(steps + 1, d)``, and the loss at each of them, shape ``(steps + 1,)``.
    Used in book/finetuning_math.ipynb.
    """
    _check_xy(features, labels)
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    labels = labels.to(features.dtype)
    weights = torch.zeros(features.shape[1], dtype=features.dtype) if start is None else start.to(features.dtype)
    path, losses = [weights], [regularised_logistic_loss(weights, features, labels, weight_decay)]
    for _ in range(steps):
        grad = features.T @ bce_grad(features @ weights, labels)
        weights = sgd_step(weights, grad, lr, weight_decay)
        path.append(weights)
        losses.append(regularised_logistic_loss(weights, features, labels, weight_decay))
    return torch.stack(path), torch.stack(losses)


def loss_surface(features: Tensor, labels: Tensor, weight_decay: float, w1: Tensor, w2: Tensor) -> Tensor:
    """:func:`regularised_logistic_loss` of two-feature data on the grid ``w1 × w2``: shape ``(len(w2), len(w1))``.

    Used for the contour plots in book/finetuning_math.ipynb.
    """
    _check_xy(features, labels)
    if features.shape[1] != 2:
        raise ValueError(f"a loss surface needs exactly two features, got {features.shape[1]}")
    grid = torch.stack(torch.meshgrid(w2, w1, indexing="ij")[::-1], dim=-1).to(features.dtype)  # (w2, w1, 2)
    logits = grid.reshape(-1, 2) @ features.T  # (grid points, n)
    y = labels.to(features.dtype).expand_as(logits)
    data = (softplus(logits) - y * logits).mean(dim=1)
    penalty = 0.5 * weight_decay * (grid.reshape(-1, 2) ** 2).sum(dim=1)
    return (data + penalty).reshape(len(w2), len(w1))


def head_loss_curve(
    features: Tensor,
    labels: Tensor,
    head: nn.Module,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-2,
    weight_decay: float = 1e-2,
    seed: int = 0,
) -> list[float]:
    """Train ``head`` (in place) on fixed encoder ``features`` with AdamW; return the loss of every step.

    Mini-batches are drawn with replacement from a generator seeded with ``seed``, so two
    calls with the same seed see the same batches: the fair way to compare two encoders.
    Used in book/finetuning_math.ipynb.
    """
    _check_xy(features, labels)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, features.shape[0], (batch_size,), generator=generator)
        loss = torch.nn.functional.cross_entropy(head(features[rows]), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def tail_mean(values: Sequence[float], n: int) -> float:
    """Mean of the last ``n`` values: a loss curve's level once the noise is averaged out.

    >>> tail_mean([5.0, 1.0, 3.0], 2)
    2.0
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if len(values) < n:
        raise ValueError(f"need at least {n} values, got {len(values)}")
    tail = list(values)[-n:]
    return math.fsum(tail) / n
