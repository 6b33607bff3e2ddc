"""The Chinese edition: message catalogs from the book's sources, the Chinese build, checks.

    .venv/bin/python tools/i18n.py catalogs            # make catalogs: extract, update locales/zh_CN
    .venv/bin/python tools/i18n.py build               # make book (after the English build): _build/html/zh
    .venv/bin/python tools/i18n.py check [PO ...]      # one catalog (or all): syntax, untranslated, fuzzy, markup
    .venv/bin/python tools/i18n.py check --build PO    # the same, then the Chinese build (warnings are errors)
    .venv/bin/python tools/i18n.py extract DIR         # the .pot templates only, into DIR

One source, two languages: the English pages are the sources (``book/*.ipynb`` and
``book/*.md``), and the Chinese edition is the same sources built with Sphinx's
internationalisation, each translatable paragraph, title, caption, admonition and dropdown
replaced by its translation from ``locales/zh_CN/LC_MESSAGES/<page>.po`` (one catalog per
page, e.g. ``book/walkthrough.po``). Code cells, outputs and figures are not extracted, so
both editions show the same stored outputs. Nothing is executed: ``_config.yml`` has
``execute_notebooks: "off"``.

Both Sphinx builds go through Jupyter Book's own ``build_sphinx`` with the configuration
``jupyter-book build .`` computes from ``_config.yml`` and ``_toc.yml``, plus overrides: the
``gettext`` builder for the catalogs, ``language = "zh_CN"`` for the Chinese edition. The
Chinese edition builds into ``_build/zh/html`` (its doctrees and myst-nb's files beside it,
so that it never writes into the English site), then is copied to ``_build/html/zh``.

A translated message is re-parsed as MyST, so it must keep its msgid's markup:
:func:`markup_tokens` lists what must survive translation (role targets, glue keys,
citations, inline math, link targets, inline code) and :func:`markup_problems` compares a
msgid with its msgstr. ``tests/test_translations.py`` uses the same functions.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANGUAGE = "zh_CN"
LOCALES = ROOT / "locales"
CATALOGS = LOCALES / LANGUAGE / "LC_MESSAGES"
BUILD = ROOT / "_build"
ZH_BUILD = BUILD / "zh"  # _build/zh/html, _build/zh/.doctrees, _build/zh/jupyter_execute
ZH_SITE = BUILD / "html" / "zh"  # where the Chinese edition is published, inside the English site
POT_BUILD = BUILD / "i18n"  # _build/i18n/gettext (the .pot templates), its doctrees beside it
TITLE = "Transformers 实战"  # the site title (html_title) of the Chinese edition, as book/intro.po has it

# {role}`content`: the content's target is what follows "<" when it ends with ">" (e.g.
# {term}`注意力掩码 <attention mask>`), otherwise the whole content.
ROLE = re.compile(r"\{([A-Za-z][\w:.+-]*)\}(`+)(.+?)\2", re.S)
CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
MATH = re.compile(r"(?<![\\$])\$(?![\s$])(.+?)(?<![\s\\])\$(?![\d$])", re.S)
LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
# Roles whose content is prose the translator may change.
PROSE_ROLES = {"sub", "sup", "abbr", "emphasis", "strong", "kbd"}


def role_target(content: str) -> str:
    """The part of a role's content that a translation must keep.

    >>> role_target("attention masks <attention mask>")
    'attention mask'
    >>> role_target("dynamic padding")
    'dynamic padding'
    """
    match = re.fullmatch(r"(.*?)\s*<([^<>]+)>", content.strip(), re.S)
    return (match.group(2) if match else content).strip()


def markup_tokens(text: str) -> Counter[str]:
    """The markup of a message that its translation must keep, as a multiset of tokens.

    Roles count by name and target (the display text of ``{term}`text <target>``` may be
    translated; ``{glue:text}`key```, ``{cite}`key``` and ``{ref}`label``` are kept whole),
    inline math and inline code by their exact text, links by their target.

    >>> sorted(markup_tokens("a {term}`tokens <token>` of {glue:text}`n:.2f` at $d = 4$, [x](a.ipynb)"))
    ['$d = 4$', '(a.ipynb)', '{glue:text}n:.2f', '{term}token']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    tokens: Counter[str] = Counter()

    def role(match: re.Match) -> str:
        name, content = match.group(1), match.group(3)
        if name not in PROSE_ROLES:
            tokens[f"{{{name}}}{role_target(content)}"] += 1
        return " "

    rest = ROLE.sub(role, text)

    def code(match: re.Match) -> str:
        tokens[f"`{match.group(2).strip()}`"] += 1
        return " "

    rest = CODE.sub(code, rest)
    for pattern, shape in ((DISPLAY_MATH, "$${}$$"), (MATH, "${}$")):
        def math(match: re.Match, shape: str = shape) -> str:
            tokens[shape.format(match.group(1).strip())] += 1
            return " "

        rest = pattern.sub(math, rest)
    tokens.update(f"({target})" for target in LINK.findall(rest))
    tokens.update(f"<{target}>" for target in AUTOLINK.findall(rest))
    return tokens


def markup_problems(msgid: str, msgstr: str) -> list[str]:
    """What the translation ``msgstr`` lost or added of ``msgid``'s markup (empty: none).

    >>> markup_problems("{glue:text}`acc` on the {term}`test set`", "{term}`测试集 <test set>`上为 {glue:text}`acc`")
    []
    >>> markup_problems("at $d = 4$", "在 d = 4 时")
    ['lost $d = 4$']
    """
    source, translation = markup_tokens(msgid), markup_tokens(msgstr)
    lost = sorted((source - translation).elements())
    added = sorted((translation - source).elements())
    return [f"lost {token}" for token in lost] + [f"added {token}" for token in added]


def catalog_files(folder: Path = CATALOGS, suffix: str = ".po") -> dict[str, Path]:
    """The catalogs under ``folder`` by document name (``book/walkthrough``)."""
    return {path.relative_to(folder).with_suffix("").as_posix(): path
            for path in sorted(folder.rglob(f"*{suffix}"))}


def msgids(path: Path) -> set[str]:
    """The messages of one catalog or template (without the header and obsolete entries)."""
    import polib

    return {entry.msgid for entry in polib.pofile(str(path)) if entry.msgid and not entry.obsolete}


def catalog_problems(path: Path) -> list[str]:
    """Untranslated and fuzzy messages of one ``.po`` and translations that break the markup."""
    import polib

    try:
        catalog = polib.pofile(str(path))
    except (OSError, ValueError) as error:
        return [f"cannot be read: {error}"]
    problems = []
    for entry in catalog:
        if not entry.msgid or entry.obsolete:
            continue
        short = entry.msgid if len(entry.msgid) <= 90 else entry.msgid[:87] + "..."
        if "fuzzy" in entry.flags:
            problems.append(f"fuzzy (check the translation against the new English, then drop the flag): {short!r}")
        elif not entry.msgstr.strip():
            problems.append(f"untranslated: {short!r}")
        else:
            problems += [f"{problem} in the translation of {short!r}"
                         for problem in markup_problems(entry.msgid, entry.msgstr)]
    return problems


def sphinx_build(builder: str, outdir: Path, overrides: dict | None = None, quiet: bool = True,
                 strict: bool = True) -> None:
    """One Sphinx build of the book as ``jupyter-book build .`` configures it (``strict``: warnings are errors)."""
    from jupyter_book.sphinx import build_sphinx

    confoverrides = {"external_toc_path": str(ROOT / "_toc.yml"), "latex_individualpages": False,
                     **(overrides or {})}
    result = build_sphinx(ROOT, outdir, noconfig=True, path_config=str(ROOT / "_config.yml"),
                          confoverrides=confoverrides, doctreedir=outdir.parent / f".doctrees-{builder}",
                          builder=builder, warningiserror=strict, keep_going=True, quiet=quiet)
    if result:
        raise SystemExit(f"error: the {builder} build of the book failed ({result!r}); see the messages above")


def extract(outdir: Path) -> dict[str, Path]:
    """Write the ``.pot`` templates of every page into ``outdir`` (the ``gettext`` builder).

    Warnings are printed but do not stop it: they are ``make book``'s to fail on, and a chapter
    being written still gets its catalog.
    """
    sphinx_build("gettext", outdir, strict=False)
    return catalog_files(outdir, ".pot")


def update_catalogs() -> None:
    """``make catalogs``: extract, then bring ``locales/zh_CN`` up to date with the sources.

    New messages arrive untranslated, changed ones keep the old translation marked fuzzy,
    removed ones (and the catalogs of pages no longer in the book) are deleted.
    """
    from sphinx_intl.basic import update

    start = time.perf_counter()
    templates = extract(POT_BUILD / "gettext")
    print(f"extracted {len(templates)} templates in {time.perf_counter() - start:.1f} s")
    update(str(LOCALES), str(POT_BUILD / "gettext"), (LANGUAGE,), ignore_obsolete=True, jobs=1)
    for name, path in catalog_files().items():
        if name not in templates:
            path.unlink()
            print(f"Removed: {path.relative_to(ROOT)} (no such page any more)")
        else:
            drop_format_flags(path)
    print(summary())


FORMAT_FLAGS = ("python-format", "python-brace-format")


def drop_format_flags(path: Path) -> None:
    """Remove the ``python-format`` flags Babel guesses from a ``%`` in the prose.

    A page's messages are prose, never format strings; with the flag, ``msgfmt --check``
    demands that "15% of" keep a ``%`` conversion in the Chinese.
    """
    import polib

    catalog = polib.pofile(str(path), wrapwidth=0)
    for entry in catalog:
        entry.flags = [flag for flag in entry.flags if flag not in FORMAT_FLAGS]
    catalog.save(str(path))  # always, so that every catalog is written the same way (no wrapping)


def summary() -> str:
    """One line per catalog: messages, translated, fuzzy, bytes."""
    import polib

    lines = [f"{'catalog':53} {'messages':>8} {'done':>6} {'fuzzy':>6} {'KiB':>6}"]
    for path in catalog_files().values():
        catalog = [e for e in polib.pofile(str(path)) if e.msgid and not e.obsolete]
        fuzzy = sum("fuzzy" in e.flags for e in catalog)
        done = sum(bool(e.msgstr.strip()) and "fuzzy" not in e.flags for e in catalog)
        lines.append(f"{path.relative_to(ROOT).as_posix():53} {len(catalog):8} {done:6} {fuzzy:6} "
                     f"{path.stat().st_size / 1024:6.1f}")
    return "\n".join(lines)


def build_chinese() -> None:
    """Build the Chinese edition into ``_build/zh/html`` and publish it as ``_build/html/zh``."""
    start = time.perf_counter()
    sphinx_build("html", ZH_BUILD / "html", {"language": LANGUAGE, "html_title": TITLE}, quiet=True)
    if ZH_SITE.exists():
        shutil.rmtree(ZH_SITE)
    shutil.copytree(ZH_BUILD / "html", ZH_SITE)
    print(f"Chinese edition built in {time.perf_counter() - start:.1f} s: {ZH_SITE.relative_to(ROOT)}/index.html")


def check(paths: list[Path], build: bool) -> int:
    """Check catalogs (all of them when none is named); with ``build``, build the Chinese edition."""
    paths = paths or list(catalog_files().values())
    failed = 0
    for path in paths:
        path = path.resolve()
        problems = catalog_problems(path)
        if shutil.which("msgfmt"):  # GNU gettext's own syntax check, where it is installed
            done = subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(path)], capture_output=True, text=True)
            problems += [f"msgfmt: {line}" for line in done.stderr.splitlines() if done.returncode]
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{name}: {'ok' if not problems else f'{len(problems)} problems'}")
        for problem in problems:
            print(f"  {problem}")
        failed += bool(problems)
    if build:
        build_chinese()
        for path in paths:
            if path.is_relative_to(CATALOGS):
                page = path.relative_to(CATALOGS).with_suffix(".html")
                print(f"  see {(ZH_SITE / page).relative_to(ROOT)}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("catalogs", help="extract the messages and update locales/zh_CN (make catalogs)")
    commands.add_parser("build", help="build the Chinese edition into _build/html/zh")
    checking = commands.add_parser("check", help="check catalogs: untranslated, fuzzy, broken markup")
    checking.add_argument("po", nargs="*", type=Path, help="catalogs to check (default: all)")
    checking.add_argument("--build", action="store_true", help="then build the Chinese edition (-W)")
    extracting = commands.add_parser("extract", help="write the .pot templates into a folder")
    extracting.add_argument("outdir", type=Path)
    commands.add_parser("summary", help="messages, translated, fuzzy and size of each catalog")
    args = parser.parse_args(argv)
    if args.command == "catalogs":
        update_catalogs()
    elif args.command == "build":
        build_chinese()
    elif args.command == "check":
        return check(args.po, args.build)
    elif args.command == "extract":
        outdir = args.outdir.resolve()
        outdir.parent.mkdir(parents=True, exist_ok=True)
        print(f"{len(extract(outdir))} templates in {outdir}")
    elif args.command == "summary":
        print(summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
