"""The book's measured records, shipped inside the package so that no chapter needs a clone.

Each record is a JSON file in ``companion/records/``, beside this module, that a script wrote and nobody edits
by hand: the speed benchmark's records, one per kind of CPU (``cpu``,
``cpu-amd-epyc-avx512-bf16``; ``benchmarks/finetune_speed.py --json``), the walkthrough's
recipe on the whole training split (``full_split``; ``benchmarks/full_split.py``) and the
chapters' execution times (``chapter_times``; ``tools/execute.py``). They are package data,
so ``pip install`` (Colab) brings them along with the code that reads them;
``companion/records/README.md`` says what each holds and how to reproduce it.

Used by ``book/speed.ipynb``, ``book/walkthrough.ipynb`` and, through
:func:`companion.book.chapter_times_table`, ``book/getting_started.ipynb``.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["RecordError", "records_dir", "record_names", "record_path", "load_record"]

SUFFIX = ".json"


class RecordError(FileNotFoundError):
    """A record is not shipped with the package; the message lists those that are."""


def records_dir() -> Path:
    """The folder of the shipped records (``companion/records``, inside the installed package).

    >>> (records_dir() / "full_split.json").is_file()
    True
    """
    return Path(__file__).resolve().parent


def record_names() -> list[str]:
    """The names of the shipped records, without ``.json``, sorted.

    >>> "chapter_times" in record_names()
    True
    """
    return sorted(path.stem for path in records_dir().glob(f"*{SUFFIX}"))


def _name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string such as 'cpu', got {type(name).__name__}")
    name = name.removesuffix(SUFFIX)
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"name must be a record's bare name such as 'cpu' or 'full_split', got {name!r}")
    return name


def record_path(name: str) -> Path:
    """Where the record ``name`` lives (``"cpu"`` or ``"cpu.json"``), whether it exists yet or not.

    The benchmark scripts and ``tools/execute.py`` write here.
    """
    return records_dir() / f"{_name(name)}{SUFFIX}"


def load_record(name: str) -> dict:
    """The record ``name`` (``"cpu"``, ``"full_split"``, ``"chapter_times"``, ...) as a dict.

    A name that is not shipped raises :class:`RecordError` naming it and listing those
    that are.

    >>> load_record("full_split")["runs"]["mean"]["epochs"]
    3
    """
    path = record_path(name)
    if not path.is_file():
        raise RecordError(
            f"no record named {_name(name)!r} in {records_dir()}; the records shipped are: "
            f"{', '.join(record_names()) or 'none'}"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RecordError(f"the record {path} is not valid JSON ({error}): restore it with git") from None
