"""Figures the training chapters share: training curves, confusion matrices, speed bars."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from companion.training import FitResult

__all__ = ["moving_average", "plot_training", "plot_confusion", "plot_speed"]


def moving_average(values: Sequence[float], window: int = 20) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start), same length as ``values``.

    >>> moving_average([1, 2, 3, 4], window=2).tolist()
    [1.0, 1.5, 2.5, 3.5]
    """
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


def plot_training(result: FitResult, window: int = 20, metrics: Sequence[str] = ("accuracy",)) -> plt.Figure:
    """Per-step training loss (smoothed) and, per epoch, the validation ``metrics`` (one panel each).

    ``metrics`` are names of :class:`~companion.training.Metrics` fields ("accuracy",
    "loss", "f1", ...). A dotted line marks the epoch :func:`~companion.training.fit` kept.
    """
    if not metrics or any(f"val_{m}" not in result.history[0] for m in metrics):
        raise ValueError(f"metrics must name validation metrics of the history, got {list(metrics)}")
    fig, axes = plt.subplots(1, 1 + len(metrics), figsize=(4.5 * (1 + len(metrics)), 3.5))
    left = axes[0]
    steps = np.arange(1, len(result.step_losses) + 1)
    left.plot(steps, result.step_losses, color="tab:blue", alpha=0.25, label="per step")
    left.plot(steps, moving_average(result.step_losses, window), color="tab:blue", label=f"mean of {window}")
    left.set(xlabel="optimizer step", ylabel="training loss", title="Training loss")
    left.legend()
    epochs = [row["epoch"] for row in result.history]
    for ax, metric, color in zip(axes[1:], metrics, ["tab:green", "tab:red", "tab:purple", "tab:orange"], strict=False):
        ax.plot(epochs, [row[f"val_{metric}"] for row in result.history], marker="o", color=color)
        ax.axvline(result.best_epoch, color="gray", linestyle=":", label="epoch kept")
        ax.set(xlabel="epoch", ylabel=f"validation {metric}", title=f"Validation {metric}", xticks=epochs)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion(confusion: np.ndarray, names: Sequence[str]) -> plt.Figure:
    """A confusion matrix with counts written in the cells (rows: true, columns: predicted)."""
    confusion = np.asarray(confusion)
    if confusion.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix of shape {confusion.shape} does not match {len(names)} names")
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 1.1 * len(names) + 2))
    ax.imshow(confusion, cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        color = "white" if count > confusion.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color)
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title="Confusion matrix")
    fig.tight_layout()
    return fig


def plot_speed(rates: dict[str, float], baseline: str, unit: str = "real tokens/s") -> plt.Figure:
    """Horizontal bars of ``rates`` (one per configuration), labelled with the ratio to ``baseline``."""
    if baseline not in rates:
        raise ValueError(f"baseline {baseline!r} is not one of {list(rates)}")
    names = list(rates)
    values = [rates[n] for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.2))
    ax.barh(names, values, color=["tab:gray" if n == baseline else "tab:blue" for n in names])
    for i, value in enumerate(values):
        ax.text(value, i, f" {value / rates[baseline]:.1f}x", va="center")
    ax.invert_yaxis()
    ax.set(xlabel=unit, xlim=(0, max(values) * 1.2), title=f"Training speed ({unit}), ratio to {baseline}")
    fig.tight_layout()
    return fig
