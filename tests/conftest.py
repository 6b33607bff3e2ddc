"""Shared fixtures: the real data file and the real checkpoint are small, so tests use them."""

from __future__ import annotations

import pytest

from companion.env import quiet_libraries


@pytest.fixture(scope="session", autouse=True)
def _quiet() -> None:
    quiet_libraries()


@pytest.fixture(scope="session")
def rotten_tomatoes():
    """The default splits (fetched once per machine, then read from the cache)."""
    from companion.data import load_rotten_tomatoes

    return load_rotten_tomatoes()


@pytest.fixture(scope="session")
def tokenizer():
    from companion.models import load_tokenizer

    return load_tokenizer("minilm")
