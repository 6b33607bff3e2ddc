"""companion.records: the measured records ship inside the package, with clear errors."""

from __future__ import annotations

import pytest

from companion.book import CHAPTER_TIMES, book_root, toc_notebooks
from companion.records import RecordError, load_record, record_names, record_path, records_dir


def test_the_records_the_chapters_read_are_shipped() -> None:
    assert {"cpu", "full_split", "chapter_times"} <= set(record_names())
    assert load_record("cpu")["table"] and load_record("cpu.json") == load_record("cpu")
    assert set(load_record("full_split")["runs"]) == {"cls", "mean"}
    assert records_dir() == book_root() / "companion" / "records"  # the editable install reads the clone
    assert record_path("chapter_times") == book_root() / CHAPTER_TIMES


def test_an_unknown_record_names_itself_and_those_shipped() -> None:
    with pytest.raises(RecordError, match=r"'gpu'.*shipped are: .*chapter_times, cpu") as caught:
        load_record("gpu")
    assert isinstance(caught.value, FileNotFoundError)


@pytest.mark.parametrize("bad", ["", "../pyproject", ".hidden", "a/b"])
def test_a_path_is_not_a_record_name(bad: str) -> None:
    with pytest.raises(ValueError, match="name must be"):
        load_record(bad)


def test_a_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="name must be a string"):
        load_record(3)  # type: ignore[arg-type]


def test_the_chapter_times_record_lists_the_chapters_it_was_written_against() -> None:
    """Where there is no _toc.yml (Colab), the table of chapter times lists the record's ``toc``.

    tools/execute.py rewrites it with every chapter it executes; re-execute a chapter
    (getting_started last) after changing _toc.yml.
    """
    root = book_root()
    listed = [entry["chapter"] for entry in load_record("chapter_times")["toc"]]
    assert listed == [nb.relative_to(root).with_suffix("").as_posix() for nb in toc_notebooks(root)], (
        "companion/records/chapter_times.json lists other chapters than _toc.yml: re-execute a chapter "
        "with tools/execute.py"
    )
