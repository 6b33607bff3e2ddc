"""The built book in a real browser: every page renders, links hold, Colab links, page weight.

Run with ``make check-site`` after ``make book``. Each page of ``_toc.yml`` is loaded once in
headless Chromium (see conftest.py), in both editions: English (``_build/html/<page>``) and
Chinese (``_build/html/zh/<page>``); the per-page tests read what that visit recorded. The
Chinese pages must also show Chinese text drawn with a real CJK font (not boxes), and every
page must link to the same page in the other language.
"""

from __future__ import annotations

import functools
import posixpath
import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import cdn
import pytest

from companion.book import book_root, repository_url, toc_files

ROOT = book_root()
ZH = "zh/"  # the Chinese edition, inside the English site (tools/i18n.py)
ENGLISH = [f"{name}.html" for name in toc_files(ROOT)]
CHINESE = [ZH + page for page in ENGLISH]
PAGES = ENGLISH + CHINESE
CHAPTERS = [f"{name}.html" for name in toc_files(ROOT) if (ROOT / f"{name}.ipynb").is_file()]
CHAPTERS += [ZH + page for page in CHAPTERS]
MIN_CJK = 20  # Chinese characters in the article of a Chinese page, at least (the bibliography has 26)
SCREENSHOTS = ROOT / "_build" / "screenshots"
MIN_TEXT = 200  # characters of visible text below which a page counts as blank
MAX_PAGE_BYTES = 3_000_000  # one page: its HTML plus its images
MAX_SITE_BYTES = 40_000_000  # everything under _build/html
# Console errors tolerated, each for a stated reason; anything else fails.
IGNORED_CONSOLE = {
    "favicon.ico": "the book has no favicon; a 404 for it is harmless",
    "Identifier 'THEBE_JS_URL' has already been declared": (
        "jupyter-book 1.0.4 writes sphinx-thebe's inline config script twice on every page; thebe is "
        "not enabled in this book, so nothing reads it"),
}

IMAGES_JS = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach(img => { img.loading = 'eager'; });
Promise.all(images.map(img => img.decode().catch(() => null))).then(() =>
  done(images.map(img => [img.getAttribute('src'), img.naturalWidth])));
"""
MATHJAX_JS = """
const done = arguments[arguments.length - 1];
const start = Date.now();
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done('typeset'), err => done('MathJax failed: ' + err));
  } else if (Date.now() - start > 20000) {
    done('MathJax never loaded');
  } else {
    setTimeout(poll, 100);
  }
})();
"""
PAGE_JS = """
const h1 = document.querySelector('main h1, article h1, h1');
const main = document.querySelector('main') || document.body;
const prose = 'p, li, h1, h2, h3, h4, dt, dd, figcaption, summary, th, td, .admonition-title';
return {
  h1: h1 ? h1.textContent.replace(/[#¶]\\s*$/, '').trim() : '',
  text: main.innerText,
  article: (document.querySelector('article') || main).innerText,
  prose: Array.from(main.querySelectorAll(prose)).filter(e => !e.closest('pre, .cell_output, .output'))
    .map(e => e.textContent).join('\\n'),
  lang: document.documentElement.lang,
  math: document.querySelectorAll('.math').length,
  mjx: document.querySelectorAll('mjx-container').length,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => [a.getAttribute('href'), a.href]),
  switches: Array.from(document.querySelectorAll('a.book-language-switch')).map(a => a.href),
  captions: Array.from(document.querySelectorAll('.caption-text')).map(e => e.textContent.trim()),
};
"""
# Draws a few common Chinese characters in the font of the page's prose. With no CJK font
# the browser draws the same empty box ("tofu") for each; with one, four different glyphs.
GLYPHS_JS = """
const style = getComputedStyle(document.querySelector('main p') || document.body);
const draw = ch => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 48;
  const context = canvas.getContext('2d');
  context.font = `32px ${style.fontFamily}`;
  context.textBaseline = 'top';
  context.fillText(ch, 4, 4);
  return Array.from(context.getImageData(0, 0, 48, 48).data.filter((v, i) => i % 4 === 3)).join(',');
};
const bitmaps = ['的', '模', '型', '练'].map(draw);
return {family: style.fontFamily, distinct: new Set(bitmaps).size,
        blank: bitmaps.filter(b => !/[1-9]/.test(b)).length};
"""
# Role syntax that should have been parsed: a translation that broke its markup shows it raw.
RAW_MARKUP = re.compile(r"\{(?:glue(?::\w+)?|term|ref|doc|numref|cite(?::\w+)?|py:\w+|eq|math)\}`")


def built(site: Path) -> list[str]:
    """The pages of _toc.yml, in both editions, that exist in the build (a missing one fails test_page_renders)."""
    return [page for page in PAGES if (site / page).is_file()]


def counterpart(page: str) -> str:
    """The same page in the other edition."""
    return page.removeprefix(ZH) if page.startswith(ZH) else ZH + page


@functools.cache
def visit(driver, base_url: str, page: str) -> dict:
    """Load one page once and record everything the tests look at."""
    url = urljoin(base_url, page)
    try:
        with urllib.request.urlopen(url) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        pytest.fail(f"{page}: HTTP {error.code} (listed in _toc.yml but not in the built site?)", pytrace=False)
    driver.get(url)
    record = {"status": status, "title": driver.title}
    record.update(driver.execute_script(PAGE_JS))
    record["mathjax"] = driver.execute_async_script(MATHJAX_JS) if record["math"] else "no math"
    record.update(driver.execute_script(PAGE_JS))  # again, after typesetting
    record["images"] = driver.execute_async_script(IMAGES_JS)
    record["glyphs"] = driver.execute_script(GLYPHS_JS) if page.startswith(ZH) else None
    record["console"] = [entry["message"] for entry in driver.get_log("browser")
                         if entry["level"] == "SEVERE" and not any(s in entry["message"] for s in IGNORED_CONSOLE)]
    return record


@pytest.fixture
def load(driver, base_url):
    return functools.partial(visit, driver, base_url)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(load, page: str) -> None:
    record = load(page)
    assert record["status"] == 200, f"{page}: HTTP {record['status']}"
    assert record["h1"], f"{page}: no <h1> title"
    assert record["h1"] in record["title"], f"{page}: <title> {record['title']!r} lacks the heading {record['h1']!r}"
    assert len(record["text"].strip()) > MIN_TEXT, f"{page}: only {len(record['text'].strip())} characters visible"
    lang = "zh-CN" if page.startswith(ZH) else "en"
    assert record["lang"] == lang, f"{page}: <html lang={record['lang']!r}>, expected {lang!r}"


@pytest.mark.parametrize("page", CHINESE)
def test_chinese_text_is_visible(load, page: str) -> None:
    """The Chinese page is in Chinese, drawn with a CJK font rather than boxes."""
    record = load(page)
    catalog = f"locales/zh_CN/LC_MESSAGES/{page.removeprefix(ZH).removesuffix('.html')}.po"
    cjk = len(re.findall(r"[\u3400-\u9fff]", record["article"]))
    assert re.search(r"[\u3400-\u9fff]", record["h1"]), f"{page}: title {record['h1']!r} not in Chinese ({catalog})"
    assert cjk >= MIN_CJK, f"{page}: {cjk} Chinese characters in the article (at least {MIN_CJK}): translate {catalog}"
    english = [caption for caption in record["captions"] if not re.search(r"[\u3400-\u9fff]", caption)]
    assert record["captions"] and not english, (
        f"{page}: sidebar parts not in Chinese: {english} (translated in book/intro.po)")
    glyphs = record["glyphs"]
    assert glyphs["blank"] == 0 and glyphs["distinct"] == 4, (
        f"{page}: Chinese characters draw as {glyphs['distinct']} distinct shapes ({glyphs['blank']} blank) in "
        f"{glyphs['family']}: no CJK font (make browser installs Debian's fonts-noto-cjk)")


@pytest.mark.parametrize("page", PAGES)
def test_language_switch_goes_to_the_same_page(load, base_url: str, page: str) -> None:
    switches = load(page)["switches"]
    expected = urljoin(base_url, counterpart(page))
    assert switches == [expected], f"{page}: language links {switches}, expected [{expected!r}]"


def test_chinese_landing_page_redirects(site: Path) -> None:
    index = site / ZH / "index.html"
    assert index.is_file(), f"{index} is missing: make book builds the Chinese edition (tools/i18n.py build)"
    assert "book/intro.html" in index.read_text(encoding="utf-8"), f"{index} does not lead to book/intro.html"


@pytest.mark.parametrize("page", PAGES)
def test_no_raw_markup(load, page: str) -> None:
    """No role left unparsed in the prose (what a translation that broke its markup would show)."""
    raw = sorted(set(RAW_MARKUP.findall(load(page)["prose"])))
    assert not raw, f"{page}: unparsed MyST roles in the text: {raw}"


@pytest.mark.parametrize("page", PAGES)
def test_images_load(load, page: str) -> None:
    broken = [src for src, width in load(page)["images"] if not width]
    assert not broken, f"{page}: images that did not load: {broken}"


def diagram_cells(page: str) -> list:
    """The code cells of a chapter that draw a :mod:`companion.diagrams` diagram."""
    import re

    import nbformat

    notebook = ROOT / page.removeprefix(ZH).replace(".html", ".ipynb")
    if not notebook.is_file():
        return []
    call = re.compile(r"\b\w+_diagram\(")
    return [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code" and call.search(c.source)]


@pytest.mark.parametrize("page", [p for p in CHAPTERS if diagram_cells(p)] or ["(no diagrams yet)"])
def test_diagrams_render(load, page: str) -> None:
    """Each diagram a chapter draws is stored as a PNG and shows on its page at a readable size."""
    if page == "(no diagrams yet)":
        pytest.skip("no chapter draws a companion.diagrams diagram")
    cells = diagram_cells(page)
    unstored = [c.source.splitlines()[0] for c in cells
                if not any("image/png" in output.get("data", {}) for output in c.outputs)]
    assert not unstored, f"{page}: diagram cells without a stored image: {unstored}"
    wide = [src for src, width in load(page)["images"] if width >= 400]
    assert len(wide) >= len(cells), f"{page}: {len(cells)} diagrams drawn, only {len(wide)} images 400 px wide shown"


@pytest.mark.parametrize("page", PAGES)
def test_no_console_errors(load, page: str) -> None:
    errors = load(page)["console"]
    assert not errors, f"{page}: JavaScript console errors:\n" + "\n".join(errors)


@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset(load, page: str) -> None:
    record = load(page)
    if not record["math"]:
        return  # nothing to typeset on this page
    assert record["mathjax"] == "typeset", f"{page}: {record['mathjax']}"
    assert record["mjx"] >= record["math"], f"{page}: {record['math']} formulas but {record['mjx']} typeset"
    raw = [marker for marker in ("$$", "\\(", "\\[", "\\begin{") if marker in record["text"]]
    assert not raw, f"{page}: raw TeX left in the visible text: {raw}"


class Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)


@functools.cache
def ids_of(path: Path) -> frozenset[str]:
    parser = Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def test_internal_links_and_anchors_resolve(site: Path, load, base_url: str) -> None:
    broken = []
    for page in built(site):
        for href, absolute in load(page)["links"]:
            if not absolute.startswith(base_url) or href.startswith(("javascript:", "mailto:")):
                continue  # external links are not followed (no network in CI)
            parts = urlsplit(absolute)
            target = site / unquote(posixpath.normpath(parts.path.lstrip("/")) if parts.path.strip("/") else "")
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page}: {href} -> missing file {target.relative_to(site)}")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in ids_of(target):
                broken.append(f"{page}: {href} -> no id {parts.fragment!r} in {target.relative_to(site)}")
    broken = sorted(set(broken))
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken)


def test_citations_point_into_the_bibliography(site: Path, load, base_url: str) -> None:
    """Every citation of a chapter is a link to an entry of its edition's bibliography page."""
    bibliography = next(p for p in ENGLISH if p.endswith("bibliography.html"))
    found, broken = 0, []
    for page in built(site):
        own = urljoin(base_url, (ZH if page.startswith(ZH) else "") + bibliography)
        for href, absolute in load(page)["links"]:
            path, _, fragment = absolute.partition("#")
            if posixpath.basename(path) == "bibliography.html" and fragment.startswith("id"):
                found += 1
                if path != own or fragment not in ids_of(site / urlsplit(own).path.lstrip("/")):
                    broken.append(f"{page}: {href}")
    assert found, "no citation links found at all"
    assert not broken, "citations pointing nowhere:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", CHAPTERS)
def test_colab_button_opens_this_notebook(load, page: str) -> None:
    owner_repo = urlsplit(repository_url(ROOT)).path.strip("/")
    notebook = page.removeprefix(ZH).removesuffix(".html")  # both editions open the one notebook
    expected = f"https://colab.research.google.com/github/{owner_repo}/blob/main/{notebook}.ipynb"
    colab = [absolute for _, absolute in load(page)["links"] if absolute.startswith("https://colab.research.google.com")]
    assert colab == [expected], f"{page}: Colab links {colab}, expected [{expected!r}]"


def test_no_remote_scripts_beyond_the_known_cdns(site: Path, load) -> None:
    """A remote script or stylesheet that site_tests/cdn.py does not know would break offline reading."""

    class Remote(HTMLParser):
        found: set[str] = set()

        def handle_starttag(self, tag, attrs) -> None:
            value = dict(attrs).get("src" if tag == "script" else "href", "") or ""
            if (tag == "script" or (tag == "link" and dict(attrs).get("rel") == "stylesheet")) and "://" in value:
                self.found.add(value)

    parser = Remote()
    for page in built(site):
        parser.feed((site / page).read_text(encoding="utf-8"))
    unknown = sorted(url for url in parser.found if cdn.local_file(url) is None)
    assert not unknown, f"pages load resources from unknown hosts: {unknown}"


def test_page_weight(site: Path, capsys) -> None:
    weights = {}
    for page in built(site):
        html = site / page
        images = {(html.parent / src).resolve() for src, _ in ImageSources.of(html)}
        weights[page] = html.stat().st_size + sum(p.stat().st_size for p in images if p.is_file())
    # Each edition on its own: a reader downloads one of them.
    files = [p for p in site.rglob("*") if p.is_file()]
    chinese = sum(p.stat().st_size for p in files if p.is_relative_to(site / ZH))
    english = sum(p.stat().st_size for p in files) - chinese
    largest = max(weights, key=weights.get)
    with capsys.disabled():
        print(f"\nsite weight: English {english / 1e6:.1f} MB (_build/html), Chinese {chinese / 1e6:.1f} MB "
              f"(_build/html/zh); largest page {largest} {weights[largest] / 1e6:.2f} MB with its images")
        for page, size in sorted(weights.items(), key=lambda item: -item[1]):
            print(f"  {size / 1e6:6.2f} MB  {page}")
    assert weights[largest] <= MAX_PAGE_BYTES, f"{largest} weighs {weights[largest]:,} bytes (limit {MAX_PAGE_BYTES:,})"
    for edition, total in (("English", english), ("Chinese", chinese)):
        assert total <= MAX_SITE_BYTES, f"the {edition} site weighs {total:,} bytes (limit {MAX_SITE_BYTES:,})"


class ImageSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs) -> None:
        src = dict(attrs).get("src") or ""
        if tag == "img" and "://" not in src and not src.startswith("data:"):
            self.sources.append((unquote(src), tag))

    @classmethod
    def of(cls, path: Path) -> list[tuple[str, str]]:
        parser = cls()
        parser.feed(path.read_text(encoding="utf-8"))
        return parser.sources


def test_screenshots(driver, base_url: str) -> None:
    """The landing page and one chapter, kept as CI artefacts in _build/screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # The landing page itself, not index.html: that redirects, and the picture would catch it half loaded.
    for name, page in (("landing", ENGLISH[0]), ("chapter", CHAPTERS[min(1, len(CHAPTERS) - 1)]),
                       ("landing-zh", CHINESE[0])):
        driver.get(urljoin(base_url, page))
        if driver.execute_script("return document.querySelectorAll('.math').length"):
            driver.execute_async_script(MATHJAX_JS)
        path = SCREENSHOTS / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"could not save {path}"
        assert path.stat().st_size > 10_000, f"{path} looks empty"
