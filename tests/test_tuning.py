"""companion.tuning: the learning-rate grid that grows past its edges."""

from __future__ import annotations

import math

import pytest

from companion.tuning import best_at_edge, sweep_learning_rates


def peaked_at(peak: float):
    calls = []

    def score(lr: float) -> float:
        calls.append(lr)
        return -abs(math.log(lr / peak))

    return score, calls


def test_an_inner_best_needs_no_extension() -> None:
    score, calls = peaked_at(2e-4)
    scores = sweep_learning_rates(score, [1e-4, 2e-4, 4e-4])
    assert list(scores) == [1e-4, 2e-4, 4e-4] and calls == [1e-4, 2e-4, 4e-4]
    assert not best_at_edge(scores)


def test_a_best_at_the_top_edge_extends_upwards_until_it_is_inside() -> None:
    score, _ = peaked_at(8e-4)
    scores = sweep_learning_rates(score, [1e-4, 2e-4, 4e-4])
    assert list(scores) == pytest.approx([1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3])
    assert not best_at_edge(scores)


def test_a_best_at_the_bottom_edge_extends_downwards() -> None:
    score, _ = peaked_at(2.5e-5)
    scores = sweep_learning_rates(score, [1e-4, 2e-4, 4e-4])
    assert min(scores) == pytest.approx(2.5e-5) and best_at_edge(scores)  # two extensions were not enough


def test_extensions_are_bounded_and_the_edge_is_reported() -> None:
    score, calls = peaked_at(1.0)
    scores = sweep_learning_rates(score, [1e-4, 2e-4], max_extensions=1)
    assert len(calls) == 3 and best_at_edge(scores)


def test_ties_go_to_the_smaller_rate() -> None:
    scores = sweep_learning_rates(lambda lr: 0.5, [1e-4, 2e-4, 4e-4], max_extensions=1)
    assert min(scores) == pytest.approx(5e-5)  # the best (the smallest, on a tie) sat on the lower edge


@pytest.mark.parametrize("rates", [[], [0.0], [-1e-4], [math.nan], [math.inf]])
def test_bad_rates_are_refused(rates) -> None:
    with pytest.raises(ValueError, match="learning rate"):
        sweep_learning_rates(lambda lr: 0.0, rates)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="factor > 1"):
        sweep_learning_rates(lambda lr: 0.0, [1e-4], factor=1.0)
    with pytest.raises(ValueError, match="no scores"):
        best_at_edge({})
