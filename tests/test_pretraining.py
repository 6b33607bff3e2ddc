"""companion.pretraining: BERT's masking, the masked-LM loss, top-k predictions, the unigram baseline."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling

from companion.pretraining import (
    IGNORE_INDEX,
    captured_transformers_log,
    in_batch_contrastive_loss,
    mask_tokens,
    masked_lm_loss,
    masking_shares,
    token_counts,
    top_k_predictions,
    unigram_cross_entropy,
)

MASK, VOCAB = 103, 30522


@pytest.fixture(scope="module")
def batch(tokenizer):
    texts = ["A gem of a film, funny and moving.", "Tedious, overlong and smug.", "Worth seeing twice."] * 200
    features = [tokenizer(t, return_special_tokens_mask=True) for t in texts]
    return tokenizer.pad(features, return_tensors="pt")


@pytest.fixture(scope="module")
def tiny_mlm():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return BertForMaskedLM(config).eval()


def masked(batch, **kwargs):
    return mask_tokens(batch["input_ids"], batch["special_tokens_mask"], mask_token_id=MASK, vocab_size=VOCAB,
                       generator=torch.Generator().manual_seed(0), **kwargs)


def test_shares_and_labels(batch):
    inputs, labels = masked(batch)
    free = ~batch["special_tokens_mask"].bool()
    shares = masking_shares(batch["input_ids"], inputs, labels, MASK, candidates=free)
    assert abs(shares["chosen"] - 0.15) < 0.01
    assert abs(shares["mask"] - 0.8) < 0.03 and abs(shares["random"] - 0.1) < 0.03
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], batch["input_ids"][chosen])
    assert not chosen[~free].any(), "special tokens and padding are never chosen"
    assert torch.equal(inputs[~chosen], batch["input_ids"][~chosen]), "positions not chosen keep their token"


def test_input_not_modified_and_seeded(batch):
    before = batch["input_ids"].clone()
    first, second = masked(batch), masked(batch)
    assert torch.equal(batch["input_ids"], before)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_extreme_shares(batch):
    inputs, labels = masked(batch, mlm_probability=1.0, mask_share=1.0, random_share=0.0)
    free = ~batch["special_tokens_mask"].bool()
    assert (labels[free] != IGNORE_INDEX).all() and (inputs[free] == MASK).all()
    inputs, labels = masked(batch, mlm_probability=1.0, mask_share=0.0, random_share=0.0)
    assert torch.equal(inputs, batch["input_ids"]) and (labels[free] != IGNORE_INDEX).all()


def test_agrees_with_transformers_collator(tokenizer, batch):
    real = batch["attention_mask"].bool()
    features = [{k: batch[k][i][real[i]].tolist() for k in ("input_ids", "special_tokens_mask")}
                for i in range(len(batch["input_ids"]))]
    theirs = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)(features)
    free = ~batch["special_tokens_mask"].bool()
    ours = masking_shares(batch["input_ids"], *masked(batch), MASK, candidates=free)
    other = masking_shares(batch["input_ids"], theirs["input_ids"], theirs["labels"], MASK, candidates=free)
    for key in ours:
        assert abs(ours[key] - other[key]) < 0.04, key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mlm_probability": 1.5}, "mlm_probability"), ({"mask_share": 0.9, "random_share": 0.2}, "must not exceed"),
     ({"random_share": -0.1}, "random_share")],
)
def test_bad_shares(batch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        masked(batch, **kwargs)


def test_bad_inputs(batch):
    with pytest.raises(ValueError, match="special_tokens_mask"):
        mask_tokens(batch["input_ids"], batch["special_tokens_mask"][:, :2], mask_token_id=MASK, vocab_size=VOCAB)
    with pytest.raises(TypeError, match="input_ids"):
        mask_tokens(batch["input_ids"].float(), batch["special_tokens_mask"], mask_token_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="mask_token_id"):
        mask_tokens(batch["input_ids"], batch["special_tokens_mask"], mask_token_id=VOCAB, vocab_size=VOCAB)


def test_masked_lm_loss_equals_model_loss(tiny_mlm, batch):
    inputs, labels = masked(batch)
    inputs, labels, attention = inputs[:8], labels[:8], batch["attention_mask"][:8]
    with torch.no_grad():
        ours = masked_lm_loss(tiny_mlm, inputs, attention, labels)
        theirs = tiny_mlm(input_ids=inputs, attention_mask=attention, labels=labels).loss
        logits = tiny_mlm(input_ids=inputs, attention_mask=attention).logits
    chosen = labels != IGNORE_INDEX
    by_hand = -torch.log_softmax(logits, dim=-1)[chosen].gather(1, labels[chosen][:, None]).mean()
    assert torch.allclose(ours, theirs, atol=1e-5) and torch.allclose(ours, by_hand, atol=1e-5)
    assert abs(ours.item() - math.log(VOCAB)) < 0.5, "an untrained model is about uniform"
    with pytest.raises(ValueError, match="no position"):
        masked_lm_loss(tiny_mlm, inputs, attention, torch.full_like(labels, IGNORE_INDEX))


def test_top_k_predictions(tiny_mlm, tokenizer):
    predictions = top_k_predictions(tiny_mlm, tokenizer, "the film is [MASK].", k=3)
    assert len(predictions) == 3 and all(isinstance(t, str) for t, _ in predictions)
    probabilities = [p for _, p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert not tiny_mlm.training
    with pytest.raises(ValueError, match="exactly one"):
        top_k_predictions(tiny_mlm, tokenizer, "no mask here")
    with pytest.raises(ValueError, match="exactly one"):
        top_k_predictions(tiny_mlm, tokenizer, "[MASK] and [MASK]")
    with pytest.raises(ValueError, match="k must"):
        top_k_predictions(tiny_mlm, tokenizer, "a [MASK].", k=0)


def test_unigram_cross_entropy():
    counts = token_counts([[5, 5, 5, 7], [7, 101]], vocab_size=10 + 100, exclude=[101])
    assert counts[5] == 3 and counts[7] == 2 and counts[101] == 0
    targets = torch.tensor([5, IGNORE_INDEX, 7])
    expected = -(math.log(4 / 115) + math.log(3 / 115)) / 2  # add-one: (count + 1) / (5 + 110)
    assert unigram_cross_entropy(counts, targets) == pytest.approx(expected)
    uniform = torch.zeros(VOCAB)
    assert unigram_cross_entropy(uniform, torch.tensor([3])) == pytest.approx(math.log(VOCAB))
    assert F.cross_entropy(torch.zeros(1, VOCAB), torch.tensor([3])).item() == pytest.approx(math.log(VOCAB), rel=1e-6)
    with pytest.raises(ValueError, match="no targets"):
        unigram_cross_entropy(counts, torch.tensor([IGNORE_INDEX]))
    with pytest.raises(ValueError, match="token ids"):
        token_counts([[1, 200]], vocab_size=10)
    with pytest.raises(ValueError, match="no sequences"):
        token_counts([], vocab_size=10)


def test_in_batch_contrastive_loss():
    partners = torch.eye(4)
    assert in_batch_contrastive_loss(partners, partners).item() < 1e-6, "each row picks its own partner"
    same = torch.ones(4, 3)
    assert in_batch_contrastive_loss(same, same).item() == pytest.approx(math.log(4)), "indistinguishable: ln(batch)"
    with pytest.raises(ValueError, match="same|both"):
        in_batch_contrastive_loss(torch.eye(4), torch.eye(3))
    with pytest.raises(ValueError, match="at least 2"):
        in_batch_contrastive_loss(torch.ones(1, 3), torch.ones(1, 3))


def test_captured_transformers_log_records_and_restores(capsys):
    import transformers

    before = transformers.logging.get_verbosity()
    with captured_transformers_log() as log:
        transformers.logging.get_logger("transformers.test").warning("\x1b[1mbold\x1b[0m and plain")
    assert log.getvalue().strip() == "bold and plain"
    assert transformers.logging.get_verbosity() == before
    captured = capsys.readouterr()
    assert "plain" not in captured.err and "plain" not in captured.out
