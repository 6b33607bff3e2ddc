"""Choosing a hyper-parameter on the validation split: a learning-rate grid that grows past its edges.

A grid whose best value sits on its edge has not found the best value, only a side of
it. :func:`sweep_learning_rates` scores a starting grid and, while the best rate is the
largest (or the smallest) one tried, adds the next rate beyond it. Used in
``book/walkthrough.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

__all__ = ["sweep_learning_rates", "best_at_edge"]


def best_at_edge(scores: dict[float, float]) -> bool:
    """True when the best-scoring rate is the smallest or the largest rate in ``scores``.

    >>> best_at_edge({1e-4: 0.7, 2e-4: 0.8}), best_at_edge({1e-4: 0.7, 2e-4: 0.8, 4e-4: 0.75})
    (True, False)
    """
    if not scores:
        raise ValueError("no scores: sweep at least one learning rate")
    best = max(scores, key=scores.get)
    return best in (min(scores), max(scores))


def sweep_learning_rates(
    score: Callable[[float], float],
    rates: Iterable[float],
    max_extensions: int = 2,
    factor: float = 2.0,
) -> dict[float, float]:
    """``{rate: score(rate)}`` over ``rates``, extended while the best rate lies at an edge.

    Each extension adds one rate, ``factor`` times beyond the edge the best rate sits on,
    at most ``max_extensions`` times; higher scores are better, and ties go to the
    smaller rate. The result is ordered by rate; check :func:`best_at_edge` on it to know
    whether the search still ended at an edge.

    >>> sorted(sweep_learning_rates(lambda lr: -abs(math.log(lr / 8e-4)), [1e-4, 2e-4, 4e-4]))
    [0.0001, 0.0002, 0.0004, 0.0008, 0.0016]
    """
    rates = sorted(set(rates))
    if not rates:
        raise ValueError("give at least one learning rate to try")
    if any(not (math.isfinite(r) and r > 0) for r in rates):
        raise ValueError(f"learning rates must be positive, finite numbers, got {rates}")
    if max_extensions < 0 or not factor > 1:
        raise ValueError(f"need max_extensions >= 0 and factor > 1, got {max_extensions} and {factor}")
    scores = {rate: float(score(rate)) for rate in rates}
    for _ in range(max_extensions):
        best = min(scores, key=lambda rate: (-scores[rate], rate))
        if best == max(scores):
            new = best * factor
        elif best == min(scores):
            new = best / factor
        else:
            break
        scores[new] = float(score(new))
    return dict(sorted(scores.items()))
