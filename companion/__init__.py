"""Companion package of *Transformers in Practice*.

One small module per idea, in the order the book meets them:

- :mod:`companion.env` -- ``setup()``: seeds, device, versions, Colab (every chapter);
- :mod:`companion.data` -- the Rotten Tomatoes snippets, offline, split by movie;
- :mod:`companion.models` -- the pre-trained checkpoint, label names, freezing, saving;
- :mod:`companion.attention` -- scaled dot-product and multi-head self-attention, masks;
- :mod:`companion.encoder` -- positions, layer normalization, a BERT encoder from scratch;
- :mod:`companion.widgets` -- attention maps and the interactive attention explorer;
- :mod:`companion.diagrams` -- drawn diagrams: encoder block, pooling, heads, padding;
- :mod:`companion.batching` -- tokenization, dynamic padding, length-grouped batches;
- :mod:`companion.training` -- optimiser, schedule, ``train_epoch``, ``evaluate``, ``fit``;
- :mod:`companion.lora` -- fewer trainable parameters: LoRA from scratch, BitFit, byte counts;
- :mod:`companion.questions` -- the TREC question-classification data, offline, stratified;
- :mod:`companion.imbalance` -- class weights and a weighted-loss classifier;
- :mod:`companion.triage` -- routing and prioritising messages with two classifiers;
- :mod:`companion.distributed` -- Accelerate around the loop: several processes or GPUs;
- :mod:`companion.finetune` -- the walkthrough's fine-tune as a command-line program;
- :mod:`companion.records` -- the measured records the chapters read (speed, full split, times);
- :mod:`companion.book` -- the book's own structure (chapters, repository address).

Modules are imported by name (``from companion.data import load_rotten_tomatoes``), so
``import companion`` stays light.
"""

__all__ = ["setup", "__version__"]
#: The package's version, written only here: pyproject.toml reads it, the setup cell of every
#: chapter installs the release tagged ``v`` + this (tools/setup_cell.py writes it there).
__version__ = "0.1.0"


def __getattr__(name: str):
    """``companion.setup`` is :func:`companion.env.setup`, imported (with torch) on first use."""
    if name == "setup":
        from companion.env import setup

        return setup
    raise AttributeError(f"module 'companion' has no attribute {name!r}")
