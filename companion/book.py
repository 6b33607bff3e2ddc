"""The book's own structure: its chapters (from ``_toc.yml``) and its repository address.

Used by the Makefile (``python -m companion.book notebooks`` lists the chapters nbval
runs, in reading order), by ``tests/test_book.py``, and by ``tools/execute.py``, which
records how long each chapter took in ``book/chapter_times.json`` (read back with
:func:`chapter_times`; the table of *Getting started* is :func:`chapter_times_table`).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported only when a table is asked for
    import pandas

__all__ = ["book_root", "toc_files", "toc_notebooks", "repository_url", "glue",
           "CHAPTER_TIMES", "chapter_times", "record_chapter_time", "chapter_times_table"]

#: The record of measured chapter times, relative to :func:`book_root`.
CHAPTER_TIMES = "book/chapter_times.json"


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


def _cores() -> int:
    """The CPU cores this process may use (its affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def chapter_times(root: Path | None = None) -> dict[str, dict[str, dict]]:
    """The measured chapter times: ``{chapter: {device: entry}}``, empty before any run.

    A chapter is named as in ``_toc.yml`` (``"book/walkthrough"``), a device as
    :func:`companion.env.pick_device` names it (``"cpu"``, ``"cuda"``, ``"mps"``), and an
    entry holds ``seconds``, ``cpu`` (model name and vector units, from
    :func:`companion.env.cpu_kind`), ``cores``, ``date``, ``torch`` and, on a GPU,
    ``gpu``. ``tools/execute.py`` writes it; *Getting started* shows it. Outside a
    clone of the book (in Colab, where only the package is installed) there is no record:
    the result is empty too.

    >>> times = chapter_times()
    >>> all(name.startswith("book/") for name in times)
    True
    """
    try:
        root = root or book_root()
    except FileNotFoundError:
        return {}
    path = root / CHAPTER_TIMES
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))["chapters"]


def record_chapter_time(notebook: Path, seconds: float, device: str = "cpu", gpu: str | None = None,
                        root: Path | None = None) -> dict:
    """Store one chapter's execution time in the record, and return the entry written.

    The file is locked (``fcntl.flock``) from read to write, so that several people or
    processes executing chapters at once never lose each other's entries. Only chapters
    listed in ``_toc.yml`` are recorded (``ValueError`` otherwise). Used by
    ``tools/execute.py``, not by the chapters.
    """
    import fcntl

    import torch

    from companion.env import cpu_kind  # torch is only needed here, not to list the chapters

    root = (root or book_root()).resolve()
    name = Path(notebook).resolve().relative_to(root).with_suffix("").as_posix()
    if name not in toc_files(root):
        raise ValueError(f"{name} is not a chapter of _toc.yml: its time is not recorded")
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    entry = {"seconds": round(float(seconds), 1), "cpu": cpu_kind(), "cores": _cores(),
             "date": datetime.date.today().isoformat(), "torch": torch.__version__}
    if gpu:
        entry["gpu"] = gpu
    path = root / CHAPTER_TIMES
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        handle.seek(0)
        text = handle.read()
        record = json.loads(text) if text.strip() else {
            "about": "Seconds each chapter took to execute, written by tools/execute.py; never edit by hand.",
            "chapters": {}}
        record["chapters"].setdefault(name, {})[device] = entry
        record["chapters"] = dict(sorted(record["chapters"].items()))
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return entry


def _title(notebook: Path) -> str:
    """A chapter's title: the first ``# `` heading of its notebook."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        for line in "".join(cell["source"]).splitlines():
            if cell["cell_type"] == "markdown" and line.startswith("# "):
                return line[2:].strip()
    return notebook.stem


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def chapter_times_table(root: Path | None = None) -> pandas.DataFrame:
    """Every chapter of ``_toc.yml`` with its recorded times, one row each (a DataFrame).

    A chapter not yet executed with ``tools/execute.py`` reads "not recorded". A DataFrame
    shows as a table in Jupyter, in Colab and in the built book alike (myst-nb renders a
    cell's Markdown output as CommonMark, which has no tables). Outside a clone of the
    book (in Colab) there is no record and no table of contents: the table is empty.
    """
    import pandas as pd

    columns = ["on the CPU", "measured on", "on a GPU"]
    try:
        root = root or book_root()
    except FileNotFoundError:
        return pd.DataFrame(columns=columns).rename_axis("chapter")
    times = chapter_times(root)
    rows = {}
    for notebook in toc_notebooks(root):
        measured = times.get(notebook.relative_to(root).with_suffix("").as_posix(), {})
        cpu, gpu = measured.get("cpu"), measured.get("cuda")
        rows[_title(notebook)] = [
            _duration(cpu["seconds"]) if cpu else "not recorded",
            f"{cpu['cpu']}, {cpu['cores']} cores, torch {cpu['torch']}, {cpu['date']}" if cpu else "",
            f"{_duration(gpu['seconds'])} ({gpu.get('gpu', 'CUDA')})" if gpu else "not recorded",
        ]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("chapter")


if __name__ == "__main__":  # pragma: no cover - command-line helper for the Makefile
    if sys.argv[1:] == ["notebooks"]:
        print("\n".join(str(p.relative_to(book_root())) for p in toc_notebooks()))
    else:
        sys.exit("usage: python -m companion.book notebooks")
