"""Pictures for the math chapter: the recipe, losses, gradient descent, schedules, loss curves.

Each function draws one idea and returns the ``matplotlib`` figure. :func:`descent_playground`
is the interactive version of :func:`plot_descent`; it needs ipywidgets and a live kernel,
so the rendered book shows the static figure instead.

Used in book/finetuning_math.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import Tensor

from companion.theory import gradient_descent_path, loss_surface

__all__ = [
    "RECIPE",
    "plot_recipe",
    "plot_loss_and_gradient",
    "plot_descent",
    "descent_playground",
    "plot_schedules",
    "plot_loss_curves",
]

#: The five steps of fine-tuning: (step, what happens, where the book does it).
RECIPE: list[tuple[str, str, str]] = [
    ("1. Data and model", "labelled splits,\npre-trained checkpoint",
     "data.load_rotten_tomatoes\nmodels.load_tokenizer"),
    ("2. Task head", "new linear layer\n+ cross-entropy", "models.load_classifier"),
    ("3. Set-up", "optimizer, learning rate,\nweight decay, freezing", "models.freeze\ntorch.optim.AdamW"),
    ("4. Train", "mini-batch updates,\nvalidation, early stopping", "training.fit\ntraining.evaluate"),
    ("5. Test and deploy", "held-out test set,\nsave and reload", "training.evaluate\nmodels.save_model"),
]


def plot_recipe(steps: Sequence[tuple[str, str, str]] = RECIPE) -> Figure:
    """The recipe as a row of boxes joined by arrows; each box names the companion functions that do it.

    >>> fig = plot_recipe(); plt.close(fig)
    """
    if not steps:
        raise ValueError("the recipe needs at least one step")
    fig, ax = plt.subplots(figsize=(10, 2.6))
    width, gap = 1.8, 0.35
    for i, (title, what, where) in enumerate(steps):
        left = i * (width + gap)
        ax.add_patch(FancyBboxPatch((left, 0), width, 1.0, boxstyle="round,pad=0.04", fc="#eef3fb", ec="#3b6ea8"))
        ax.text(left + width / 2, 0.86, title, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(left + width / 2, 0.58, what, ha="center", va="center", fontsize=7.5)
        ax.text(left + width / 2, 0.2, where, ha="center", va="center", fontsize=7, family="monospace", color="#6b2d5c")
        if i:
            ax.annotate("", xy=(left - 0.04, 0.5), xytext=(left - gap + 0.04, 0.5),
                        arrowprops={"arrowstyle": "->", "color": "#3b6ea8"})
    ax.set_xlim(-0.1, len(steps) * (width + gap) - gap + 0.1)
    ax.set_ylim(-0.1, 1.1)
    ax.axis("off")
    ax.set_title("Fine-tuning in five steps (companion functions in purple)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_loss_and_gradient(prob: Tensor, loss_y1: Tensor, grad_y1: Tensor, loss_y0: Tensor, grad_y0: Tensor) -> Figure:
    """Cross-entropy (left) and its gradient with respect to the logit (right) against P(y=1), for both labels.

    >>> p = torch.linspace(0.1, 0.9, 5)
    >>> fig = plot_loss_and_gradient(p, -p.log(), p - 1, -(1 - p).log(), p); plt.close(fig)
    """
    curves = (loss_y1, grad_y1, loss_y0, grad_y0)
    if any(c.shape != prob.shape for c in curves):
        raise ValueError("every curve must have the shape of prob")
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4))
    left.plot(prob, loss_y1, label="true label y = 1")
    left.plot(prob, loss_y0, label="true label y = 0")
    left.set_xlabel("predicted P(y = 1)")
    left.set_ylabel("loss  ℓ")
    left.set_title("cross-entropy")
    left.legend()
    right.plot(prob, grad_y1, label="y = 1:  σ(z) − 1")
    right.plot(prob, grad_y0, label="y = 0:  σ(z)")
    right.axhline(0.0, color="grey", lw=0.6)
    right.set_xlabel("predicted P(y = 1)")
    right.set_ylabel("∂ℓ/∂z")
    right.set_title("gradient with respect to the logit")
    right.legend()
    fig.tight_layout()
    return fig


def plot_descent(
    features: Tensor,
    labels: Tensor,
    lrs: Sequence[float],
    weight_decay: float,
    steps: int,
    span: float = 3.0,
) -> Figure:
    """Contours of the regularised logistic loss over two weights, with one gradient-descent path per learning rate.

    >>> x = torch.tensor([[1.0, 0.5], [-1.0, -0.2], [0.3, 1.0]]); y = torch.tensor([1, 0, 1])
    >>> fig = plot_descent(x, y, [0.5], 0.0, 5); plt.close(fig)
    """
    if not lrs:
        raise ValueError("give at least one learning rate")
    grid = torch.linspace(-span, span, 121, dtype=features.dtype)
    surface = loss_surface(features, labels, weight_decay, grid, grid)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    contours = ax.contour(grid, grid, surface, levels=20, cmap="viridis", linewidths=0.8)
    fig.colorbar(contours, ax=ax, label="loss")
    for lr in lrs:
        path, losses = gradient_descent_path(features, labels, lr, weight_decay, steps)
        ax.plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1, label=f"η = {lr:g}: loss {losses[-1]:.3f}")
    ax.plot(0, 0, "k+", ms=10)
    ax.set_xlabel("weight w₁")
    ax.set_ylabel("weight w₂")
    ax.set_title(f"gradient descent, {steps} steps, λ = {weight_decay:g}")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def descent_playground(features: Tensor, labels: Tensor):
    """Sliders for η, λ and the number of steps over :func:`plot_descent`; returns an ``ipywidgets.interactive``.

    Needs ipywidgets (``ImportError`` otherwise) and a live kernel. Used in book/finetuning_math.ipynb.
    """
    import ipywidgets as widgets

    def show(lr: float, weight_decay: float, steps: int) -> None:
        plot_descent(features, labels, [lr], weight_decay, steps)
        plt.show()

    return widgets.interactive(
        show,
        lr=widgets.FloatLogSlider(value=1.0, base=10, min=-2, max=1, step=0.1, description="η"),
        weight_decay=widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="λ"),
        steps=widgets.IntSlider(value=30, min=1, max=200, description="steps"),
    )


def plot_schedules(schedules: dict[str, Sequence[float]]) -> Figure:
    """Learning rate against step, one line per named schedule.

    >>> fig = plot_schedules({"constant": [1.0, 1.0]}); plt.close(fig)
    """
    if not schedules:
        raise ValueError("give at least one schedule")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in schedules.items():
        ax.plot(range(len(values)), values, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title("learning-rate schedules")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_loss_curves(curves: dict[str, Sequence[float]], window: int = 10) -> Figure:
    """Training loss per step (faint) and its moving average over ``window`` steps, one colour per run.

    >>> fig = plot_loss_curves({"run": [1.0, 0.8, 0.7, 0.6]}, window=2); plt.close(fig)
    """
    if not curves:
        raise ValueError("give at least one loss curve")
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        values = torch.as_tensor(list(values), dtype=torch.float64)
        line = ax.plot(range(len(values)), values, alpha=0.25)[0]
        if len(values) >= window:
            smooth = values.unfold(0, window, 1).mean(dim=1)
            ax.plot(range(window - 1, len(values)), smooth, color=line.get_color(), label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy on the mini-batch")
    ax.set_title(f"training loss (lines: mean of {window} steps)")
    ax.legend()
    fig.tight_layout()
    return fig
