"""The Chinese edition is complete: every message of every page translated, none fuzzy, none stale.

The catalogs are ``locales/zh_CN/LC_MESSAGES/<page>.po`` (``make catalogs`` writes them from
the sources; ``tools/i18n.py`` explains the pipeline). An English edit that changes a message
fails here until ``make catalogs`` has been run and the new or fuzzy entries translated:
the test extracts the messages from the sources again (Sphinx's gettext builder, once per
session, about 15 s here) and compares them with the committed catalogs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from companion.book import book_root

ROOT = book_root()


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


i18n = _load("book_tools_i18n", ROOT / "tools" / "i18n.py")
book_i18n = _load("book_i18n_ext", ROOT / "_ext" / "book_i18n.py")
CATALOGS = i18n.catalog_files()


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    """The .pot templates extracted from the sources as they are now."""
    outdir = tmp_path_factory.mktemp("i18n") / "gettext"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "i18n.py"), "extract", str(outdir)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"the gettext build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    print(f"gettext build: {time.perf_counter() - start:.1f} s")
    return i18n.catalog_files(outdir, ".pot")


def test_every_page_has_a_catalog() -> None:
    from companion.book import toc_files

    missing = [f"{name}.po" for name in toc_files(ROOT) if name not in CATALOGS]
    assert not missing, f"pages of _toc.yml without a catalog in {relative(i18n.CATALOGS)}: {missing} (make catalogs)"


def test_catalogs_match_the_sources(templates: dict[str, Path]) -> None:
    """The committed catalogs hold exactly the messages the sources have now."""
    problems = []
    for name in sorted(set(templates) | set(CATALOGS)):
        po = i18n.CATALOGS / f"{name}.po"
        if name not in CATALOGS:
            problems.append(f"{relative(po)}: missing; the page {name} has messages")
            continue
        if name not in templates:
            problems.append(f"{relative(po)}: the page {name} is gone or has no messages")
            continue
        now, committed = i18n.msgids(templates[name]), i18n.msgids(CATALOGS[name])
        problems += [f"{relative(po)}: not in the catalog yet: {msgid[:100]!r}" for msgid in sorted(now - committed)]
        problems += [f"{relative(po)}: no longer in the source: {msgid[:100]!r}" for msgid in sorted(committed - now)]
    assert not problems, ("the catalogs are out of date with the sources; run `make catalogs`, translate the new and "
                          "fuzzy entries, and commit the .po files:\n" + "\n".join(problems))


@pytest.mark.parametrize("page", sorted(CATALOGS))
def test_catalog_is_complete(page: str) -> None:
    """Every message translated, none fuzzy, and every translation keeps its msgid's markup."""
    problems = i18n.catalog_problems(CATALOGS[page])
    assert not problems, f"{relative(CATALOGS[page])}: {len(problems)} problems:\n" + "\n".join(problems)


# The markup check itself, on made-up messages.

@pytest.mark.parametrize(("msgid", "msgstr", "expected"), [
    ("{glue:text}`acc:.3f` on the {term}`test set`", "在{term}`测试集 <test set>`上为 {glue:text}`acc:.3f`", []),
    ("{glue:text}`acc:.3f` on the {term}`test set`", "在{term}`测试集`上为 {glue:text}`acc:.3f`",
     ["lost {term}test set", "added {term}测试集"]),
    ("{glue:text}`acc` and {glue:text}`f1`", "{glue:text}`acc`", ["lost {glue:text}f1"]),
    ("see [the walkthrough](walkthrough.ipynb)", "见[微调实战](walkthrough.ipynb)", []),
    ("see [the walkthrough](walkthrough.ipynb)", "见[微调实战](speed.ipynb)",
     ["lost (walkthrough.ipynb)", "added (speed.ipynb)"]),
    ("at $d = 4$ the cost", "在 $d=4$ 时", ["lost $d = 4$", "added $d=4$"]),
    ("`lr * weight_decay * w` costs $5", "`lr * weight_decay * w` 需要 5 美元", []),
    ("calls ``f(`x`)`` first", "先调用 ``f(`x`)``", []),
    ("the {ref}`API reference <api>`", "{ref}`API 参考 <api>`", []),
    ("{cite}`vaswani2017attention` says", "{cite}`vaswani2017attention` 指出", []),
    ("{cite}`vaswani2017attention` says", "文献指出", ["lost {cite}vaswani2017attention"]),
    ("the `Trainer` class", "`Trainer` 类", []),
    ("the `Trainer` class", "训练器类", ["lost `Trainer`"]),
])
def test_markup_problems(msgid: str, msgstr: str, expected: list[str]) -> None:
    assert i18n.markup_problems(msgid, msgstr) == expected


def test_markup_tokens_rejects_non_text() -> None:
    with pytest.raises(TypeError, match="text must be a str"):
        i18n.markup_tokens(None)


def test_catalog_problems_name_untranslated_fuzzy_and_broken(tmp_path: Path) -> None:
    po = tmp_path / "page.po"
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                  'msgid "Hint"\nmsgstr "提示"\n\n'
                  'msgid "Answer"\nmsgstr ""\n\n'
                  '#, fuzzy\nmsgid "The data"\nmsgstr "数据"\n\n'
                  'msgid "at $d$"\nmsgstr "在 d 处"\n', encoding="utf-8")
    problems = i18n.catalog_problems(po)
    assert len(problems) == 3, problems
    assert problems[0] == "untranslated: 'Answer'"
    assert problems[1].startswith("fuzzy") and "'The data'" in problems[1]
    assert problems[2] == "lost $d$ in the translation of 'at $d$'"


@pytest.mark.parametrize(("page", "chinese", "url"), [
    ("book/walkthrough", False, "../zh/book/walkthrough.html"),
    ("book/walkthrough", True, "../../book/walkthrough.html"),
    ("genindex", False, "zh/genindex.html"),
    ("genindex", True, "../genindex.html"),
])
def test_language_switch_points_to_the_same_page(page: str, chinese: bool, url: str) -> None:
    assert book_i18n.other_edition(page, chinese)["url"] == url
