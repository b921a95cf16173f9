"""Shared fixtures: a tiny config, fixed seeds, offline Hub."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Training writes its corpus's Arrow cache under HF_DATASETS_CACHE: keep the suite's runs (and the
# subprocesses they start, which inherit this) out of the user's cache.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="hf_seq2seq_attn_tests_datasets_")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402

from hf_seq2seq_attn import Seq2SeqAttnConfig  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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


@pytest.fixture
def tiny_config() -> Seq2SeqAttnConfig:
    return make_config()


def padded_batch(lengths, vocab_size=23, pad=0, eos=2, generator=None):
    """Random right-padded source ids `(B, max(lengths))` ending in eos, ids >= 4 otherwise."""
    batch = torch.full((len(lengths), max(lengths)), pad, dtype=torch.long)
    for row, length in enumerate(lengths):
        batch[row, : length - 1] = torch.randint(4, vocab_size, (length - 1,), generator=generator)
        batch[row, length - 1] = eos
    return batch
