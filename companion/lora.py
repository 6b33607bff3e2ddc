"""Fine-tuning fewer parameters: LoRA from scratch, BitFit, and what each choice costs in bytes.

LoRA (Hu et al., 2022) leaves a pre-trained linear layer ``W`` frozen and learns a
low-rank update beside it: ``y = W x + (alpha / r) * B A x`` with ``A`` ``[r, in]`` and
``B`` ``[out, r]``. ``B`` starts at zero, so training starts from the pre-trained
function. BitFit (Ben Zaken et al., 2022) trains only the biases. ``book/parameter_efficient.ipynb``
writes :class:`LoRALinear` on the page, checks it against the ``peft`` library on the
same weights, and measures every strategy side by side.

The attribute names follow ``peft`` (``base_layer``, ``lora_A.weight``, ``lora_B.weight``),
so :func:`lora_state_dict` gives the keys that ``peft`` saves in an adapter.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from companion.models import count_parameters

__all__ = [
    "LoRALinear",
    "add_lora",
    "merge_lora",
    "lora_state_dict",
    "bitfit",
    "trainable_state_dict",
    "trainable_bytes",
    "adamw_state_bytes",
    "optimizer_state_bytes",
]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / r) * B A``, ``B`` zero at the start.

    >>> layer = LoRALinear(nn.Linear(8, 4), r=2, alpha=4)
    >>> layer.scaling, tuple(layer.lora_A.weight.shape), tuple(layer.lora_B.weight.shape)
    (2.0, (2, 8), (4, 2))
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if not isinstance(r, int) or not 1 <= r <= min(base.in_features, base.out_features):
            raise ValueError(
                f"the rank r must be an integer from 1 to {min(base.in_features, base.out_features)} "
                f"(the smaller side of a {base.out_features}x{base.in_features} layer), got {r!r}"
            )
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {alpha!r}")
        self.base_layer = base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(base.in_features, r, bias=False, **factory)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, **factory)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # as nn.Linear (and peft) initialise A
        nn.init.zeros_(self.lora_B.weight)  # the update starts at zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen layer's output plus the scaled low-rank update."""
        return self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) * B A`` as a full ``[out, in]`` matrix."""
        return self.lora_B.weight @ self.lora_A.weight * self.scaling

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` whose weight is ``W + (alpha / r) * B A``: the same function, no adapter."""
        base = self.base_layer
        layer = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                          device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(base.weight + self.delta_weight())
            if base.bias is not None:
                layer.bias.copy_(base.bias)
        return layer


def _parent_and_child(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def _head_parameters(model: nn.Module) -> set[int]:
    """Ids of the parameters outside the base model (the task head of a ``transformers`` model)."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if base is None or base is model:
        return set()
    base_ids = {id(p) for p in base.parameters()}
    return {id(p) for p in model.parameters() if id(p) not in base_ids}


def _check_something_trains(model: nn.Module, what: str) -> None:
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{what} leaves nothing trainable in {type(model).__name__}")


def add_lora(
    model: nn.Module, target_modules: tuple[str, ...] | list[str] = ("query", "value"), r: int = 8,
    alpha: float = 16, train_head: bool = True,
) -> list[str]:
    """Freeze ``model`` and replace each ``nn.Linear`` whose name ends with a target by a :class:`LoRALinear`.

    Returns the names of the replaced layers. Only the LoRA factors train, plus the task
    head (the parameters outside the base model) when ``train_head``. A target that
    matches no linear layer is a ``ValueError`` naming it and listing the linear layers.

    >>> from companion.models import load_classifier  # doctest: +SKIP
    >>> add_lora(load_classifier(), r=8)[:2]  # doctest: +SKIP
    ['bert.encoder.layer.0.attention.self.query', 'bert.encoder.layer.0.attention.self.value']
    """
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    if not target_modules:
        raise ValueError("target_modules is empty: name at least one linear layer, e.g. ('query', 'value')")
    head = _head_parameters(model)
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    chosen = {t: [n for n in linear if n == t or n.endswith("." + t)] for t in target_modules}
    unmatched = [t for t, names in chosen.items() if not names]
    if unmatched:
        endings = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ValueError(f"target module {unmatched[0]!r} matches no nn.Linear of {type(model).__name__}; "
                         f"its linear layers end in: {', '.join(endings)}")
    for param in model.parameters():
        param.requires_grad = train_head and id(param) in head
    names = sorted({n for names in chosen.values() for n in names}, key=linear.index)
    for name in names:
        parent, child = _parent_and_child(model, name)
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha))
    _check_something_trains(model, "add_lora")
    return names


def merge_lora(model: nn.Module) -> int:
    """Replace every :class:`LoRALinear` of ``model`` by its merged ``nn.Linear``; return how many were merged."""
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in names:
        parent, child = _parent_and_child(model, name)
        setattr(parent, child, getattr(parent, child).merged())
    return len(names)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA factors of ``model`` by name (``...query.lora_A.weight``), the keys ``peft`` saves."""
    return {name: p.detach() for name, p in model.named_parameters() if ".lora_A." in name or ".lora_B." in name}


def bitfit(model: nn.Module, train_head: bool = True) -> tuple[int, int]:
    """BitFit: freeze everything but the biases (and the task head); return ``(trainable, total)``."""
    head = _head_parameters(model) if train_head else set()
    for name, param in model.named_parameters():
        param.requires_grad = name.endswith("bias") or id(param) in head
    _check_something_trains(model, "bitfit (the model has no biases)")
    return count_parameters(model)


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name, detached: all that a task adds to the shared pre-trained weights."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def trainable_bytes(model: nn.Module) -> int:
    """Bytes of the trainable parameters (their gradients take as many again during training)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def adamw_state_bytes(model: nn.Module) -> int:
    """Bytes AdamW keeps for ``model``: two moments per trainable parameter, in the parameter's dtype.

    >>> adamw_state_bytes(nn.Linear(10, 2))  # 22 float32 parameters, two moments each
    176
    """
    return 2 * trainable_bytes(model)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes an optimiser really holds in its state tensors (after a step), step counters included."""
    return sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for t in state.values() if torch.is_tensor(t))
