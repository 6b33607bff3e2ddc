"""The package works where the book is not: a wheel installed (not editable) and run outside the clone.

That is Colab's situation (the setup cell pip-installs the package; there is no ``_toc.yml``,
no ``benchmarks/``, no ``book/``). The test builds a wheel of this working tree, installs it
into a temporary folder, and from another temporary folder calls every helper the chapters
call that reads a file: the records, the table of chapter times, the repository address, the
checkpoint and the data loaders' paths, and the fine-tuning program's entry point.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from companion.book import book_root

ROOT = book_root()

PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import companion
    from companion.book import book_root, chapter_times, chapter_times_table, glue, repository_url
    from companion.records import load_record, record_names

    found = {"companion": companion.__file__, "records": record_names()}
    try:
        book_root()
        found["book_root"] = "found"
    except FileNotFoundError:
        found["book_root"] = "absent"
    found["cpu_configurations"] = len(load_record("cpu")["table"])
    found["full_split_heads"] = sorted(load_record("full_split")["runs"])
    found["toc"] = [entry["chapter"] for entry in load_record("chapter_times")["toc"]]
    table = chapter_times_table()
    found["table_rows"] = len(table)
    found["recorded"] = int((table["on the CPU"] != "not recorded").sum())
    found["chapter_times"] = len(chapter_times())
    found["measured_on_cpu"] = sum("cpu" in chapter_times().get(name, {}) for name in found["toc"])
    found["repository_url"] = repository_url()
    glue("probe", 1)

    from companion.models import checkpoint_path, load_tokenizer
    from companion.data import cache_dir, load_rotten_tomatoes
    from companion.questions import load_trec

    found["checkpoint"] = Path(checkpoint_path(), "config.json").is_file()
    found["vocabulary"] = len(load_tokenizer())
    found["data_cache"] = str(cache_dir())
    found["rotten_tomatoes"] = {name: len(split) for name, split in load_rotten_tomatoes().items()}
    found["trec"] = {name: len(split) for name, split in load_trec().items()}
    print(json.dumps(found))
    """
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this working tree, built from a copy (no build/ left in the clone), installed into a folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "companion", source / "companion", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(source)],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp / "dist").glob("transformers_in_practice-*.whl"))
    site = tmp / "site"
    done = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return site


def run_outside(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run this Python (whose site-packages hold the dependencies) with the installed wheel first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BOOK_CHECKPOINT_DIR")}
    env["PYTHONPATH"] = str(site)  # ahead of the editable install of the clone
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_chapters_helpers_work_from_an_installed_wheel(installed: Path, tmp_path: Path) -> None:
    done = run_outside(installed, tmp_path, "-c", PROBE)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(found["companion"]).is_relative_to(installed), f"imported the clone's package: {found['companion']}"
    assert found["book_root"] == "absent"  # really outside a clone
    assert {"cpu", "full_split", "chapter_times"} <= set(found["records"])
    assert found["cpu_configurations"] >= 5 and found["full_split_heads"] == ["cls", "mean"]
    # one row per chapter; a chapter just added to _toc.yml reads "not recorded" until it is executed
    assert found["table_rows"] == len(found["toc"]) >= 10 and found["recorded"] == found["measured_on_cpu"] >= 10
    from companion.book import repository_url

    assert found["repository_url"] == repository_url(ROOT)
    assert found["checkpoint"] and found["vocabulary"] == 30522
    assert set(found["rotten_tomatoes"]) == {"train", "validation", "test"} and set(found["trec"]) == set(
        found["rotten_tomatoes"])


def test_the_fine_tuning_program_starts_from_an_installed_wheel(installed: Path, tmp_path: Path) -> None:
    """*Scaling out* runs ``python -m companion.finetune``: no ``book/scripts`` needed."""
    done = run_outside(installed, tmp_path, "-m", "companion.finetune", "--help")
    assert done.returncode == 0 and "--train-size" in done.stdout, done.stderr[-2000:]
