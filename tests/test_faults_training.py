"""Faults in the training loop: each ends in a clear error, before wasted work where it can.

Part of the fault suite (see also tests/test_faults.py): a diverged run is never accepted,
bad labels never reach the model, empty loaders are refused before training.
"""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Value
from test_training import tiny_model, toy_data
from torch.utils.data import DataLoader

from companion.batching import make_loader
from companion.training import DivergedError, check_labels, fit, make_optimizer, train_epoch


@pytest.fixture
def loaders(tokenizer):
    train = make_loader(toy_data(64), tokenizer, batch_size=16)
    val = make_loader(toy_data(32, seed=1), tokenizer, batch_size=16)
    return train, val


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_a_diverged_run_stops_at_the_first_non_finite_loss(loaders, metric) -> None:
    model = tiny_model()
    words = r"training diverged at step \d+: the loss is nan; lower the learning rate"
    with pytest.raises(DivergedError, match=words) as error:
        fit(model, *loaders, epochs=2, lr=1e10, metric=metric, progress=False, precision="fp32")
    assert error.value.step >= 2  # the first step's loss is finite: the update after it breaks the weights


@pytest.mark.parametrize("lr", [math.inf, -math.inf, math.nan, 0.0, -1e-5])
def test_a_non_finite_or_non_positive_learning_rate_is_refused(lr) -> None:
    with pytest.raises(ValueError, match="positive, finite number"):
        make_optimizer(tiny_model(), lr=lr)


def test_non_finite_weights_are_caught_at_step_one(loaders) -> None:
    model = tiny_model()
    with torch.no_grad():
        model.classifier.bias.fill_(math.nan)
    with pytest.raises(DivergedError, match="at step 1"):
        fit(model, *loaders, epochs=1, progress=False, precision="fp32")


def test_float_labels_are_refused_before_the_model_sees_them(tokenizer) -> None:
    model = tiny_model()
    rows = toy_data(32)
    rows = rows.cast_column("labels", Value("float32"))
    loader = make_loader(rows, tokenizer, batch_size=16)
    with pytest.raises(ValueError, match="labels must be integer class ids, got torch.float32"):
        fit(model, loader, loader, epochs=1, progress=False, precision="fp32")
    assert model.config.problem_type is None  # transformers would have switched it to multi-label for good
    good = make_loader(toy_data(32), tokenizer, batch_size=16)
    assert fit(model, good, good, epochs=1, progress=False, precision="fp32").best_epoch == 1  # a retry works


def test_boolean_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="integer class ids"):
        check_labels(torch.tensor([True, False]), 2)


def test_an_empty_validation_loader_is_refused_before_training(loaders) -> None:
    train, _ = loaders
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="the validation loader is empty"):
        fit(model, train, DataLoader([], batch_size=4), epochs=1, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # not one step was taken


def test_an_empty_training_loader_is_named(loaders) -> None:
    _, val = loaders
    with pytest.raises(ValueError, match="the training loader is empty"):
        fit(tiny_model(), DataLoader([], batch_size=4), val, epochs=1, progress=False)


def test_a_batch_without_labels_names_the_missing_column(tokenizer) -> None:
    model = tiny_model()
    batch = dict(tokenizer(["a b c", "d e"], padding=True, return_tensors="pt"))
    with pytest.raises(ValueError, match=r"the batch has no 'labels' \(it has \['attention_mask', 'input_ids'"):
        train_epoch(model, [batch], make_optimizer(model, 1e-3), progress=False)


@pytest.mark.parametrize(("argument", "value", "words"), [
    ("epochs", 0, "epochs must be at least 1"),
    ("patience", 0, "patience must be at least 1"),
    ("accumulation_steps", 0, "accumulation_steps must be at least 1"),
    ("metric", "auc", "metric must be 'accuracy', 'f1' or 'loss'"),
])  # fmt: skip
def test_fit_arguments_out_of_range(loaders, argument, value, words) -> None:
    with pytest.raises(ValueError, match=words):
        fit(tiny_model(), *loaders, progress=False, **{argument: value})
