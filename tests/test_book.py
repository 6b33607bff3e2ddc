"""The book's structure: table of contents, the standard setup cell, and the nbval policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from _tools import load_tool

from companion.book import book_root, repository_url, toc_files, toc_notebooks

ROOT = book_root()
NOTEBOOKS = toc_notebooks(ROOT)
IGNORE_MARKERS = ("# NBVAL_IGNORE_OUTPUT", "# NBVAL_SKIP")


#: tools/setup_cell.py: the one template of every chapter's Colab badge and setup cell.
SETUP_CELL = load_tool("setup_cell")


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" and c.source.strip()]


def test_toc_and_book_folder_agree() -> None:
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "book").rglob("*.ipynb")
               if ".ipynb_checkpoints" not in p.parts}
    listed = {name for name in toc_files(ROOT) if (ROOT / f"{name}.ipynb").is_file()}
    assert on_disk == listed, f"only on disk: {on_disk - listed}; only in _toc.yml: {listed - on_disk}"
    for name in toc_files(ROOT):
        assert any((ROOT / f"{name}{ext}").is_file() for ext in (".ipynb", ".md")), f"{name} in _toc.yml is missing"


def test_getting_started_is_the_first_chapter() -> None:
    assert NOTEBOOKS[0].name == "getting_started.ipynb"


def setup_cell(path: Path) -> str:
    return code_cells(path)[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_starts_with_the_standard_setup_cell(path: Path) -> None:
    source = setup_cell(path)
    assert source == setup_cell(NOTEBOOKS[0]), f"{path.name}: first cell differs from getting_started's"
    assert f'BOOK_REPO = "{repository_url(ROOT)}"' in source, "setup cell and _config.yml name different repositories"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_calls_setup_and_stores_outputs(path: Path) -> None:
    cells = code_cells(path)
    assert "setup(" in cells[1].source, f"{path.name}: second code cell must call companion.setup()"
    unrun = [i for i, c in enumerate(cells) if c.execution_count is None]
    assert not unrun, f"{path.name}: code cells {unrun} have no stored outputs; run tools/execute.py"
    errors = [i for i, c in enumerate(cells) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: cells {errors} stored an error"


def is_ignored(cell) -> bool:
    return cell.source.lstrip().startswith(IGNORE_MARKERS) or bool(
        {"nbval-ignore-output", "nbval-skip"} & set(cell.metadata.get("tags", []))
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_at_least_half_of_the_code_cells_are_compared(path: Path) -> None:
    cells = code_cells(path)
    ignored = [c for c in cells if is_ignored(c)]
    assert len(ignored) <= len(cells) / 2, f"{path.name}: {len(ignored)} of {len(cells)} code cells are not compared"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ignored_cells_are_followed_by_a_checked_cell(path: Path) -> None:
    """After a cell whose output varies, one of the next two cells prints a compared verdict."""
    cells = code_cells(path)
    for i, cell in enumerate(cells[2:], start=2):
        if is_ignored(cell):
            assert any(not is_ignored(c) for c in cells[i + 1 : i + 3]), (
                f"{path.name}: ignored cell {i} is not followed by a compared cell"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_starts_with_the_colab_badge_and_setup_cell_of_the_template(path: Path) -> None:
    """tools/setup_cell.py writes both cells from one template; python tools/setup_cell.py fixes a chapter."""
    badge, setup = SETUP_CELL.expected_cells(path, ROOT)
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source == badge, (
        f"{path.name}: the first cell is not the Colab badge of this chapter; run python tools/setup_cell.py")
    assert "remove-cell" in cells[0].metadata.get("tags", []), f"{path.name}: the badge must be tagged remove-cell"
    first_code = next(c for c in cells if c.cell_type == "code")
    assert first_code.source == setup, f"{path.name}: not the template's setup cell; run python tools/setup_cell.py"
    assert "hide-input" in first_code.metadata.get("tags", []), f"{path.name}: the setup cell must be tagged hide-input"
    assert not SETUP_CELL.differs(path), f"{path.name}: run python tools/setup_cell.py"


def test_the_setup_cell_installs_the_release_of_this_version() -> None:
    """One version number: companion.__version__ is the package's version and the tag the cell installs."""
    import tomllib

    import companion

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "companion.__version__"}
    assert set(pyproject["project"]["urls"].values()) >= {repository_url(ROOT)}
    source = setup_cell(NOTEBOOKS[0])
    assert f'BOOK_VERSION = "{companion.__version__}"' in source and "@v{BOOK_VERSION}" in source


def _colab_stub(tmp_path: Path) -> dict[str, str]:
    stub = tmp_path / "stub" / "google" / "colab"
    stub.mkdir(parents=True)
    (stub.parent / "__init__.py").write_text("")
    (stub / "__init__.py").write_text("")
    return dict(os.environ, PYTHONPATH=str(tmp_path / "stub"), PIP_TARGET=str(tmp_path / "site"),
                PIP_NO_DEPS="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")


def test_colab_branch_installs_the_companion_package(tmp_path: Path) -> None:
    """Run the setup cell as Colab would (a stub google.colab module), against this working tree.

    The requirement (the release tag on GitHub) is swapped for this working tree, and pip installs
    into a temporary folder without dependencies, so the test needs no internet. ``make
    test-colab`` runs the same cell with dependencies, in Colab's versions.
    """
    source = SETUP_CELL.local_source(setup_cell(NOTEBOOKS[0]), ROOT)
    assert ROOT.as_uri() in source
    done = subprocess.run([sys.executable, "-c", "import google.colab\n" + source], env=_colab_stub(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and not done.stdout and not done.stderr, done.stderr[-2000:]
    assert (tmp_path / "site" / "companion" / "env.py").is_file()


def test_colab_branch_stops_with_one_clear_message_when_pip_fails(tmp_path: Path) -> None:
    """No CalledProcessError traceback: what failed, and the command to install by hand."""
    source = SETUP_CELL.local_source(setup_cell(NOTEBOOKS[0]), tmp_path / "no-such-folder")
    done = subprocess.run([sys.executable, "-c", "import google.colab\n" + source], env=_colab_stub(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and not done.stdout
    message = done.stderr.strip().splitlines()
    assert len(message) == 2 and "Traceback" not in done.stderr, done.stderr
    assert message[0].startswith("Could not install the book's companion package (") and "no-such-folder" in message[0]
    assert message[1].startswith('Install it by hand in a new cell, !pip install "transformers-in-practice @ ')


def test_the_repository_address_is_the_same_everywhere() -> None:
    """_config.yml builds the book; companion.book.REPOSITORY_URL names it where the book is not (Colab)."""
    assert repository_url() == repository_url(ROOT), "companion.book.REPOSITORY_URL and _config.yml differ"


def test_outside_colab_the_setup_cell_does_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, PIP_TARGET=str(tmp_path / "site"))
    done = subprocess.run([sys.executable, "-c", setup_cell(NOTEBOOKS[0])], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "" and not (tmp_path / "site").exists()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapters_import_glue_from_companion(path: Path) -> None:
    """myst-nb is not installed in Colab: chapters use companion.book.glue, which falls back."""
    assert not any("from myst_nb import" in c.source for c in code_cells(path)), path.name


def test_glue_without_myst_nb_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from companion.book import glue

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # makes `import myst_nb` raise ImportError
    assert glue("answer", 42) is None


def test_chapter_times_are_recorded_under_a_lock(tmp_path: Path) -> None:
    """Four processes record four chapters at once into a fresh record: none is lost."""
    import multiprocessing

    from companion.book import chapter_times, chapter_times_table, record_chapter_time

    for name in ("_toc.yml", "_config.yml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "book").mkdir()
    chapters = [ROOT / f"{name}.ipynb" for name in toc_files(ROOT) if (ROOT / f"{name}.ipynb").is_file()][:4]
    for chapter in chapters:
        (tmp_path / "book" / chapter.name).write_text(chapter.read_text())
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(record_chapter_time, [(tmp_path / "book" / c.name, 10.0 + i, "cpu", None, tmp_path)
                                          for i, c in enumerate(chapters)])
    times = chapter_times(tmp_path)
    assert sorted(times) == sorted(f"book/{c.stem}" for c in chapters)
    assert times[f"book/{chapters[1].stem}"]["cpu"]["seconds"] == 11.0
    assert set(times[f"book/{chapters[0].stem}"]["cpu"]) == {"seconds", "cpu", "cores", "date", "torch"}
    with pytest.raises(ValueError, match="not a chapter"):
        record_chapter_time(tmp_path / "book" / "draft.ipynb", 1.0, root=tmp_path)
    table = chapter_times_table(tmp_path)
    assert len(table) == len(chapters) and table["on the CPU"].tolist() == ["10 s", "11 s", "12 s", "13 s"]
    assert (table["on a GPU"] == "not recorded").all() and table["measured on"].str.contains("cores").all()


def test_the_record_of_chapter_times_names_only_chapters() -> None:
    """book/chapter_times.json (written by tools/execute.py) holds chapters of _toc.yml, fully described."""
    from companion.book import chapter_times, chapter_times_table

    names = {p.relative_to(ROOT).with_suffix("").as_posix() for p in NOTEBOOKS}
    for chapter, devices in chapter_times(ROOT).items():
        assert chapter in names, f"{chapter} is recorded but is not a chapter of _toc.yml"
        for device, entry in devices.items():
            assert device in {"cpu", "cuda", "mps"} and entry["seconds"] > 0 and entry["cores"] >= 1
    assert len(chapter_times_table(ROOT)) == len(NOTEBOOKS)  # one row per chapter, recorded or not


def test_section_links_in_markdown_name_real_headings() -> None:
    """A raw ``<a href="chapter.html#id">`` in a chapter's prose points at a heading of that chapter.

    Sphinx cannot check such links (the site test does, in a browser); this checks them from
    the notebooks: the id must be one that docutils makes from a ``##``/``###`` heading.
    """
    import re

    from docutils.nodes import make_id

    def ids(path: Path) -> set[str]:
        cells = nbformat.read(path, as_version=4).cells
        titles = [line.lstrip("#").strip() for c in cells if c.cell_type == "markdown"
                  for line in c.source.splitlines() if re.match(r"#{2,3} ", line)]
        return {make_id(title) for title in titles}

    checked, broken = 0, []
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            for target, anchor in re.findall(r'<a href="(\w+)\.html#([\w-]+)"', cell.source):
                checked += 1
                chapter = ROOT / "book" / f"{target}.ipynb"
                if not chapter.is_file() or anchor not in ids(chapter):
                    broken.append(f"{path.name}: {target}.html#{anchor}")
    assert not broken, "links to sections that do not exist:\n" + "\n".join(broken)
    assert checked, "no section links found (the errata's map of the article has them)"
