"""companion.theory and companion.plots_theory: losses, gradients, update rules, schedules, features, plots."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup  # noqa: E402

from companion import plots_theory  # noqa: E402
from companion.theory import (  # noqa: E402
    AdamState,
    adam_step,
    adamw_step,
    anchor_similarities,
    bce_grad,
    binary_cross_entropy_with_logits,
    constant_with_warmup,
    cross_entropy_grad,
    encode_sentences,
    finite_difference_grad,
    gradient_descent_path,
    head_loss_curve,
    linear_warmup_decay,
    log_sum_exp,
    loss_surface,
    regularised_logistic_loss,
    relative_error,
    run_torch_optimizer,
    run_update_rule,
    scheduler_values,
    sgd_step,
    softmax,
    softmax_cross_entropy,
    softplus,
    standardise,
    tail_mean,
)

DOUBLE = torch.float64


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# ----------------------------------------------------------------------------- building blocks


def test_softplus_matches_torch_and_never_overflows() -> None:
    z = torch.linspace(-50, 50, 101, dtype=DOUBLE)
    assert torch.allclose(softplus(z), F.softplus(z, threshold=1000), rtol=1e-12)
    big = softplus(torch.tensor([-1e4, 1e4]))
    assert big.isfinite().all() and big[1].item() == 1e4


def test_log_sum_exp_and_softmax_are_stable(gen: torch.Generator) -> None:
    z = torch.randn(4, 5, generator=gen, dtype=DOUBLE) * 10
    assert torch.allclose(log_sum_exp(z, dim=1), torch.logsumexp(z, dim=1), rtol=1e-12)
    assert torch.allclose(softmax(z, dim=0), torch.softmax(z, dim=0), rtol=1e-12)
    huge = torch.tensor([1000.0, 1000.0])
    assert torch.isfinite(log_sum_exp(huge)) and torch.allclose(softmax(huge), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="empty"):
        log_sum_exp(torch.empty(0))


# ----------------------------------------------------------------------------- binary cross-entropy


def test_bce_matches_torch_in_every_reduction(gen: torch.Generator) -> None:
    z = torch.randn(10, generator=gen, dtype=DOUBLE) * 4
    y = torch.randint(0, 2, (10,), generator=gen).to(DOUBLE)
    for reduction in ("mean", "sum", "none"):
        ours = binary_cross_entropy_with_logits(z, y, reduction)
        theirs = F.binary_cross_entropy_with_logits(z, y, reduction=reduction)
        assert torch.allclose(ours, theirs, rtol=1e-12)


def test_bce_grad_matches_autograd_and_finite_differences(gen: torch.Generator) -> None:
    z = (torch.randn(6, generator=gen, dtype=DOUBLE) * 3).requires_grad_()
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype=DOUBLE)
    (auto,) = torch.autograd.grad(binary_cross_entropy_with_logits(z, y), z)
    assert relative_error(bce_grad(z.detach(), y), auto) < 1e-12
    numeric = finite_difference_grad(lambda t: binary_cross_entropy_with_logits(t, y), z)
    assert relative_error(bce_grad(z.detach(), y), numeric) < 1e-6
    assert torch.allclose(bce_grad(z.detach(), y, "sum"), torch.sigmoid(z.detach()) - y)


@pytest.mark.parametrize("value", [100.0, -100.0, 1e4])
def test_bce_is_finite_for_extreme_logits(value: float) -> None:
    z = torch.tensor([value, -value])
    y = (z < 0).float()  # confidently wrong on both
    loss = binary_cross_entropy_with_logits(z, y, "none")
    assert loss.isfinite().all() and torch.allclose(loss, torch.tensor([abs(value)] * 2))
    assert bce_grad(z, y).isfinite().all()
    right = binary_cross_entropy_with_logits(z, 1 - y, "none")
    assert right.isfinite().all() and (right >= 0).all()


def test_bce_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        binary_cross_entropy_with_logits(torch.empty(0), torch.empty(0))
    with pytest.raises(ValueError, match="same shape"):
        binary_cross_entropy_with_logits(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bce_grad(torch.zeros(2), torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="floating point"):
        binary_cross_entropy_with_logits(torch.zeros(2, dtype=torch.long), torch.zeros(2))
    with pytest.raises(ValueError, match="reduction"):
        binary_cross_entropy_with_logits(torch.zeros(2), torch.zeros(2), reduction="avg")


# ----------------------------------------------------------------------------- softmax cross-entropy


def test_cross_entropy_matches_torch(gen: torch.Generator) -> None:
    logits = torch.randn(7, 4, generator=gen, dtype=DOUBLE) * 5
    labels = torch.randint(0, 4, (7,), generator=gen)
    for reduction in ("mean", "sum", "none"):
        ours = softmax_cross_entropy(logits, labels, reduction)
        assert torch.allclose(ours, F.cross_entropy(logits, labels, reduction=reduction), rtol=1e-12)


def test_cross_entropy_grad_matches_autograd_and_finite_differences(gen: torch.Generator) -> None:
    logits = torch.randn(5, 3, generator=gen, dtype=DOUBLE).requires_grad_()
    labels = torch.tensor([0, 1, 2, 2, 1])
    (auto,) = torch.autograd.grad(F.cross_entropy(logits, labels), logits)
    ours = cross_entropy_grad(logits.detach(), labels)
    assert relative_error(ours, auto) < 1e-12
    numeric = finite_difference_grad(lambda t: softmax_cross_entropy(t, labels), logits)
    assert relative_error(ours, numeric) < 1e-6
    assert torch.allclose(cross_entropy_grad(logits.detach(), labels, "sum").sum(dim=1), torch.zeros(5, dtype=DOUBLE))


def test_cross_entropy_is_finite_for_extreme_logits() -> None:
    logits = torch.tensor([[100.0, -100.0], [-100.0, 100.0], [1e4, -1e4]])
    labels = torch.tensor([1, 0, 1])
    loss = softmax_cross_entropy(logits, labels, "none")
    assert loss.isfinite().all() and torch.allclose(loss, torch.tensor([200.0, 200.0, 2e4]))
    assert cross_entropy_grad(logits, labels).isfinite().all()


def test_two_logit_softmax_is_sigmoid_of_the_difference(gen: torch.Generator) -> None:
    logits = torch.randn(9, 2, generator=gen, dtype=DOUBLE)
    labels = torch.randint(0, 2, (9,), generator=gen)
    diff = logits[:, 1] - logits[:, 0]
    assert torch.allclose(softmax(logits)[:, 1], torch.sigmoid(diff))
    assert torch.allclose(softmax_cross_entropy(logits, labels), binary_cross_entropy_with_logits(diff, labels))


def test_cross_entropy_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"0\.\.2"):
        softmax_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        cross_entropy_grad(torch.zeros(2, 3), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="empty"):
        softmax_cross_entropy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="one class index per example"):
        softmax_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        softmax_cross_entropy(torch.zeros(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="two or more classes"):
        softmax_cross_entropy(torch.zeros(2, 1), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="integer"):
        softmax_cross_entropy(torch.zeros(2, 3), torch.tensor([0.5, 1.0]))


# ----------------------------------------------------------------------------- numerical helpers


def test_finite_differences_and_relative_error() -> None:
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=DOUBLE)
    numeric = finite_difference_grad(lambda t: (t**3).sum(), x)
    assert numeric.shape == x.shape and relative_error(numeric, 3 * x**2) < 1e-8
    assert relative_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert math.isclose(relative_error(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])), 1.0)
    with pytest.raises(ValueError, match="eps"):
        finite_difference_grad(lambda t: t.sum(), x, eps=0.0)
    with pytest.raises(ValueError, match="empty"):
        finite_difference_grad(lambda t: t.sum(), torch.empty(0))
    with pytest.raises(ValueError, match="shapes"):
        relative_error(torch.zeros(2), torch.zeros(3))


# ----------------------------------------------------------------------------- update rules


def test_sgd_step_formula_and_errors() -> None:
    theta, grad = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.5])
    assert torch.allclose(sgd_step(theta, grad, 0.1, 0.01), theta - 0.1 * grad - 0.1 * 0.01 * theta)
    with pytest.raises(ValueError, match="same shape"):
        sgd_step(theta, torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="learning rate"):
        sgd_step(theta, grad, -0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        sgd_step(theta, grad, 0.1, -1.0)


@pytest.mark.parametrize("rule", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_update_rules_match_torch_optim_over_many_steps(rule: str, weight_decay: float, gen: torch.Generator) -> None:
    A = torch.randn(20, 3, generator=gen, dtype=DOUBLE)
    y = torch.randint(0, 2, (20,), generator=gen).to(DOUBLE)
    start = torch.randn(3, generator=gen, dtype=DOUBLE)

    def loss_fn(w: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy_with_logits(A @ w, y)

    ours = run_update_rule(loss_fn, start, rule, steps=25, lr=0.05, weight_decay=weight_decay)
    theirs = run_torch_optimizer(loss_fn, start, rule, steps=25, lr=0.05, weight_decay=weight_decay)
    assert ours.shape == (26, 3)
    assert relative_error(ours, theirs) < 1e-10


def test_adam_with_l2_and_adamw_differ_on_an_unused_weight() -> None:
    theta = torch.tensor([1.0], dtype=DOUBLE)
    zero = torch.zeros(1, dtype=DOUBLE)
    coupled, decoupled = theta, theta
    s1, s2 = AdamState.zeros_like(theta), AdamState.zeros_like(theta)
    for _ in range(50):
        coupled, s1 = adam_step(coupled, zero, s1, lr=0.01, weight_decay=0.1)
        decoupled, s2 = adamw_step(decoupled, zero, s2, lr=0.01, weight_decay=0.1)
    assert s1.step == s2.step == 50
    assert math.isclose(decoupled.item(), (1 - 0.001) ** 50, rel_tol=1e-12)
    assert coupled.item() < 0.6  # about lr per step, whatever λ is


def test_adam_rejects_bad_settings() -> None:
    theta = torch.ones(2)
    state = AdamState.zeros_like(theta)
    with pytest.raises(ValueError, match="betas"):
        adam_step(theta, theta, state, betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="eps"):
        adamw_step(theta, theta, state, eps=0.0)
    with pytest.raises(ValueError, match="state"):
        adam_step(theta, theta, AdamState.zeros_like(torch.ones(3)))
    with pytest.raises(ValueError, match="same shape"):
        adamw_step(theta, torch.ones(3), state)
    with pytest.raises(ValueError, match="rule"):
        run_update_rule(lambda w: w.sum(), theta, "rmsprop", 1, 0.1)
    with pytest.raises(ValueError, match="rule"):
        run_torch_optimizer(lambda w: w.sum(), theta, "rmsprop", 1, 0.1)
    with pytest.raises(ValueError, match="steps"):
        run_update_rule(lambda w: w.sum(), theta, "sgd", -1, 0.1)


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(("warmup", "total"), [(0, 10), (3, 10), (5, 6)])
def test_schedules_match_transformers(warmup: int, total: int) -> None:
    ours = [linear_warmup_decay(s, 2.0, warmup, total) for s in range(total + 3)]
    theirs = scheduler_values(
        get_linear_schedule_with_warmup, total + 2, 2.0, num_warmup_steps=warmup, num_training_steps=total
    )
    assert torch.allclose(torch.tensor(ours), torch.tensor(theirs))
    ours = [constant_with_warmup(s, 2.0, warmup) for s in range(total + 1)]
    theirs = scheduler_values(get_constant_schedule_with_warmup, total, 2.0, num_warmup_steps=warmup)
    assert torch.allclose(torch.tensor(ours), torch.tensor(theirs))


def test_schedules_reject_bad_settings() -> None:
    with pytest.raises(ValueError, match="steps"):
        scheduler_values(get_linear_schedule_with_warmup, -1, 1.0, num_warmup_steps=0, num_training_steps=2)
    with pytest.raises(ValueError, match="exceed"):
        linear_warmup_decay(0, 1.0, 5, 5)
    with pytest.raises(ValueError, match="step"):
        constant_with_warmup(-1, 1.0)
    with pytest.raises(ValueError, match="peak_lr"):
        linear_warmup_decay(0, -1.0, 0, 5)
    with pytest.raises(ValueError, match="warmup_steps"):
        constant_with_warmup(0, 1.0, -2)


# ----------------------------------------------------------------------------- 2-D logistic regression


@pytest.fixture
def two_features(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 2, (40,), generator=gen)
    X = torch.randn(40, 2, generator=gen, dtype=DOUBLE) + (2 * y.to(DOUBLE) - 1).unsqueeze(1)
    return standardise(X), y


def test_standardise_and_anchor_similarities() -> None:
    X = standardise(torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 60.0]]))
    assert torch.allclose(X.mean(0), torch.zeros(2), atol=1e-6) and torch.allclose(X.std(0), torch.ones(2))
    with pytest.raises(ValueError, match="constant"):
        standardise(torch.tensor([[1.0, 2.0], [1.0, 3.0]]))
    with pytest.raises(ValueError, match="n >= 2"):
        standardise(torch.ones(1, 2))
    sims = anchor_similarities(torch.tensor([[3.0, 4.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(sims, torch.tensor([[0.6], [0.0]]))
    with pytest.raises(ValueError, match="same d"):
        anchor_similarities(torch.ones(2, 3), torch.ones(1, 2))
    with pytest.raises(ValueError, match="at least one"):
        anchor_similarities(torch.ones(0, 2), torch.ones(1, 2))


def test_gradient_descent_path_is_sgd_on_the_regularised_loss(two_features) -> None:
    X, y = two_features
    path, losses = gradient_descent_path(X, y, lr=0.5, weight_decay=0.1, steps=40)
    assert path.shape == (41, 2) and losses.shape == (41,)
    assert math.isclose(losses[0].item(), math.log(2), rel_tol=1e-12)
    assert (losses.diff() <= 1e-12).all(), "a small step on a convex loss never goes up"
    auto = run_update_rule(lambda w: regularised_logistic_loss(w, X, y, 0.1), torch.zeros(2, dtype=DOUBLE),
                           "sgd", 40, 0.5)
    assert relative_error(path, auto) < 1e-10
    with pytest.raises(ValueError, match="labels"):
        gradient_descent_path(X, y[:-1], 0.1, 0.0, 3)
    with pytest.raises(ValueError, match="weights"):
        regularised_logistic_loss(torch.zeros(3, dtype=DOUBLE), X, y)


def test_loss_surface_matches_pointwise_loss(two_features) -> None:
    X, y = two_features
    w1, w2 = torch.linspace(-2, 2, 5, dtype=DOUBLE), torch.linspace(-1, 3, 4, dtype=DOUBLE)
    surface = loss_surface(X, y, 0.2, w1, w2)
    assert surface.shape == (4, 5)
    point = regularised_logistic_loss(torch.stack([w1[1], w2[3]]), X, y, 0.2)
    assert torch.isclose(surface[3, 1], point)
    with pytest.raises(ValueError, match="two features"):
        loss_surface(torch.ones(3, 3), torch.zeros(3), 0.0, w1, w2)


def test_head_loss_curve_is_reproducible_and_learns(two_features) -> None:
    X, y = two_features
    curves = []
    for _ in range(2):
        torch.manual_seed(0)
        curves.append(head_loss_curve(X.float(), y, torch.nn.Linear(2, 2), steps=60, batch_size=8, lr=0.05, seed=3))
    assert curves[0] == curves[1] and len(curves[0]) == 60
    assert tail_mean(curves[0], 15) < tail_mean(curves[0][:15], 15)
    with pytest.raises(ValueError, match="positive"):
        head_loss_curve(X.float(), y, torch.nn.Linear(2, 2), steps=0)


def test_tail_mean_errors() -> None:
    assert tail_mean([1.0, 2.0, 3.0, 4.0], 4) == 2.5
    with pytest.raises(ValueError, match="at least"):
        tail_mean([1.0], 2)
    with pytest.raises(ValueError, match="positive"):
        tail_mean([1.0], 0)


def test_encode_sentences_on_the_real_checkpoint(tokenizer) -> None:
    from companion.models import load_classifier

    model = load_classifier("minilm")
    model.train()
    out = encode_sentences(model, tokenizer, ["A fine film.", "Dull.", "Bad."], max_length=16, batch_size=2)
    assert out.pooled.shape == out.mean.shape == (3, model.config.hidden_size)
    assert model.training, "the model's mode is restored"
    again = encode_sentences(model, tokenizer, ["Dull."], max_length=16)
    assert torch.allclose(again.mean[0], out.mean[1], atol=1e-5), "padding does not change a sentence's embedding"
    with pytest.raises(ValueError, match="at least one"):
        encode_sentences(model, tokenizer, [])


def test_encode_sentences_needs_a_pooler(tokenizer) -> None:
    from companion.models import load_classifier, load_encoder

    bare = encode_sentences(load_encoder("minilm"), tokenizer, ["Dull."], max_length=16)
    assert bare.pooled.shape == bare.mean.shape == (1, 384)
    with pytest.raises(ValueError, match="has no pooler"):
        encode_sentences(load_classifier("minilm", pooling="mean"), tokenizer, ["Dull."], max_length=16)


# ----------------------------------------------------------------------------- plots


def test_plots_draw_labelled_figures(two_features) -> None:
    X, y = two_features
    p = torch.linspace(0.1, 0.9, 9)
    figures = [
        plots_theory.plot_recipe(),
        plots_theory.plot_loss_and_gradient(p, -p.log(), p - 1, -(1 - p).log(), p),
        plots_theory.plot_descent(X, y, [0.5, 2.0], 0.1, 10),
        plots_theory.plot_schedules({"linear": [linear_warmup_decay(s, 1.0, 2, 8) for s in range(9)]}),
        plots_theory.plot_loss_curves({"a": [1.0, 0.9, 0.8, 0.7], "b": [1.0, 1.0, 1.0, 1.0]}, window=2),
    ]
    for fig in figures[1:]:
        for ax in fig.axes:
            if ax.get_label() != "<colorbar>":
                assert ax.get_xlabel() and ax.get_ylabel()
    for fig in figures:
        plt.close(fig)
    with pytest.raises(ValueError):
        plots_theory.plot_recipe([])
    with pytest.raises(ValueError):
        plots_theory.plot_descent(X, y, [], 0.0, 3)
    with pytest.raises(ValueError):
        plots_theory.plot_loss_curves({})
    with pytest.raises(ValueError):
        plots_theory.plot_schedules({})
    with pytest.raises(ValueError):
        plots_theory.plot_loss_and_gradient(p, p, p, p, p[:3])


def test_descent_playground_has_three_controls(two_features) -> None:
    pytest.importorskip("ipywidgets")
    X, y = two_features
    playground = plots_theory.descent_playground(X, y)
    assert [c.description for c in playground.children[:3]] == ["η", "λ", "steps"]
    plt.close("all")
