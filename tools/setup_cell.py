"""Write the two standard cells at the top of every chapter from one template, or check them.

Every chapter of ``_toc.yml`` starts with

1. **the Colab badge**: a Markdown cell, ``[![Open In Colab](...)](...)``, that opens this
   notebook in Google Colab from GitHub. It is tagged ``remove-cell``: the built book already has
   a Colab launch button (and loads no image from outside), so only GitHub and Jupyter show it;
2. **the setup cell**: the first code cell. In Colab it installs the companion package at the
   release the chapter's stored outputs come from (git tag ``v`` + ``companion.__version__``); on
   failure it stops the notebook with one message saying what failed and how to install by hand;
   anywhere else it does nothing. It is tagged ``hide-input``: collapsed on the web page.

Usage (with the book's ``.venv``)::

    python tools/setup_cell.py            # rewrite both cells in every chapter of _toc.yml
    python tools/setup_cell.py book/x.ipynb   # only these notebooks
    python tools/setup_cell.py --check    # exit 1, naming each chapter that differs

Idempotent: a notebook already in shape is not rewritten. ``tests/test_book.py`` checks every
chapter against :func:`expected_cells`; ``tools/colab_twin.py`` runs the setup cell as Colab
would, with :func:`local_source` pointing it at this working tree instead of the tag.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # this clone's companion, not an installed one
    sys.path.insert(0, str(ROOT))

from companion.book import repository_url, toc_notebooks  # noqa: E402

#: The distribution name of the companion package (``[project] name`` in pyproject.toml).
DISTRIBUTION = "transformers-in-practice"
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_PREFIX = "[![Open In Colab]("
BADGE_TAGS = ["remove-cell"]
SETUP_TAGS = ["hide-input"]
SETUP_PREFIX = "# Setup: in Google Colab"
#: The requirement the setup cell installs, as it is written in the cell (an f-string).
PACKAGE_EXPRESSION = 'f"' + DISTRIBUTION + ' @ git+{BOOK_REPO}@v{BOOK_VERSION}"'

SETUP_TEMPLATE = '''\
# Setup: in Google Colab, install the book's companion package at the release these outputs
# come from; anywhere else this cell does nothing (install locally with `make setup`, see README).
import sys

BOOK_REPO = "{repo}"
BOOK_VERSION = "{version}"  # companion.__version__; its release is the git tag v{version}
if "google.colab" in sys.modules:
    import subprocess

    package = {package}
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", package],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        lines = [line.strip() for line in pip.stderr.splitlines() if "subprocess-exited" not in line]
        errors = [line for line in lines if line.lower().startswith(("error", "fatal"))]
        reason = errors[0] if errors else f"pip exited with status {{pip.returncode}}"
        raise SystemExit(f"Could not install the book's companion package ({{reason}}).\\n"
                         f'Install it by hand in a new cell, !pip install "{{package}}", then run this again.')'''


def package_version(root: Path = ROOT) -> str:
    """``companion.__version__``, read from ``companion/__init__.py`` without importing it."""
    tree = ast.parse((root / "companion" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f"{root / 'companion' / '__init__.py'} defines no __version__")


def setup_source(root: Path = ROOT) -> str:
    """The setup cell's source for the book at ``root``."""
    return SETUP_TEMPLATE.format(repo=repository_url(root), version=package_version(root), package=PACKAGE_EXPRESSION)


def colab_url(notebook: Path, root: Path = ROOT, branch: str = "main") -> str:
    """The address that opens ``notebook`` (a file under ``root``) in Colab from GitHub."""
    repo = repository_url(root).removeprefix("https://github.com/")
    path = Path(notebook).resolve().relative_to(root.resolve()).as_posix()
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/{path}"


def badge_source(notebook: Path, root: Path = ROOT) -> str:
    """The badge cell's source: the Colab badge linking to this notebook."""
    return f"{BADGE_PREFIX}{BADGE_SVG})]({colab_url(notebook, root)})"


def expected_cells(notebook: Path, root: Path = ROOT) -> tuple[str, str]:
    """``(badge source, setup source)`` that ``notebook`` must start with."""
    return badge_source(notebook, root), setup_source(root)


def local_source(source: str, root: Path = ROOT) -> str:
    """The setup cell with its requirement pointed at the working tree ``root`` instead of the tag.

    ``tools/colab_twin.py`` runs this as Colab runs the cell, so that the twin tests the cell's
    own pip command on the package as it is now (a tag of it need not exist yet).
    """
    if source.count(PACKAGE_EXPRESSION) != 1:
        raise ValueError(f"the setup cell must contain {PACKAGE_EXPRESSION} exactly once")
    return source.replace(PACKAGE_EXPRESSION, repr(f"{DISTRIBUTION} @ {Path(root).resolve().as_uri()}"))


def _tagged(cell, tags: list[str]) -> None:
    cell.metadata["tags"] = [*tags, *(t for t in cell.metadata.get("tags", []) if t not in tags)]


def rewrite(notebook: Path, root: Path = ROOT, nb: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    """``notebook`` with the badge as its first cell and the standard setup cell as its first code cell.

    An existing badge cell is replaced wherever it is; an existing setup cell (the first code
    cell, if it starts with the setup comment) gets the template's source and tag, keeping its
    id and stored outputs; otherwise a setup cell is inserted before the first code cell. ``nb``,
    when given, is rewritten instead of the file's content (``notebook`` still names the chapter).
    """
    nb = nbformat.read(notebook, as_version=4) if nb is None else nb
    badge, setup = expected_cells(notebook, root)
    nb.cells = [c for c in nb.cells if not (c.cell_type == "markdown" and c.source.startswith(BADGE_PREFIX))]
    badge_cell = nbformat.v4.new_markdown_cell(badge, id="colab-badge")
    _tagged(badge_cell, BADGE_TAGS)
    nb.cells.insert(0, badge_cell)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if code and nb.cells[code[0]].source.startswith(SETUP_PREFIX):
        cell = nb.cells[code[0]]
        cell.source = setup
    else:
        cell = nbformat.v4.new_code_cell(setup, id="setup")
        nb.cells.insert(code[0] if code else len(nb.cells), cell)
    _tagged(cell, SETUP_TAGS)
    return nb


def differs(notebook: Path, root: Path = ROOT) -> bool:
    """Whether ``notebook``'s badge or setup cell differs from the template."""
    return nbformat.writes(rewrite(notebook, root)) != nbformat.writes(nbformat.read(notebook, as_version=4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter of _toc.yml")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook differs")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or toc_notebooks(ROOT)
    stale = [path for path in notebooks if differs(path)]
    if args.check:
        for path in stale:
            print(f"{path}: badge or setup cell differs from tools/setup_cell.py's template", file=sys.stderr)
        if stale:
            print("run: python tools/setup_cell.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        nbformat.write(rewrite(path), path)
        print(f"rewrote {path}")
    print(f"{len(notebooks) - len(stale)} of {len(notebooks)} notebooks were already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
