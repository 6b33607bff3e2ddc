"""The book's own structure: its chapters (from ``_toc.yml``) and its repository address.

Used by the Makefile (``python -m companion.book notebooks`` lists the chapters nbval
runs, in reading order) and by ``tests/test_book.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["book_root", "toc_files", "toc_notebooks", "repository_url", "glue"]


def book_root() -> Path:
    """The folder that holds ``_config.yml`` and ``_toc.yml`` (the repository root)."""
    here = Path(__file__).resolve().parent.parent
    if not (here / "_toc.yml").is_file():
        raise FileNotFoundError(f"{here} has no _toc.yml: run from a clone of the book's repository")
    return here


def _load_yaml(path: Path) -> dict:
    import yaml  # installed with jupyter-book; only needed when working on the book

    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _walk(entries: list[dict]) -> list[str]:
    found = []
    for entry in entries:
        if "file" in entry:
            found.append(entry["file"])
        for key in ("chapters", "sections"):
            found.extend(_walk(entry.get(key, [])))
    return found


def toc_files(root: Path | None = None) -> list[str]:
    """Every document in ``_toc.yml`` in reading order, without suffix (``book/intro``, ...)."""
    root = root or book_root()
    toc = _load_yaml(root / "_toc.yml")
    return [toc["root"], *_walk(toc.get("parts", [])), *_walk(toc.get("chapters", []))]


def toc_notebooks(root: Path | None = None) -> list[Path]:
    """The chapter notebooks listed in ``_toc.yml``, in reading order."""
    root = root or book_root()
    return [root / f"{name}.ipynb" for name in toc_files(root) if (root / f"{name}.ipynb").is_file()]


def repository_url(root: Path | None = None) -> str:
    """``repository.url`` from ``_config.yml``: the one place the address is written."""
    root = root or book_root()
    return _load_yaml(root / "_config.yml")["repository"]["url"]


def glue(name: str, value: object, display: bool = False) -> None:
    """Record ``value`` under ``name`` for the prose (``{glue:text}`name```), via myst-nb.

    Where myst-nb is not installed (Colab, a plain Jupyter), it does nothing: the value
    only matters to the rendered book, which is built with myst-nb.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=display)


if __name__ == "__main__":  # pragma: no cover - command-line helper for the Makefile
    if sys.argv[1:] == ["notebooks"]:
        print("\n".join(str(p.relative_to(book_root())) for p in toc_notebooks()))
    else:
        sys.exit("usage: python -m companion.book notebooks")
