"""Sentiment from other domains than film reviews, offline: Hutto and Gilbert's human-rated snippets.

For the VADER paper, Hutto and Gilbert had every sentence of four collections rated for
sentiment by at least twenty people each, on a scale from -4 (extremely negative) to +4
(extremely positive): tweets, snippets of Amazon product reviews (Hu and Liu's
customer reviews), sentences of New York Times editorials, and Pang and Lee's film-review
snippets. The ``vaderSentiment==3.3.2`` source distribution on PyPI ships the four files
inside ``additional_resources/hutto_ICWSM_2014.tar.gz`` (its wheel does not).
:func:`fetch_vader_ratings` downloads that source distribution with ``pip download
--no-deps --no-binary :all:`` (vaderSentiment is never installed), checks it and the inner
archive against pinned SHA-256 hashes, and extracts the four rating files, each checked
against its own hash, into the book's cache folder; after that nothing needs a network.

:func:`load_domain` turns one domain into a labelled data set with the book's features:
snippets whose mean rating is at least ``threshold`` away from 0 keep their sign as the
label (``positive`` / ``negative``), the rest (near-neutral: the raters did not agree on
a polarity) are dropped. Used in ``book/limits.ipynb``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, Features, Value

from companion.data import (
    CACHE_ENV,
    LABEL_NAMES,
    DataError,
    cache_dir,
    check_cached,
    check_download,
    check_writable_folder,
    pip_download,
    sha256_of,
)

__all__ = [
    "DOMAINS",
    "fetch_vader_ratings",
    "read_ratings",
    "load_domain",
    "normalize_text",
    "found_in",
]

SDIST = "vaderSentiment==3.3.2"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
ARCHIVE_SHA256 = "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa"
#: The four domains: the file of mean ratings inside the archive, and its SHA-256.
DOMAINS = {
    "films": ("movieReviewSnippets_GroundTruth.txt",
              "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"),
    "products": ("amazonReviewSnippets_GroundTruth.txt",
                 "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2"),
    "editorials": ("nytEditorialSnippets_GroundTruth.txt",
                   "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e"),
    "tweets": ("tweets_GroundTruth.txt",
               "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f"),
}
#: Prefix of the temporary folder, inside the cache folder, that the download goes into.
DOWNLOAD_PREFIX = ".tip-sdist-"
FEATURES = Features({"text": Value("string"), "label": ClassLabel(names=LABEL_NAMES), "rating": Value("float64")})


def _check_domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {sorted(DOMAINS)}, got {domain!r}")
    return domain


def _download_sdist(spec: str, dest: Path, pip: Sequence[str], hint: str) -> Path:
    """``pip download --no-deps --no-binary :all:`` of one source distribution into ``dest``; its path."""
    return pip_download(spec, dest, pip, hint, kind="sdist")


def _read_member(archive: tarfile.TarFile, name: str, what: str) -> bytes:
    try:
        handle = archive.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise DataError(f"{what} has no file {name}; delete it and download again")
    return handle.read()


def _extract_ratings(sdist: Path, folder: Path) -> None:
    """Take the inner archive out of ``sdist``, check it, and write each domain's file into ``folder``, checked."""
    try:
        with tarfile.open(sdist, "r:gz") as outer:
            inner_bytes = _read_member(outer, ARCHIVE, sdist.name)
        digest = hashlib.sha256(inner_bytes).hexdigest()
        if digest != ARCHIVE_SHA256:
            raise DataError(f"{ARCHIVE} inside {sdist.name} has an unexpected SHA-256; refusing to use it")
        with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
            for file_name, expected in DOMAINS.values():
                content = _read_member(inner, f"hutto_ICWSM_2014/{file_name}", Path(ARCHIVE).name)
                tmp = folder / f".{file_name}.{secrets.token_hex(4)}.part"
                try:
                    tmp.write_bytes(content)
                    if sha256_of(tmp) != expected:
                        raise DataError(f"{file_name} inside {Path(ARCHIVE).name} has an unexpected SHA-256")
                    os.replace(tmp, folder / file_name)
                finally:
                    tmp.unlink(missing_ok=True)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{sdist.name} is not a readable archive ({error}); delete it and download again") from None


def fetch_vader_ratings(cache: Path | None = None, pip: Sequence[str] | None = None) -> dict[str, Path]:
    """The cached paths of the four rating files, ``{domain: path}``, downloading them the first time.

    The source distribution ``vaderSentiment==3.3.2`` is fetched with ``pip download``
    into a temporary folder inside ``cache`` (default :func:`companion.data.cache_dir`),
    checked against its pinned SHA-256, and so is the archive inside it; each rating file
    is written under a temporary name, checked against its own hash and then renamed, so an
    interrupted run leaves nothing half-written. Cached files are re-hashed on every call
    and used without any network access.

    Raises :class:`companion.data.DataError` with a one-line explanation when there is
    neither a network nor a cached copy, when the cache folder cannot be written, when a
    hash does not match, or when an archive is corrupt.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    paths = {domain: folder / name for domain, (name, _) in DOMAINS.items()}
    if all(path.exists() for path in paths.values()):
        for domain, path in paths.items():
            check_cached(path, DOMAINS[domain][1])
        return paths
    check_writable_folder(folder, "the cache folder", f"set {CACHE_ENV} to a folder you can write to")
    hint = (
        f"Connect to PyPI once, or put the four files {', '.join(name for name, _ in DOMAINS.values())} "
        f"(inside {ARCHIVE} of the source distribution {SDIST}) into {folder} (or set {CACHE_ENV})"
    )
    with tempfile.TemporaryDirectory(prefix=DOWNLOAD_PREFIX, dir=folder) as tmp:
        sdist = _download_sdist(SDIST, Path(tmp), pip or (sys.executable, "-m", "pip"), hint)
        check_download(sdist, SDIST_SHA256)
        _extract_ratings(sdist, folder)
    return paths


def read_ratings(path: Path) -> pd.DataFrame:
    """One rating file as a frame with columns ``id``, ``rating`` (mean of the raters, -4..4) and ``text``.

    Each line is ``id<TAB>mean rating<TAB>text``. Rows whose text is empty are dropped,
    and so are repeated texts (the first is kept).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path} could not be read as UTF-8 text ({error}); delete it and run again") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            if len(parts) != 3:
                raise ValueError(f"{len(parts)} tab-separated fields")
            rating = float(parts[1])
        except ValueError as error:
            raise DataError(f"{path}, line {number}: expected 'id<TAB>rating<TAB>text' ({error})") from None
        rows.append((parts[0], rating, parts[2].strip()))
    frame = pd.DataFrame(rows, columns=["id", "rating", "text"])
    frame = frame[frame["text"] != ""].drop_duplicates(subset="text", keep="first")
    return frame.reset_index(drop=True)


def load_domain(domain: str, threshold: float = 1.0, cache: Path | None = None) -> Dataset:
    """One domain's snippets as a data set with ``text``, ``label`` (negative / positive) and ``rating``.

    Snippets whose mean rating lies within ``threshold`` of 0 are dropped: the raters did
    not agree on a polarity, and the book's task is binary. The rest keep the sign of their
    rating as their label, in file order.

    >>> tweets = load_domain("tweets")  # doctest: +SKIP
    >>> tweets.features["label"].names  # doctest: +SKIP
    ['negative', 'positive']
    """
    _check_domain(domain)
    if not (isinstance(threshold, int | float) and 0 < threshold < 4):
        raise ValueError(f"threshold must be a number between 0 and 4 (exclusive), got {threshold!r}")
    frame = read_ratings(fetch_vader_ratings(cache)[domain])
    polar = frame[frame["rating"].abs() >= threshold]
    return Dataset.from_pandas(
        pd.DataFrame({"text": polar["text"].to_numpy(), "label": (polar["rating"] > 0).astype(int).to_numpy(),
                      "rating": polar["rating"].to_numpy()}),
        features=FEATURES, preserve_index=False,
    )


def normalize_text(text: str) -> str:
    """Lower case, every run of characters other than letters and digits made one space: for overlap checks.

    >>> normalize_text("It's a ''gem''!")
    'it s a gem'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def found_in(texts: Iterable[str], reference: Iterable[str]) -> np.ndarray:
    """A boolean mask over ``texts``: True where a text also occurs in ``reference`` (after :func:`normalize_text`).

    Used to find the snippets of another collection that are also in the book's own
    splits (the same sentence collected twice), before using them as unseen text.

    >>> found_in(["A gem.", "Dull."], ["a GEM", "Long."]).tolist()
    [True, False]
    """
    seen = {normalize_text(t) for t in reference}
    return np.array([normalize_text(t) in seen for t in texts], dtype=bool)
