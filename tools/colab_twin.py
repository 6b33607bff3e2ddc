"""The Colab twin: does the setup cell install the book into Colab's packages without changing them?

Run by ``make test-colab`` with the twin's own Python (``.venv-colab``, built from
``requirements-colab.txt``: Colab's versions). Three steps:

``snapshot``
    After the twin is built: check that every package of requirements-colab.txt is installed at
    its pinned version, and record every installed version in ``.venv-colab/colab-versions.json``.
``install``
    Put the twin back to that record (uninstall what an earlier ``install`` added), then run the
    setup cell of the first chapter exactly as Colab runs it (a stand-in ``google.colab`` module is
    importable), with its requirement pointed at this working tree instead of the release tag
    (:func:`setup_cell.local_source`). Fail, naming each package, if pip upgraded, downgraded or
    removed any of Colab's packages; list what it added; check that ``import companion`` outside
    the clone finds the installed package at ``companion.__version__``.
``resolve``
    Resolve the package for Python 3.13, Colab's Python, with Colab's versions as constraints
    (torch at Colab's 2.11.0 instead of the twin's CPU build): a dry run that fetches only package
    metadata, so that a bound Colab cannot meet fails here. Uses ``python3.13`` where there is one;
    otherwise this Python's pip with ``--python-version 3.13 --only-binary=:all:``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import setup_cell  # noqa: E402  (tools/setup_cell.py: the one template of the setup cell)

ROOT = setup_cell.ROOT
REQUIREMENTS = ROOT / "requirements-colab.txt"
RECORD = Path(sys.prefix) / "colab-versions.json"
#: Colab's torch (pip-freeze.gpu.txt: 2.11.0+cu128), which the 3.13 dry run resolves instead of the twin's.
COLAB_TORCH = "2.11.0"

VERSIONS = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")


def _key(name: str) -> str:
    """A distribution name in canonical form (PEP 503): ``PyYAML`` and ``pyyaml`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """Every distribution installed in this Python, ``{canonical name: version}``, read in a fresh process."""
    done = subprocess.run([sys.executable, "-c", VERSIONS], capture_output=True, text=True, check=True,
                          cwd=tempfile.gettempdir())
    return {_key(name): version for name, version in json.loads(done.stdout).items()}


def pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of a requirements file."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            if not version:
                raise ValueError(f"{path}: {line!r} is not pinned with ==")
            found[_key(name)] = version.strip()
    return found


def _public(version: str) -> str:
    return version.split("+", 1)[0]  # 2.13.0+cpu is torch 2.13.0


def compare(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    """``(changed, added)``: Colab's packages pip upgraded, downgraded or removed, and new ones."""
    changed = [f"{name} {version} -> {after.get(name, 'removed')}" for name, version in sorted(before.items())
               if after.get(name) != version]
    added = [f"{name} {version}" for name, version in sorted(after.items()) if name not in before]
    return changed, added


def snapshot() -> int:
    have = installed()
    wrong = [f"{name}=={version} (installed: {have.get(name, 'missing')})" for name, version in pins().items()
             if _public(have.get(name, "")) != version]
    if wrong:
        print("the twin does not hold Colab's versions:\n  " + "\n  ".join(wrong), file=sys.stderr)
        return 1
    RECORD.write_text(json.dumps(have, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"Colab twin: {len(pins())} pinned packages at Colab's versions, {len(have)} installed; recorded in {RECORD}")
    return 0


def _restore(colab: dict[str, str]) -> None:
    """Uninstall what an earlier run added; refuse to go on if one of Colab's packages changed."""
    changed, added = compare(colab, installed())
    if changed:
        raise SystemExit("the twin no longer holds Colab's versions (" + "; ".join(changed) + "): "
                         "delete .venv-colab and run make test-colab again")
    if added:
        names = [entry.split()[0] for entry in added]
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", *names], check=True)


def install() -> int:
    if not RECORD.is_file():
        print(f"{RECORD} is missing: build the twin with make test-colab", file=sys.stderr)
        return 1
    colab = json.loads(RECORD.read_text(encoding="utf-8"))
    _restore(colab)
    first = setup_cell.toc_notebooks(ROOT)[0]
    cells = setup_cell.nbformat.read(first, as_version=4).cells
    source = setup_cell.local_source(next(c for c in cells if c.cell_type == "code").source)
    with tempfile.TemporaryDirectory() as stub:
        (Path(stub) / "google" / "colab").mkdir(parents=True)
        (Path(stub) / "google" / "__init__.py").write_text("")
        (Path(stub) / "google" / "colab" / "__init__.py").write_text("")
        env = dict(os.environ, PYTHONPATH=stub)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", "import google.colab\n" + source], env=env, cwd=stub,
                              capture_output=True, text=True)
    print(f"setup cell of {first.name}, run as in Colab against {ROOT}: exit {done.returncode} "
          f"in {time.perf_counter() - start:.0f} s")
    if done.returncode != 0 or done.stdout.strip():
        print(done.stdout + done.stderr, file=sys.stderr)
        return 1
    changed, added = compare(colab, installed())
    print("pip added: " + (", ".join(added) or "nothing"))
    if changed:
        print("FAIL: installing the companion package changed Colab's preinstalled packages:\n  " + "\n  ".join(changed)
              + "\nWiden the ranges in pyproject.toml so that Colab's versions satisfy them.", file=sys.stderr)
        return 1
    print(f"pip upgraded, downgraded or removed none of the {len(colab)} packages of the twin")
    probe = "import companion; print(companion.__version__); print(companion.__file__)"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           cwd=tempfile.gettempdir()).stdout.split()
    if found[0] != setup_cell.package_version(ROOT) or "site-packages" not in found[1]:
        print(f"FAIL: import companion outside the clone found {found}", file=sys.stderr)
        return 1
    print(f"import companion outside the clone: version {found[0]} from {found[1]}")
    return 0


def _python313() -> str | None:
    """A Python 3.13 interpreter that runs, or None."""
    candidates = ["python3.13", *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")))]
    for candidate in candidates:
        try:
            done = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    return None


def resolve() -> int:
    python = _python313()
    colab = pins()
    colab["torch"] = COLAB_TORCH
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "colab-3.13.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in colab.items()))
        report = Path(tmp) / "report.json"
        options = ["install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
                   "--report", str(report), "-c", str(constraints), str(ROOT)]
        if python:
            command = [python, "-m", "pip", *options]
        else:  # pip evaluates markers for this Python then, but checks wheels and Requires-Python for 3.13
            command = [sys.executable, "-m", "pip", *options[:1], "--python-version", "3.13", *options[1:]]
        # Colab's pip reads PyPI; an extra index (CI's CPU-torch index) could serve a whole torch
        # wheel where PyPI serves only its metadata (PEP 658) to a dry run.
        env = {key: value for key, value in os.environ.items() if key != "PIP_EXTRA_INDEX_URL"}
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp, env=env)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            lines = (done.stdout + done.stderr).splitlines()[-25:]
            errors = [line for line in lines if "is ignored: it is neither" not in line]
            print("FAIL: the package does not resolve for Python 3.13 with Colab's versions:\n" + "\n".join(errors),
                  file=sys.stderr)
            return 1
        chosen = {_key(item["metadata"]["name"]): item["metadata"]["version"]
                  for item in json.loads(report.read_text())["install"]}
    off = [f"{name} {chosen[name]} (Colab: {version})" for name, version in colab.items()
           if name in chosen and _public(chosen[name]) != version]
    if off:
        print("FAIL: resolved versions other than Colab's: " + ", ".join(off), file=sys.stderr)
        return 1
    print(f"Python 3.13 ({python or 'pip --python-version 3.13'}): resolved {len(chosen)} packages in {seconds:.0f} s "
          f"(metadata only), all of Colab's at its versions: torch {chosen.get('torch')}, transformers "
          f"{chosen.get('transformers')}, datasets {chosen.get('datasets')}, ipywidgets {chosen.get('ipywidgets')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["snapshot", "install", "resolve"])
    step = parser.parse_args(argv).step
    return {"snapshot": snapshot, "install": install, "resolve": resolve}[step]()


if __name__ == "__main__":
    sys.exit(main())
