"""companion.triage: the queue and priority rules, and the two-model pipeline on tiny models."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from companion.triage import (
    FALLBACK_QUEUE,
    QUEUES,
    Ticket,
    Triage,
    assign_priority,
    assign_queue,
    class_probabilities,
    extract_question,
    format_ticket,
    triage_box,
)


def tiny_classifier(labels: list[str], winner: int, margin: float = 5.0) -> BertForSequenceClassification:
    """A 1-layer BERT whose head always prefers class ``winner`` (zero weights, biased output)."""
    config = BertConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={name: i for i, name in enumerate(labels)})
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[winner] = margin
    return model


ROUTER_LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


@pytest.mark.parametrize(
    ("message", "question"),
    [
        ("Where is my parcel?", "Where is my parcel?"),
        ("I ordered last week.  Where is my parcel? Please hurry!", "Where is my parcel?"),
        ("Who signed for it? And when did it arrive?", "And when did it arrive?"),
        ("Please cancel my order.", "Please cancel my order."),
        ("  two\n lines ", "two lines"),
    ],
)
def test_extract_question(message: str, question: str) -> None:
    assert extract_question(message) == question


def test_extract_question_refuses_an_empty_message() -> None:
    with pytest.raises(ValueError, match="empty"):
        extract_question("   ")


@pytest.mark.parametrize(("p", "priority"), [(1.0, "high"), (0.7, "high"), (0.69, "normal"), (0.3, "normal"),
                                             (0.29, "low"), (0.0, "low")])
def test_priority_thresholds(p: float, priority: str) -> None:
    assert assign_priority(p) == priority


@pytest.mark.parametrize(("args", "message"), [((1.5,), "probability"), ((0.5, 0.2, 0.3), "low < high")])
def test_priority_bad_input(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        assign_priority(*args)


def test_queue_rule() -> None:
    assert [assign_queue(t, 0.9) for t in ROUTER_LABELS] == list(QUEUES.values())
    assert assign_queue("NUM", 0.49) == FALLBACK_QUEUE
    assert assign_queue("NUM", 0.49, min_probability=0.4) == QUEUES["NUM"]
    with pytest.raises(ValueError, match="no queue"):
        assign_queue("COLOR", 0.9)


def test_class_probabilities_rows_sum_to_one(tokenizer) -> None:
    probs = class_probabilities(tiny_classifier(["a", "b", "c"], 1), tokenizer, ["one", "two words here"])
    assert probs.shape == (2, 3)
    assert torch.allclose(torch.from_numpy(probs.sum(axis=1)), torch.ones(2))
    with pytest.raises(ValueError, match="no texts"):
        class_probabilities(tiny_classifier(["a", "b"], 0), tokenizer, [])


def make_triage(tokenizer, route_to: int, negative: bool, margin: float = 5.0) -> Triage:
    router = tiny_classifier(ROUTER_LABELS, route_to, margin)
    sentiment = tiny_classifier(["negative", "positive"], 0 if negative else 1)
    return Triage((router, tokenizer), (sentiment, tokenizer))


def test_triage_combines_both_models(tokenizer) -> None:
    tickets = make_triage(tokenizer, route_to=4, negative=True)(["This is awful. Where is my parcel?", "Hello"])
    first = tickets[0]
    assert (first.question, first.question_type, first.queue, first.priority) == (
        "Where is my parcel?", "LOC", "shipping and stores", "high")
    assert first.negativity > 0.99 and first.type_probability > 0.9
    calm = make_triage(tokenizer, route_to=5, negative=False)("How much is it?")[0]
    assert (calm.queue, calm.priority) == ("billing and orders", "low")


def test_unsure_router_sends_to_human_triage(tokenizer) -> None:
    ticket = make_triage(tokenizer, route_to=1, negative=False, margin=0.5)("Why?")[0]
    assert ticket.type_probability < 0.5 and ticket.queue == FALLBACK_QUEUE


def test_triage_table_and_format(tokenizer) -> None:
    triage = make_triage(tokenizer, route_to=3, negative=True)
    table = triage.table(["Who is in charge here?", "Who can help?"])
    assert list(table.columns) == ["message", "question", "question_type", "type_probability", "negativity",
                                   "queue", "priority"]
    assert table["queue"].tolist() == ["account managers"] * 2
    line = format_ticket(Ticket("m", "q", "HUM", 0.5, 0.25, "account managers", "low"))
    assert line == "account managers | low priority (HUM p = 0.50, negative p = 0.25)"


def test_triage_checks_its_models(tokenizer) -> None:
    router = tiny_classifier(ROUTER_LABELS, 0)
    with pytest.raises(ValueError, match="no label 'negative'"):
        Triage((router, tokenizer), (tiny_classifier(["bad", "good"], 0), tokenizer))
    with pytest.raises(ValueError, match="no queue for the router's labels"):
        Triage((tiny_classifier(["X", "Y"], 0), tokenizer), (tiny_classifier(["negative", "positive"], 0), tokenizer))
    with pytest.raises(ValueError, match="low < high"):
        Triage((router, tokenizer), (tiny_classifier(["negative", "positive"], 0), tokenizer), high=0.2, low=0.4)


def test_triage_box_prints_a_static_result_and_updates(tokenizer, capsys: pytest.CaptureFixture[str]) -> None:
    box = triage_box(make_triage(tokenizer, route_to=4, negative=True), "Where is it?")
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("'Where is it?' -> shipping and stores | high priority (LOC p = ")
    text, answer = box.children
    assert answer.value.startswith("shipping and stores | high priority")
    text.value = "  "
    assert answer.value == "type a sentence"
    with pytest.raises(ValueError, match="non-empty"):
        triage_box(make_triage(tokenizer, route_to=4, negative=True), " ")
