"""The book's own structure: its chapters (from ``_toc.yml``) and its repository address.

Used by the Makefile (``python -m companion.book notebooks`` lists the chapters nbval
runs, in reading order), by ``tests/test_book.py``, and by ``tools/execute.py``, which
records how long each chapter took in ``companion/records/chapter_times.json`` (read back
with :func:`chapter_times`; the table of *Getting started* is :func:`chapter_times_table`).

What the chapters call (:func:`glue`, :func:`chapter_times`, :func:`chapter_times_table`,
:func:`repository_url`) also works where only the package is installed (Colab): the record
of chapter times ships with it (see :mod:`companion.records`) and holds the table of
contents it was written against.
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

__all__ = ["book_root", "toc_files", "toc_notebooks", "REPOSITORY_URL", "repository_url", "glue",
           "CHAPTER_TIMES", "chapter_times", "record_chapter_time", "chapter_times_table"]

#: The record of measured chapter times, relative to :func:`book_root` (package data:
#: :func:`companion.records.load_record` reads it as ``"chapter_times"``).
CHAPTER_TIMES = "companion/records/chapter_times.json"
#: The book's repository. ``_config.yml`` (``repository.url``) is the address the book is
#: built with; this copy lets the package name it where it is installed without the book
#: (Colab). ``tests/test_book.py`` checks that the two, and the setup cell, agree.
REPOSITORY_URL = "https://github.com/transformers-in-practice/transformers-in-practice"


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
    """The book's repository: ``repository.url`` of ``root``'s ``_config.yml``, or without a root
    :data:`REPOSITORY_URL` (which works outside a clone; a test checks it equals ``_config.yml``'s).

    >>> repository_url().startswith("https://github.com/")
    True
    """
    if root is None:
        return REPOSITORY_URL
    return _load_yaml(Path(root) / "_config.yml")["repository"]["url"]


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
    ``gpu``. ``tools/execute.py`` writes it; *Getting started* shows it. Without ``root``
    it is the record shipped with the package (:func:`companion.records.load_record`), so
    it reads the same in a clone and where only the package is installed (Colab).

    >>> times = chapter_times()
    >>> all(name.startswith("book/") for name in times)
    True
    """
    return _times_record(root).get("chapters", {})


def _times_record(root: Path | None = None) -> dict:
    """The whole record of chapter times (``chapters`` and ``toc``), empty before any run."""
    from companion.records import records_dir

    path = Path(root) / CHAPTER_TIMES if root is not None else records_dir() / Path(CHAPTER_TIMES).name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def record_chapter_time(notebook: Path, seconds: float, device: str = "cpu", gpu: str | None = None,
                        root: Path | None = None) -> dict:
    """Store one chapter's execution time in the record, and return the entry written.

    The file is locked (``fcntl.flock``) from read to write, so that several people or
    processes executing chapters at once never lose each other's entries. Only chapters
    listed in ``_toc.yml`` are recorded (``ValueError`` otherwise). Used by
    ``tools/execute.py``, not by the chapters. The record also stores, under ``toc``, every
    chapter of ``_toc.yml`` in reading order with its title, so that
    :func:`chapter_times_table` can list them where there is no ``_toc.yml`` (Colab).
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
    path.parent.mkdir(parents=True, exist_ok=True)
    toc = [{"chapter": nb.relative_to(root).with_suffix("").as_posix(), "title": _title(nb)}
           for nb in toc_notebooks(root)]
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        handle.seek(0)
        text = handle.read()
        record = json.loads(text) if text.strip() else {
            "about": "Seconds each chapter took to execute, written by tools/execute.py; never edit by hand.",
            "chapters": {}}
        record["chapters"].setdefault(name, {})[device] = entry
        record["chapters"] = dict(sorted(record["chapters"].items()))
        record["toc"] = toc
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
    cell's Markdown output as CommonMark, which has no tables). In a clone, the chapters
    are those of ``_toc.yml`` now; where only the package is installed (Colab), those the
    shipped record was written against (its ``toc``).
    """
    import pandas as pd

    columns = ["on the CPU", "measured on", "on a GPU"]
    if root is None:
        try:
            root = book_root()
        except FileNotFoundError:
            root = None
    if root is not None:
        chapters = [(nb.relative_to(root).with_suffix("").as_posix(), _title(nb)) for nb in toc_notebooks(root)]
        times = chapter_times(root)
    else:
        record = _times_record()
        chapters = [(entry["chapter"], entry["title"]) for entry in record.get("toc", [])]
        times = record.get("chapters", {})
    rows = {}
    for name, title in chapters:
        measured = times.get(name, {})
        cpu, gpu = measured.get("cpu"), measured.get("cuda")
        rows[title] = [
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
