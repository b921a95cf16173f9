"""Tokenizer training, encoding/decoding round trips, save/load, and config checks."""

import gzip
import json
import os
from itertools import islice
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from hf_seq2seq_attn.core.tokenization_seq2seq_attn import (
    SPECIAL_TOKENS,
    check_tokenizer_matches_config,
    load_tokenizer,
    train_tokenizer,
)
from hf_seq2seq_attn.training.data import bundled_path

ENGLISH = [
    "the cat sat on the mat.",
    "the dog sat on the log.",
    "a cat and a dog, on a mat!",
    "the mat is on the floor.",
]
PHONEMES = ["K AE1 T", "D AO1 G", "M AE1 T", "L AO1 G", "K AE1 T S"]
CHARACTERS = ["hello world", "  two  spaces ", "tab\there", "héllo ñandú", "end . of , it 's !"]


def _round_trip(tokenizer, text: str) -> str:
    return tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)


@pytest.fixture(scope="module")
def bible_texts() -> list[str]:
    with gzip.open(bundled_path("train"), "rt", encoding="utf-8") as handle:  # ships with the package
        rows = [json.loads(line) for line in islice(handle, 2000)]
    return [row["source"] for row in rows] + [row["target"] for row in rows]


@pytest.fixture(scope="module")
def bible_tokenizer(bible_texts):
    return train_tokenizer(bible_texts, kind="bpe", vocab_size=2000)


@pytest.fixture(scope="module")
def tokenizers_by_kind():
    return {
        "bpe": train_tokenizer(ENGLISH, kind="bpe", vocab_size=200, min_frequency=1),
        "word": train_tokenizer(PHONEMES, kind="word", min_frequency=1),
        "char": train_tokenizer(CHARACTERS, kind="char", min_frequency=1),
    }


@pytest.mark.parametrize("kind", ["bpe", "word", "char"])
def test_special_token_ids(tokenizers_by_kind, kind):
    tokenizer = tokenizers_by_kind[kind]
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2, 3]
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.unk_token_id == 3
    assert tokenizer.padding_side == "right"


@pytest.mark.parametrize("kind", ["bpe", "word", "char"])
def test_every_sequence_ends_with_eos_and_labels_too(tokenizers_by_kind, kind):
    tokenizer = tokenizers_by_kind[kind]
    source = {"bpe": ENGLISH[0], "word": PHONEMES[0], "char": CHARACTERS[0]}[kind]
    target = {"bpe": ENGLISH[1], "word": PHONEMES[1], "char": CHARACTERS[2]}[kind]
    encoded = tokenizer(source, text_target=target)
    assert encoded["input_ids"][-1] == 2
    assert encoded["labels"][-1] == 2
    assert encoded["input_ids"].count(2) == 1
    assert (
        1 not in encoded["input_ids"]
    )  # no bos on the source: the decoder start token is added by the model


@pytest.mark.parametrize("text", ENGLISH + ["the cat  sat,  on the mat.", "the mat , the cat . a dog !"])
def test_bpe_decode_reproduces_text(tokenizers_by_kind, text):
    tokenizer = tokenizers_by_kind["bpe"]
    decoded = _round_trip(tokenizer, text)
    assert decoded == text
    assert "▁" not in decoded


def test_bpe_splits_rare_words_into_pieces_that_decode_without_spaces(tokenizers_by_kind):
    tokenizer = tokenizers_by_kind["bpe"]
    pieces = tokenizer.tokenize("cats")
    assert len(pieces) > 1  # "cats" never occurs whole in the training text
    assert _round_trip(tokenizer, "cats") == "cats"


@pytest.mark.parametrize("text", PHONEMES)
def test_word_decode_joins_symbols_with_single_spaces(tokenizers_by_kind, text):
    tokenizer = tokenizers_by_kind["word"]
    assert len(tokenizer(text)["input_ids"]) == len(text.split()) + 1
    assert _round_trip(tokenizer, text) == text
    assert _round_trip(tokenizer, "  K   AE1 T ") == "K AE1 T"


def test_word_decode_keeps_punctuation_symbols_apart():
    graphemes = ["o ' b r i e n", "d o n ' t", "a . b . c", "x , y !"]
    tokenizer = train_tokenizer(graphemes, kind="word", min_frequency=1)
    for text in graphemes:
        assert _round_trip(tokenizer, text) == text


@pytest.mark.parametrize("text", CHARACTERS)
def test_char_decode_reproduces_text_exactly(tokenizers_by_kind, text):
    tokenizer = tokenizers_by_kind["char"]
    assert len(tokenizer(text)["input_ids"]) == len(text) + 1  # one id per character, spaces included
    assert _round_trip(tokenizer, text) == text


def test_char_unknown_characters_become_unk(tokenizers_by_kind):
    tokenizer = tokenizers_by_kind["char"]
    ids = tokenizer("hz")["input_ids"]
    assert ids[1] == tokenizer.unk_token_id
    assert _round_trip(tokenizer, "hz") == "h"


def test_lowercase_option():
    tokenizer = train_tokenizer(["Hello World"], kind="word", min_frequency=1, lowercase=True)
    assert _round_trip(tokenizer, "HELLO world") == "hello world"


def test_batch_padding_is_right_and_uses_pad_id(tokenizers_by_kind):
    tokenizer = tokenizers_by_kind["word"]
    batch = tokenizer(["K AE1 T S", "D AO1 G"], padding=True)
    assert batch["input_ids"][1][-1] == 0
    assert batch["attention_mask"][1] == [1, 1, 1, 1, 0]


@pytest.mark.parametrize("kind", ["bpe", "word", "char"])
def test_save_and_reload_gives_identical_ids(tokenizers_by_kind, kind, tmp_path):
    tokenizer = tokenizers_by_kind[kind]
    tokenizer.save_pretrained(tmp_path)
    for reloaded in (AutoTokenizer.from_pretrained(tmp_path), load_tokenizer(str(tmp_path))):
        for text in ENGLISH + PHONEMES + CHARACTERS:
            assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
            assert _round_trip(reloaded, text) == _round_trip(tokenizer, text)
        assert reloaded("a", text_target="b")["labels"][-1] == 2
        assert reloaded.padding_side == "right"
        assert reloaded.model_max_length == 256
        assert (reloaded.pad_token_id, reloaded.bos_token_id, reloaded.eos_token_id) == (0, 1, 2)


def test_bible_bpe_round_trip(bible_tokenizer, bible_texts, tmp_path):
    assert len(bible_tokenizer) == 2000
    for text in bible_texts[:200] + bible_texts[-200:]:
        assert _round_trip(bible_tokenizer, text) == text
    bible_tokenizer.save_pretrained(tmp_path)
    reloaded = load_tokenizer(str(tmp_path))
    batch = bible_texts[:50]
    assert reloaded(batch)["input_ids"] == bible_tokenizer(batch)["input_ids"]
    encoded = bible_tokenizer(bible_texts[:8], text_target=bible_texts[2000:2008], padding=True)
    for labels in encoded["labels"]:
        unpadded = labels[: labels.index(0)] if 0 in labels else labels
        assert unpadded[-1] == 2
        assert 2 not in unpadded[:-1]


def test_model_max_length_truncates(bible_texts):
    tokenizer = train_tokenizer(bible_texts[:200], kind="char", model_max_length=16)
    ids = tokenizer(bible_texts[0], truncation=True)["input_ids"]
    assert len(ids) == 16
    assert ids[-1] == 2


def test_accepts_a_generator():
    tokenizer = train_tokenizer((line for line in PHONEMES), kind="word", min_frequency=1)
    assert "AE1" in tokenizer.get_vocab()


def test_unknown_kind_names_allowed_kinds():
    with pytest.raises(ValueError, match="'bpe', 'word', 'char'"):
        train_tokenizer(ENGLISH, kind="sentencepiece")


def test_empty_texts_raise():
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer([])
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer(iter(()))


def test_non_string_texts_raise():
    with pytest.raises(TypeError, match="one string"):
        train_tokenizer("a single string")
    with pytest.raises(TypeError, match="item 1"):
        train_tokenizer(["fine", 3], kind="word")


def test_too_small_vocab_raises():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(ENGLISH, vocab_size=4)


def test_load_tokenizer_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no_such_tokenizer"
    with pytest.raises(FileNotFoundError, match="no_such_tokenizer"):
        load_tokenizer(str(missing))
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        load_tokenizer(str(tmp_path))


def test_load_tokenizer_unknown_hub_id_offline():
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        pytest.skip("only checked offline, so that the test never touches the network")
    with pytest.raises(FileNotFoundError, match="someone/no-such-tokenizer"):
        load_tokenizer("someone/no-such-tokenizer")


def _config(**overrides) -> SimpleNamespace:
    values = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, vocab_size=100, decoder_vocab_size=None)
    values.update(overrides)
    return SimpleNamespace(**values)


def test_check_tokenizer_matches_config_accepts_matching(tokenizers_by_kind):
    tokenizer = tokenizers_by_kind["word"]
    check_tokenizer_matches_config(tokenizer, _config(vocab_size=len(tokenizer)))
    check_tokenizer_matches_config(tokenizer, _config(decoder_vocab_size=len(tokenizer)))
    # A duck-typed config without `decoder_vocab_size` is fine too.
    check_tokenizer_matches_config(
        tokenizer, SimpleNamespace(pad_token_id=0, bos_token_id=1, eos_token_id=2, vocab_size=50)
    )


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"pad_token_id": 5}, r"pad_token_id=0 differs from the config's pad_token_id=5"),
        ({"bos_token_id": 0}, r"bos_token_id=1 differs .* bos_token_id=0"),
        ({"eos_token_id": None}, r"eos_token_id=2 differs .* eos_token_id=None"),
        ({"vocab_size": 5}, r"vocab_size is 5"),
        ({"decoder_vocab_size": 6}, r"decoder_vocab_size is 6"),
    ],
)
def test_check_tokenizer_matches_config_raises(tokenizers_by_kind, overrides, pattern):
    tokenizer = tokenizers_by_kind["word"]
    assert 6 < len(tokenizer) <= 100
    with pytest.raises(ValueError, match=pattern):
        check_tokenizer_matches_config(tokenizer, _config(**overrides))
