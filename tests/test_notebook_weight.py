"""Stored notebooks stay light: small widget state, no huge files, no image stored twice.

Fast and browser-free; the built site's weight is checked by site_tests/ (make check-site).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from companion.book import book_root

ROOT = book_root()
NOTEBOOKS = sorted(p for p in (ROOT / "book").glob("*.ipynb"))
MAX_WIDGET_STATE = 50_000  # bytes of JSON in metadata.widgets
MAX_NOTEBOOK = 2_000_000  # bytes on disk
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_not_too_large(path: Path) -> None:
    size = path.stat().st_size
    assert size <= MAX_NOTEBOOK, f"{path.name} is {size:,} bytes (limit {MAX_NOTEBOOK:,}): shrink its figures"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_widget_state_is_small(path: Path) -> None:
    state = load(path).get("metadata", {}).get("widgets")
    size = len(json.dumps(state)) if state else 0
    assert size <= MAX_WIDGET_STATE, (
        f"{path.name} stores {size:,} bytes of widget state (limit {MAX_WIDGET_STATE:,}); "
        "clear it (Jupyter: Settings > Save Widget State Automatically, off) and save again")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_image_is_stored_twice(path: Path) -> None:
    seen: dict[str, int] = {}
    twice = []
    for index, cell in enumerate(load(path)["cells"]):
        for output in cell.get("outputs", []):
            for mime in IMAGE_TYPES:
                data = output.get("data", {}).get(mime)
                if data is None:
                    continue
                digest = hashlib.sha256("".join(data).encode() if isinstance(data, list) else data.encode()).hexdigest()
                if digest in seen:
                    twice.append(f"cell {index} repeats the {mime} of cell {seen[digest]}")
                seen.setdefault(digest, index)
    assert not twice, f"{path.name}: " + "; ".join(twice)
