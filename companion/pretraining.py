"""Masked-language-model pre-training: the masking, the loss, and what a model predicts.

BERT (Devlin et al., 2019) learns from unlabelled text by hiding tokens and predicting
them. :func:`mask_tokens` chooses 15% of the real tokens and replaces 80% of those with
``[MASK]``, 10% with a random token, and leaves 10% unchanged; the labels keep the
original id at the chosen positions and -100 elsewhere. :func:`masked_lm_loss` computes
the cross-entropy at the chosen positions only (and runs the vocabulary-sized output
layer only there), :func:`top_k_predictions` says what a model puts in one ``[MASK]``,
and :func:`unigram_cross_entropy` is the loss of guessing by word frequency alone, the
bar a model must clear to show that it reads the context. :func:`in_batch_contrastive_loss`
is the other objective the book's checkpoint was trained with (sentence pairs, the other
sentences of the batch as negatives). Used in
``book/pretraining.ipynb``, which writes the masking and the training loop on the page.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import PreTrainedTokenizerBase

__all__ = [
    "IGNORE_INDEX",
    "mask_tokens",
    "masking_shares",
    "masked_lm_loss",
    "top_k_predictions",
    "token_counts",
    "unigram_cross_entropy",
    "in_batch_contrastive_loss",
    "captured_transformers_log",
]

#: The label of a position the loss ignores (``F.cross_entropy``'s default ``ignore_index``).
IGNORE_INDEX = -100


def _check_share(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")


def mask_tokens(
    input_ids: torch.Tensor,
    special_tokens_mask: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    mlm_probability: float = 0.15,
    mask_share: float = 0.8,
    random_share: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: return ``(inputs, labels)`` for a batch of token ids.

    Each position that ``special_tokens_mask`` leaves free (it must mark ``[CLS]``,
    ``[SEP]`` **and padding**, as ``tokenizer.pad`` does) is chosen with probability
    ``mlm_probability``. Of the chosen positions, a share ``mask_share`` becomes
    ``mask_token_id``, a share ``random_share`` a token drawn uniformly from the
    vocabulary, and the rest keep their token. ``labels`` holds the original id at the
    chosen positions and -100 (:data:`IGNORE_INDEX`) elsewhere. ``input_ids`` is not
    modified.

    >>> ids = torch.tensor([[101, 2023, 2003, 102]])
    >>> inputs, labels = mask_tokens(ids, torch.tensor([[1, 0, 0, 1]]), mask_token_id=103,
    ...                              vocab_size=30522, mlm_probability=1.0, mask_share=1.0, random_share=0.0)
    >>> inputs.tolist(), labels.tolist()
    ([[101, 103, 103, 102]], [[-100, 2023, 2003, -100]])
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point():
        raise TypeError("input_ids must be an integer tensor of token ids")
    if not isinstance(special_tokens_mask, torch.Tensor) or special_tokens_mask.shape != input_ids.shape:
        raise ValueError(
            f"special_tokens_mask must be a tensor of the same shape as input_ids {tuple(input_ids.shape)}; "
            "get it with tokenizer(..., return_special_tokens_mask=True) and tokenizer.pad"
        )
    for name, value in [("mlm_probability", mlm_probability), ("mask_share", mask_share),
                        ("random_share", random_share)]:
        _check_share(name, value)
    if mask_share + random_share > 1.0 + 1e-9:
        raise ValueError(f"mask_share + random_share must not exceed 1, got {mask_share} + {random_share}")
    if vocab_size < 1 or not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id must be a token id below vocab_size={vocab_size}, got {mask_token_id}")
    free = ~special_tokens_mask.bool()
    chosen = (torch.rand(input_ids.shape, generator=generator) < mlm_probability) & free
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)
    draw = torch.rand(input_ids.shape, generator=generator)  # one draw decides [MASK], random or unchanged
    to_mask = chosen & (draw < mask_share)
    to_random = chosen & (draw >= mask_share) & (draw < mask_share + random_share)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    inputs = torch.where(to_mask, mask_token_id, input_ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


def masking_shares(original_ids: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor,
                   mask_token_id: int, candidates: torch.Tensor | None = None) -> dict[str, float]:
    """How a masking came out: the share of positions chosen, and of those, masked, replaced or kept.

    ``chosen`` is the share of ``candidates`` (a boolean tensor of the positions that
    could be chosen; all positions when ``None``) whose label is not -100. Among the
    chosen positions, ``mask`` counts those now holding ``mask_token_id``, ``random``
    those holding another token than the original, and ``unchanged`` the rest (a random
    draw that happens to give back the original token counts as unchanged).
    """
    if not (original_ids.shape == inputs.shape == labels.shape):
        raise ValueError(
            f"original_ids, inputs and labels must have one shape, got "
            f"{tuple(original_ids.shape)}, {tuple(inputs.shape)}, {tuple(labels.shape)}"
        )
    candidates = torch.ones_like(labels, dtype=torch.bool) if candidates is None else candidates.bool()
    chosen = labels != IGNORE_INDEX
    n_chosen = int(chosen.sum())
    if n_chosen == 0:
        raise ValueError("no position was chosen (every label is -100): nothing to measure")
    masked = chosen & (inputs == mask_token_id)
    unchanged = chosen & (inputs == original_ids)
    random = chosen & ~masked & ~unchanged
    return {
        "chosen": n_chosen / int(candidates.sum()),
        "mask": int(masked.sum()) / n_chosen,
        "random": int(random.sum()) / n_chosen,
        "unchanged": int(unchanged.sum()) / n_chosen,
    }


def masked_lm_loss(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of a ``BertForMaskedLM`` at the chosen positions (labels not -100) only.

    The same value as ``model(input_ids, attention_mask=..., labels=labels).loss``, but the
    output layer, a matrix as large as the vocabulary, runs only at the chosen 15% of
    positions instead of at every position.
    """
    if labels.shape != input_ids.shape:
        raise ValueError(f"labels {tuple(labels.shape)} must have the shape of input_ids {tuple(input_ids.shape)}")
    chosen = labels != IGNORE_INDEX
    if not bool(chosen.any()):
        raise ValueError("no position has a label (every label is -100): there is nothing to predict")
    hidden = model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    logits = model.cls(hidden[chosen])  # [chosen positions, vocabulary]
    return F.cross_entropy(logits.float(), labels[chosen])


@torch.no_grad()
def top_k_predictions(model: nn.Module, tokenizer: PreTrainedTokenizerBase, text: str,
                      k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable tokens for the one ``[MASK]`` in ``text``, with their probabilities.

    >>> top_k_predictions(model, tokenizer, "the film is [MASK].")  # doctest: +SKIP
    [('good', 0.08), ...]
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    encoded = tokenizer(text, return_tensors="pt")
    where = (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten()
    if len(where) != 1:
        raise ValueError(f"text must hold exactly one {tokenizer.mask_token}, found {len(where)} in {text!r}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = model(**{name: t.to(device) for name, t in encoded.items()}).logits[0, where[0]].float()
    model.train(was_training)
    probabilities, ids = torch.softmax(logits, dim=-1).topk(k)
    return [(tokenizer.convert_ids_to_tokens(int(i)), float(p)) for i, p in zip(ids, probabilities, strict=True)]


def token_counts(sequences: Sequence[Sequence[int]], vocab_size: int,
                 exclude: Sequence[int] = ()) -> torch.Tensor:
    """How often each token id occurs in ``sequences`` (a tensor of ``vocab_size`` counts), ``exclude`` left out."""
    if not sequences:
        raise ValueError("no sequences to count")
    ids = torch.cat([torch.as_tensor(list(s), dtype=torch.long) for s in sequences])
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"token ids must lie in 0..{vocab_size - 1}, found {int(ids.min())}..{int(ids.max())}")
    counts = torch.bincount(ids, minlength=vocab_size).double()
    counts[list(exclude)] = 0
    return counts


def unigram_cross_entropy(counts: torch.Tensor, targets: torch.Tensor, smoothing: float = 1.0) -> float:
    """Loss of predicting every masked token by its frequency alone, ignoring the context.

    ``counts`` are token counts from the training text (:func:`token_counts`); each
    token's probability is its count plus ``smoothing`` (add-one by default, so that no
    token has probability 0), divided by the total. Returns the mean of
    ``-log p(target)`` over ``targets`` (the ids to predict, -100 entries left out): the
    cross-entropy a masked-LM must beat to show that it uses the context.
    """
    if smoothing <= 0:
        raise ValueError(f"smoothing must be positive, got {smoothing}")
    targets = targets[targets != IGNORE_INDEX]
    if targets.numel() == 0:
        raise ValueError("no targets to score (every entry is -100)")
    log_p = torch.log(counts.double() + smoothing) - math.log(float(counts.sum()) + smoothing * counts.numel())
    return float(-log_p[targets].mean())


def in_batch_contrastive_loss(anchors: torch.Tensor, partners: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """Cross-entropy over scaled cosine similarities: row ``i`` of ``anchors`` must pick row ``i`` of ``partners``.

    ``anchors`` and ``partners`` are ``[batch, d]`` sentence embeddings of paired
    sentences; every other sentence of the batch serves as a negative. This is the loss
    sentence-transformers calls multiple-negatives ranking loss (``scale=20`` is its
    default), with which all-MiniLM-L6-v2 was trained on its sentence pairs.
    """
    if anchors.ndim != 2 or anchors.shape != partners.shape:
        raise ValueError(f"anchors and partners must both be [batch, d] of the same shape, got {tuple(anchors.shape)} "
                         f"and {tuple(partners.shape)}")
    if anchors.shape[0] < 2:
        raise ValueError("an in-batch loss needs at least 2 pairs (the others are the negatives)")
    similarities = F.normalize(anchors, dim=-1) @ F.normalize(partners, dim=-1).T
    return F.cross_entropy(scale * similarities, torch.arange(anchors.shape[0], device=anchors.device))


@contextlib.contextmanager
def captured_transformers_log(level: int = logging.WARNING) -> Iterator[io.StringIO]:
    """Collect what ``transformers`` logs at ``level`` and above into a ``StringIO``, printing nothing.

    ``companion.setup`` silences transformers' warnings; inside this block they are
    recorded instead (terminal colour codes removed), for a chapter to print the part
    it discusses, such as the load report of a checkpoint without a masked-LM head.
    """
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger = transformers.logging.get_logger()  # the library's root logger
    old_level, old_propagate = transformers.logging.get_verbosity(), logger.propagate
    saved_handlers = list(logger.handlers)
    for existing in saved_handlers:
        logger.removeHandler(existing)
    logger.addHandler(handler)
    logger.propagate = False
    transformers.logging.set_verbosity(level)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        for existing in saved_handlers:
            logger.addHandler(existing)
        logger.propagate = old_propagate
        transformers.logging.set_verbosity(old_level)
        text = re.sub(r"\x1b\[[0-9;]*m", "", buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()
        buffer.write(text)
