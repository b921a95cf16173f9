"""Helpers that tests import: a tiny model config and random padded batches."""

import torch

from hf_seq2seq_attn import Seq2SeqAttnConfig


def make_config(**overrides) -> Seq2SeqAttnConfig:
    """A model small enough that every test takes well under a second per forward."""
    bidirectional = overrides.get("bidirectional", True)
    values = dict(
        vocab_size=23,
        embedding_size=8,
        encoder_hidden_size=8 if bidirectional else 16,
        decoder_hidden_size=16,
        attention_size=16,
        embedding_dropout=0.0,
        readout_dropout=0.0,
    )
    values.update(overrides)
    return Seq2SeqAttnConfig(**values)


def padded_batch(lengths, vocab_size=23, pad=0, eos=2, generator=None):
    """Random right-padded source ids `(B, max(lengths))` ending in eos, ids >= 4 otherwise."""
    batch = torch.full((len(lengths), max(lengths)), pad, dtype=torch.long)
    for row, length in enumerate(lengths):
        batch[row, : length - 1] = torch.randint(4, vocab_size, (length - 1,), generator=generator)
        batch[row, length - 1] = eos
    return batch
