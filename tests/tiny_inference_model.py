"""A tiny saved model folder shared by the inference, pipeline and script tests (untrained is fine)."""

from __future__ import annotations

import torch

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core.tokenization_seq2seq_attn import train_tokenizer

PAIRS = [
    ("hola mundo", "hello world"),
    ("el gato negro", "the black cat"),
    ("buenos dias", "good morning"),
    ("el perro come", "the dog eats"),
    ("gracias amigo", "thanks friend"),
]
SOURCES = [source for source, _ in PAIRS]


def build_tiny_model(seed: int = 0, **config_overrides):
    """An untrained model and a word tokenizer trained on both sides of `PAIRS`."""
    tokenizer = train_tokenizer(
        [text for pair in PAIRS for text in pair], kind="word", vocab_size=100, min_frequency=1
    )
    torch.manual_seed(seed)
    values = dict(vocab_size=len(tokenizer), embedding_size=8, encoder_hidden_size=8, decoder_hidden_size=16)
    values.update(config_overrides)
    model = Seq2SeqAttnForConditionalGeneration(Seq2SeqAttnConfig(**values)).eval()
    model.generation_config.max_new_tokens = 8
    return model, tokenizer


def save_tiny_model(folder, **config_overrides) -> str:
    """Save `build_tiny_model()` (model and tokenizer) to `folder` and return its path as a string."""
    model, tokenizer = build_tiny_model(**config_overrides)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
