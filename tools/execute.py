"""Re-execute chapter notebooks in place, storing fresh outputs (the references nbval checks).

    .venv/bin/python tools/execute.py book/getting_started.ipynb [more.ipynb ...]
    .venv/bin/python tools/execute.py --from-percent draft.py book/new_chapter.ipynb

``--from-percent`` first builds the notebook from a script whose cells are separated by
``# %%`` lines (``# %% [markdown]`` for prose, each line starting with ``# ``).
Outputs are never typed by hand: this script is how they get into the notebooks.

Each chapter's execution time (with the CPU model, cores, date and torch version) goes
into ``companion/records/chapter_times.json`` (package data, so Colab has it too), the one
record of chapter times that *Getting started* and the README point to
(``companion.book.record_chapter_time``; ``--no-record`` skips it).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def from_percent(text: str) -> nbformat.NotebookNode:
    """Build a notebook from ``# %%``-separated cells."""
    nb = nbformat.v4.new_notebook()
    blocks = re.split(r"^# %%(.*)$", text, flags=re.M)
    for header, body in zip(blocks[1::2], blocks[2::2], strict=True):
        body = body.strip("\n")
        if "[markdown]" in header:
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines()]
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        else:
            cell = nbformat.v4.new_code_cell(body)
            tags = re.findall(r"tags=\[([^\]]*)\]", header)
            if tags:
                cell.metadata["tags"] = [t.strip().strip("\"'") for t in tags[0].split(",") if t.strip()]
            nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(path: Path, timeout: int = 1800) -> float:
    """Run every cell of ``path`` in a fresh kernel (cwd = its folder) and save it."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    start = time.perf_counter()
    resources = {"metadata": {"path": str(path.parent)}}
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    # Widget state cannot render in the static book (and broke its pages): never store it.
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def record(path: Path, seconds: float) -> str:
    """Store ``seconds`` for ``path`` in the book's record of chapter times; say what was stored."""
    import torch

    from companion.book import record_chapter_time
    from companion.env import pick_device

    device = pick_device()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    try:
        entry = record_chapter_time(path, seconds, device=device.type, gpu=gpu)
    except ValueError as error:
        return f"not recorded ({error})"
    return f"recorded on {device.type}: {entry['cpu']}, {entry['cores']} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-percent", type=Path, help="build the (single) notebook from this script first")
    parser.add_argument("--no-record", action="store_true",
                        help="do not store the times in companion/records/chapter_times.json")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args()
    if args.from_percent:
        if len(args.notebooks) != 1:
            sys.exit("--from-percent builds exactly one notebook")
        nbformat.write(from_percent(args.from_percent.read_text(encoding="utf-8")), args.notebooks[0])
    for path in args.notebooks:
        seconds = execute(path)
        stored = "" if args.no_record else f"; {record(path, seconds)}"
        print(f"{path}: executed in {seconds:.0f} s{stored}", flush=True)


if __name__ == "__main__":
    main()
