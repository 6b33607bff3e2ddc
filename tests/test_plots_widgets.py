"""companion.plots and the text-classifier box of companion.widgets."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from companion.plots import moving_average, plot_confusion, plot_speed, plot_training  # noqa: E402
from companion.training import FitResult  # noqa: E402
from companion.widgets import format_prediction, text_classifier_box  # noqa: E402


def test_moving_average_is_a_trailing_mean() -> None:
    assert moving_average([2, 4, 6, 8], window=3).tolist() == [2.0, 3.0, 4.0, 6.0]
    assert moving_average([5.0], window=10).tolist() == [5.0]
    with pytest.raises(ValueError, match="window"):
        moving_average([1, 2], window=0)


def test_plot_training_draws_both_panels() -> None:
    result = FitResult(history=[{"epoch": 1, "val_accuracy": 0.7}, {"epoch": 2, "val_accuracy": 0.8}],
                       step_losses=list(np.linspace(0.7, 0.3, 40)), best_epoch=2, best_score=0.8,
                       seconds=1.0, stopped_early=False)
    fig = plot_training(result)
    left, right = fig.axes
    assert left.get_xlabel() == "optimizer step" and right.get_ylabel() == "validation accuracy"
    plt.close(fig)


def test_plot_training_draws_one_panel_per_validation_metric() -> None:
    history = [{"epoch": e, "val_accuracy": a, "val_loss": loss} for e, a, loss in [(1, 0.7, 0.5), (2, 0.8, 0.6)]]
    result = FitResult(history=history, step_losses=[0.7, 0.5], best_epoch=1, best_score=0.5, seconds=1.0,
                       stopped_early=False)
    fig = plot_training(result, metrics=("loss", "accuracy"))
    assert [ax.get_ylabel() for ax in fig.axes] == ["training loss", "validation loss", "validation accuracy"]
    plt.close(fig)
    with pytest.raises(ValueError, match="validation metrics"):
        plot_training(result, metrics=("auc",))


def test_plot_confusion_writes_counts_and_checks_shape() -> None:
    fig = plot_confusion(np.array([[5, 1], [2, 7]]), ["negative", "positive"])
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["1", "2", "5", "7"]
    plt.close(fig)
    with pytest.raises(ValueError, match="does not match"):
        plot_confusion(np.eye(3), ["a", "b"])


def test_plot_speed_labels_each_bar_with_its_ratio() -> None:
    fig = plot_speed({"article": 100.0, "grouped": 400.0}, baseline="article")
    assert [t.get_text().strip() for t in fig.axes[0].texts] == ["1.0x", "4.0x"]
    plt.close(fig)
    with pytest.raises(ValueError, match="baseline"):
        plot_speed({"a": 1.0}, baseline="b")


def fake_classifier(text: str) -> list[dict]:
    return [{"label": "positive" if "good" in text else "negative", "score": 0.875}]


def test_text_classifier_box_prints_a_static_result_and_updates(capsys: pytest.CaptureFixture[str]) -> None:
    box = text_classifier_box(fake_classifier, "a good film")
    assert capsys.readouterr().out.strip() == "'a good film' -> positive (p = 0.88)"
    text, answer = box.children
    assert answer.value == "positive (p = 0.88)"
    text.value = "a bad film"
    assert answer.value == "negative (p = 0.88)"
    text.value = "   "
    assert answer.value == "type a sentence"


def test_text_classifier_box_needs_an_example() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        text_classifier_box(fake_classifier, " ")
    assert format_prediction({"label": "x", "score": 0.5}) == "x (p = 0.50)"


def test_every_widget_builds_and_redraws_with_this_ipywidgets(tokenizer) -> None:
    """Each widget the chapters show builds, and redraws when a control moves, with the installed ipywidgets.

    Colab ships ipywidgets 7.7.1 and the book's .venv 8.x: `make test-colab` runs this file in the
    Colab twin, so both major versions are exercised.
    """
    import ipywidgets
    import torch

    from companion.models import load_encoder
    from companion.plots_theory import descent_playground
    from companion.widgets import attention_explorer

    assert int(ipywidgets.__version__.split(".")[0]) in (7, 8)
    explorer = attention_explorer(load_encoder("minilm", attn_implementation="eager"), tokenizer,
                                  ["A short test.", "Another one."])
    sentence, layer, head = explorer.children[:3]
    assert (sentence.options, layer.max, head.max) == (("A short test.", "Another one."), 5, 11)
    layer.value, head.value, sentence.value = 5, 11, "Another one."
    sentence.value = "A sentence typed by the reader."  # a Combobox also takes free text
    playground = descent_playground(torch.tensor([[1.0, 0.5], [-1.0, -0.2], [0.3, 1.0]]), torch.tensor([1, 0, 1]))
    lr, weight_decay, steps = playground.children[:3]
    lr.value, weight_decay.value, steps.value = 0.1, 0.5, 10
    assert all(isinstance(w.children[-1], ipywidgets.Output) for w in (explorer, playground))
    box = text_classifier_box(fake_classifier, "a good film")
    box.children[0].value = "a bad film"
    assert box.children[1].value == "negative (p = 0.88)"
    plt.close("all")
