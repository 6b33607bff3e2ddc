"""Triage of incoming customer messages with two fine-tuned classifiers.

A message goes through two models: a **question router** (which kind of answer does
the question ask for, hence which team's queue) and a **sentiment model** (how upset
is the customer, hence the priority). The rules that turn the two models' probabilities
into a queue and a priority are plain functions, tested on their own; :class:`Triage`
runs both models and applies them, and :func:`triage_box` is the interactive box.
Used in ``book/applications.ipynb``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "QUEUES",
    "FALLBACK_QUEUE",
    "Ticket",
    "check_texts",
    "extract_question",
    "assign_priority",
    "assign_queue",
    "class_probabilities",
    "Triage",
    "format_ticket",
    "triage_box",
]

#: The team that answers each coarse kind of question.
QUEUES = {
    "ABBR": "self-service FAQ",
    "DESC": "technical support",
    "ENTY": "product specialists",
    "HUM": "account managers",
    "LOC": "shipping and stores",
    "NUM": "billing and orders",
}
#: Where a message goes when the router is unsure.
FALLBACK_QUEUE = "human triage"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Ticket:
    """One triaged message: its question, queue and priority, and the evidence for them."""

    message: str
    question: str
    question_type: str
    type_probability: float
    negativity: float
    queue: str
    priority: str


def check_texts(texts: str | Sequence[str], what: str = "message") -> list[str]:
    """``texts`` as a list of strings (one string counts as one); a ``TypeError`` names any other item.

    >>> check_texts("Where is it?")
    ['Where is it?']
    """
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence):
        raise TypeError(f"expected a {what} (a string) or a list of them, got {type(texts).__name__} {texts!r}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what} {i} is {type(text).__name__} {text!r}, not a string; drop or fill it")
    return list(texts)


def extract_question(message: str) -> str:
    """The last sentence that ends in ``?``; the whole message when there is none.

    >>> extract_question("Third time I write. Where is my parcel? Thanks.")
    'Where is my parcel?'
    """
    if not isinstance(message, str):
        raise TypeError(f"the message must be a string, got {type(message).__name__} {message!r}")
    message = " ".join(message.split())
    if not message:
        raise ValueError("the message is empty")
    questions = [s for s in _SENTENCE_END.split(message) if s.endswith("?")]
    return questions[-1] if questions else message


def assign_priority(negativity: float, high: float = 0.7, low: float = 0.3) -> str:
    """``"high"`` when the message is at least ``high`` likely negative, ``"low"`` below ``low``, else ``"normal"``.

    >>> [assign_priority(p) for p in (0.95, 0.5, 0.1)]
    ['high', 'normal', 'low']
    """
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
    if not 0.0 <= negativity <= 1.0:
        raise ValueError(f"negativity is a probability, got {negativity}")
    if negativity >= high:
        return "high"
    return "low" if negativity < low else "normal"


def assign_queue(
    question_type: str, probability: float, min_probability: float = 0.5, queues: Mapping[str, str] = QUEUES
) -> str:
    """The queue of ``question_type``; :data:`FALLBACK_QUEUE` when its probability is below ``min_probability``.

    >>> assign_queue("LOC", 0.97), assign_queue("LOC", 0.41)
    ('shipping and stores', 'human triage')
    """
    if question_type not in queues:
        raise ValueError(f"no queue for question type {question_type!r}; known: {sorted(queues)}")
    return queues[question_type] if probability >= min_probability else FALLBACK_QUEUE


@torch.no_grad()
def class_probabilities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int = 64,
    batch_size: int = 64,
) -> np.ndarray:
    """Softmax probabilities ``[len(texts), num_labels]`` of a sequence classifier.

    Texts go through the model ``batch_size`` at a time, each batch padded to its own
    longest text, so that memory stays flat however many messages there are.
    """
    texts = check_texts(texts, "text")
    if len(texts) == 0:
        raise ValueError("no texts to classify")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model.eval()
    device = next(model.parameters()).device
    probabilities = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        batch = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        probabilities.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(probabilities)


class Triage:
    """Route and prioritise messages with a question router and a sentiment model.

    Both are sequence classifiers with label names in their config (as
    :func:`companion.models.load_saved` returns them); the sentiment model needs a label
    named ``negative_label``. The router reads the message's question
    (:func:`extract_question`), the sentiment model the whole message.
    """

    def __init__(
        self,
        router: tuple[PreTrainedModel, PreTrainedTokenizerBase],
        sentiment: tuple[PreTrainedModel, PreTrainedTokenizerBase],
        negative_label: str = "negative",
        queues: Mapping[str, str] = QUEUES,
        high: float = 0.7,
        low: float = 0.3,
        min_probability: float = 0.5,
    ) -> None:
        self.router, self.sentiment = router, sentiment
        label2id = sentiment[0].config.label2id
        if negative_label not in label2id:
            raise ValueError(f"the sentiment model has no label {negative_label!r}; its labels are {sorted(label2id)}")
        self.negative_id = int(label2id[negative_label])
        self.types = [router[0].config.id2label[i] for i in range(router[0].config.num_labels)]
        unknown = sorted(set(self.types) - set(queues))
        if unknown:
            raise ValueError(f"no queue for the router's labels {unknown}")
        assign_priority(0.5, high, low)  # validates the thresholds now, not at the first message
        self.queues, self.high, self.low, self.min_probability = dict(queues), high, low, min_probability

    def __call__(self, messages: Sequence[str]) -> list[Ticket]:
        """One :class:`Ticket` per message (a single string counts as one message)."""
        messages = check_texts(messages)
        questions = [extract_question(m) for m in messages]
        types = class_probabilities(*self.router, questions)
        moods = class_probabilities(*self.sentiment, [" ".join(m.split()) for m in messages])
        tickets = []
        for message, question, p_type, p_mood in zip(messages, questions, types, moods, strict=True):
            best = int(p_type.argmax())
            negativity = float(p_mood[self.negative_id])
            tickets.append(
                Ticket(
                    message=message,
                    question=question,
                    question_type=self.types[best],
                    type_probability=float(p_type[best]),
                    negativity=negativity,
                    queue=assign_queue(self.types[best], float(p_type[best]), self.min_probability, self.queues),
                    priority=assign_priority(negativity, self.high, self.low),
                )
            )
        return tickets

    def table(self, messages: Sequence[str]) -> pd.DataFrame:
        """The tickets of ``messages`` as a frame, one row each."""
        return pd.DataFrame([asdict(t) for t in self(messages)])


def format_ticket(ticket: Ticket) -> str:
    """One line: queue, priority and the evidence, rounded.

    >>> format_ticket(Ticket("m", "q", "LOC", 0.971, 0.912, "shipping and stores", "high"))
    'shipping and stores | high priority (LOC p = 0.97, negative p = 0.91)'
    """
    return (
        f"{ticket.queue} | {ticket.priority} priority "
        f"({ticket.question_type} p = {ticket.type_probability:.2f}, negative p = {ticket.negativity:.2f})"
    )


def triage_box(triage: Triage, example: str):
    """A text box that triages what is typed; prints the static result for ``example`` first.

    The printed line is what a rendered page or a kernel-less run shows; the returned
    widget (display it as a cell's last expression) works in a live notebook. Built on
    :func:`companion.widgets.text_box`.
    """
    from companion.widgets import text_box

    return text_box(lambda text: format_ticket(triage(text)[0]), example, "message")
