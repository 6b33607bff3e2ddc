"""companion.distributed, companion.finetune, and the training loop under Accelerate.

The last test launches two CPU processes with ``accelerate launch`` (marked ``launches``;
about 30 s): ``pytest -m "not launches"`` skips it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from accelerate.state import AcceleratorState
from test_training import tiny_model, toy_data, without_dropout
from transformers import BertConfig, BertForSequenceClassification

from companion.batching import LengthGroupedBatchSampler, make_loader, tokenize_dataset
from companion.data import load_rotten_tomatoes, stratified_subset
from companion.distributed import (
    DynamicBatches,
    accelerate_config,
    effective_batch_size,
    launch_command,
    launch_env,
    make_accelerator,
    scaled_learning_rate,
    shardable,
    write_accelerate_config,
)
from companion.distributed import (
    fit as fit_accelerated,
)
from companion.finetune import METRICS_FILE, build_parser, run_program
from companion.models import load_saved, save_model
from companion.training import cpu_has_fast_bf16, evaluate, fit

SCRIPT = Path(__file__).resolve().parent.parent / "book" / "scripts" / "finetune.py"


@pytest.fixture
def accelerator():
    """A single-process CPU accelerator; Accelerate's process-wide state is reset afterwards."""
    yield make_accelerator("fp32", cpu=True)
    AcceleratorState._reset_state(reset_partial_state=True)


def test_effective_batch_and_learning_rate_rules() -> None:
    assert effective_batch_size(32) == 32
    assert effective_batch_size(16, processes=2) == 32
    assert effective_batch_size(8, processes=2, accumulation_steps=2) == 32
    assert scaled_learning_rate(2e-4, 32, 64) == pytest.approx(4e-4)
    assert scaled_learning_rate(2e-4, 32, 128, "sqrt") == pytest.approx(4e-4)
    assert scaled_learning_rate(2e-4, 32, 64, "none") == 2e-4
    with pytest.raises(ValueError, match="processes"):
        effective_batch_size(16, processes=0)
    with pytest.raises(ValueError, match="rule"):
        scaled_learning_rate(2e-4, 32, 64, "cubic")
    with pytest.raises(ValueError, match="lr > 0"):
        scaled_learning_rate(0.0, 32, 64)


def test_launch_command_and_environment() -> None:
    command = launch_command("train.py", ["--epochs", "1"], num_processes=2)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "2" and "--multi_gpu" in command
    assert command[-4:] == ["train.py", "--epochs", "1", "--cpu"]
    assert "--multi_gpu" not in launch_command("train.py", num_processes=1, cpu=False)
    assert launch_command("t.py", config_file="fsdp.yaml", cpu=False)[3:6] == ["--config_file", "fsdp.yaml", "t.py"]
    assert launch_command("companion.finetune", module=True)[-3:] == ["-m", "companion.finetune", "--cpu"]
    assert launch_env(1)["OMP_NUM_THREADS"] == "1"
    with pytest.raises(ValueError, match="num_processes"):
        launch_command("train.py", num_processes=0)
    with pytest.raises(ValueError, match="threads_per_process"):
        launch_env(0)


def test_accelerate_config_files_are_read_by_accelerate(tmp_path: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    gpus = load_config_from_file(str(write_accelerate_config(tmp_path / "gpus.yaml", kind="gpus", num_processes=2)))
    assert gpus.distributed_type.value == "MULTI_GPU" and gpus.num_processes == 2 and gpus.mixed_precision == "bf16"
    fsdp = load_config_from_file(str(write_accelerate_config(tmp_path / "fsdp.yaml", kind="fsdp")))
    assert fsdp.distributed_type.value == "FSDP"
    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "BertLayer"
    with pytest.raises(ValueError, match="kind"):
        accelerate_config("tpu")
    with pytest.raises(ValueError, match="num_processes"):
        accelerate_config(num_processes=0)


def shards(batch_sampler, processes: int = 2) -> list[list[list[int]]]:
    """The batches Accelerate deals to each process (its own BatchSamplerShard)."""
    return [list(BatchSamplerShard(batch_sampler, processes, rank)) for rank in range(processes)]


def test_dynamic_batches_shard_every_length_grouped_batch(tokenizer) -> None:
    """Short batches in the middle of an epoch are dealt too, and every process gets as many batches."""
    sampler = LengthGroupedBatchSampler(np.arange(1, 104) % 37 + 1, batch_size=8, group=4, seed=4)
    dropped = set(range(103)) - {i for part in shards(sampler) for batch in part for i in batch}
    assert dropped, "this seed puts a short batch where Accelerate's default sharding drops it"
    parts = shards(DynamicBatches(sampler))
    assert len(parts[0]) == len(parts[1]) == -(-len(sampler) // 2)
    assert {i for part in parts for batch in part for i in batch} == set(range(103))
    loader = make_loader(toy_data(40), tokenizer, batch_size=8, group_by_length=True)
    wrapped = shardable(loader)
    assert isinstance(wrapped.batch_sampler, DynamicBatches)
    assert wrapped.batch_sampler.batch_sampler is loader.batch_sampler
    plain = make_loader(toy_data(40), tokenizer, batch_size=8)
    assert shardable(plain) is plain and shardable(wrapped) is wrapped


def test_one_process_accelerator_trains_exactly_like_the_plain_loop(tokenizer, accelerator) -> None:
    """Same batches, updates and schedule: identical weights (dropout off, since Accelerate's
    loader draws its random seed at another moment, so dropout masks would differ)."""
    runs = []
    for acc in (None, accelerator):
        model = without_dropout(tiny_model())
        train = make_loader(toy_data(100), tokenizer, batch_size=16, group_by_length=True)
        val = make_loader(toy_data(50, seed=1), tokenizer, batch_size=16)
        settings = dict(epochs=2, lr=1e-3, patience=5, progress=False, accumulation_steps=2)
        if acc is None:
            result = fit(model, train, val, precision="fp32", **settings)
        else:
            result = fit_accelerated(model, train, val, acc, **settings)
        runs.append((model, result))
    (plain, first), (accelerated, second) = runs
    assert first.step_losses == second.step_losses and first.updates == second.updates == 8
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), accelerated.state_dict().values(),
                                                 strict=True))
    assert second.history[-1]["val_accuracy"] == first.history[-1]["val_accuracy"]
    assert second.train_seconds > 0


def test_the_plain_loop_does_not_import_the_distributed_one() -> None:
    code = "import sys, companion.training; print('companion.distributed' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_accelerated_fit_refuses_empty_loaders_before_preparing(tokenizer, accelerator) -> None:
    loader = make_loader(toy_data(16), tokenizer, batch_size=8)
    empty = torch.utils.data.DataLoader([], batch_size=8)
    with pytest.raises(ValueError, match="validation loader is empty"):
        fit_accelerated(tiny_model(), loader, empty, accelerator, epochs=1, progress=False)


def test_auto_precision_defers_to_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    from companion.distributed import _mixed_precision

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # accelerate launch --mixed_precision bf16
    assert _mixed_precision("auto", cpu=True) is None and _mixed_precision("fp32", cpu=True) == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # the launcher's default: the device decides
    assert _mixed_precision("auto", cpu=True) == ("bf16" if cpu_has_fast_bf16() else "no")
    assert _mixed_precision("bf16", cpu=True) == "bf16"


def test_help_documents_every_argument(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--checkpoint", "--train-size", "--epochs", "--batch-size", "--precision", "--output", "--cpu"):
        assert flag in text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--epochs", "0"])


def tiny_checkpoint(folder: Path, tokenizer) -> Path:
    """A 2-layer, 32-wide BERT with the default checkpoint's vocabulary, saved like a real one."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2)
    return save_model(BertForSequenceClassification(config), tokenizer, folder)


@pytest.mark.launches
def test_two_cpu_processes_train_save_once_and_evaluate_like_one(tmp_path: Path, tokenizer) -> None:
    """``accelerate launch`` with 2 CPU processes: finishes, saves once, and its test metrics are
    those of a single-process evaluation of the saved model (no example counted twice)."""
    checkpoint = tiny_checkpoint(tmp_path / "tiny", tokenizer)
    output = tmp_path / "run"
    # 75 test snippets make one batch of 128: each process gets a batch, made up with repeats that must be dropped
    args = ["--checkpoint", str(checkpoint), "--train-size", "200", "--eval-size", "75", "--epochs", "2",
            "--batch-size", "8", "--lr", "1e-3", "--output", str(output), "--no-progress", "--precision", "fp32"]
    done = subprocess.run(launch_command(SCRIPT, args, num_processes=2), env=launch_env(1), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("2 processes, effective batch 16") == 1  # only the main process prints
    record = json.loads((output / METRICS_FILE).read_text())
    with pytest.raises(RuntimeError, match="exit status 2"):  # argparse refuses --epochs 0
        run_program([sys.executable, str(SCRIPT), "--epochs", "0"], output)
    assert record["processes"] == 2 and record["distributed_type"] == "MULTI_CPU"
    assert record["effective_batch_size"] == 16 and record["threads_per_process"] == 1
    saved = sorted(p.name for p in output.iterdir())
    assert saved == ["README.md", "config.json", METRICS_FILE, "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json"]
    assert record["files_written_by_process"] == [4, 0]  # save_model's files; then metrics.json and the card
    card = (output / "README.md").read_text()
    assert f"| accuracy | {record['test']['accuracy']:.4f} |" in card
    assert f"| train | {record['train_examples']:,} |" in card

    model, _ = load_saved(output)
    test = tokenize_dataset(stratified_subset(load_rotten_tomatoes()["test"], 75, seed=0), tokenizer, 64)
    alone = evaluate(model, make_loader(test, tokenizer, batch_size=128))
    assert record["test_examples"] == int(alone.confusion.sum()) == 75
    assert record["test"]["accuracy"] == alone.accuracy
    assert record["test"]["loss"] == pytest.approx(alone.loss, rel=1e-5)
