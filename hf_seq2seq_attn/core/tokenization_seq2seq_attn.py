"""Train and load tokenizers for Seq2SeqAttn models with the `tokenizers` library.

Three kinds of tokenizer are supported, all returning a `PreTrainedTokenizerFast`:

- `"bpe"`: NFKC-normalised byte-pair encoding with a Metaspace (`▁`) pre-tokenizer and decoder,
  so `decode(encode(text))` gives back the text's spacing (translation).
- `"word"`: one token per whitespace-separated symbol; decoding joins symbols with single spaces
  (grapheme-to-phoneme data where both sides are space-separated symbols).
- `"char"`: one token per character, spaces and tabs included; decoding concatenates, so in-vocabulary
  text comes back exactly (character-level tasks such as copy / reverse or raw-spelling G2P).

Every kind reserves the same special tokens at the same ids (`<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3),
matching the `Seq2SeqAttnConfig` defaults, and appends `</s>` to every encoded sequence, so
`tokenizer(sources, text_target=targets)` yields `labels` that end with the eos id.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<s>", "</s>", "<unk>")
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = SPECIAL_TOKENS
# Ids follow from the order in which the trainers add SPECIAL_TOKENS (first, in this order).
PAD_TOKEN_ID, BOS_TOKEN_ID, EOS_TOKEN_ID, UNK_TOKEN_ID = range(len(SPECIAL_TOKENS))

TOKENIZER_KINDS: tuple[str, ...] = ("bpe", "word", "char")


def _checked_texts(texts: Iterable[str]) -> Iterator[str]:
    """Return an iterator over `texts` that fails early on an empty input and on non-string items."""
    if isinstance(texts, str):
        raise TypeError("`texts` must be an iterable of strings (e.g. a list of sentences), not one string.")
    iterator = iter(texts)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError(
            "`texts` is empty: pass at least one training sentence (e.g. the source and target sides "
            "of the training split)."
        ) from None

    def generate() -> Iterator[str]:
        for index, text in enumerate(itertools.chain([first], iterator)):
            if not isinstance(text, str):
                raise TypeError(f"`texts` item {index} is a {type(text).__name__}, expected str.")
            yield text

    return generate()


def _unknown_kind_error(kind: str) -> ValueError:
    allowed = ", ".join(map(repr, TOKENIZER_KINDS))
    return ValueError(f"Unknown tokenizer kind {kind!r}; choose one of {allowed}.")


def _normalizer(kind: str, lowercase: bool) -> normalizers.Normalizer:
    """NFKC for BPE (folds compatibility forms); NFC elsewhere so that decoding stays faithful."""
    steps: list[normalizers.Normalizer] = [normalizers.NFKC() if kind == "bpe" else normalizers.NFC()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


def _build_tokenizer(kind: str, vocab_size: int, min_frequency: int) -> tuple[Tokenizer, trainers.Trainer]:
    """Return an untrained `tokenizers.Tokenizer` of the given kind and the trainer that fits it."""
    trainer_kwargs: dict[str, Any] = {
        "vocab_size": vocab_size,
        "min_frequency": min_frequency,
        "special_tokens": list(SPECIAL_TOKENS),
        "show_progress": False,
    }
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
        # Metaspace turns spaces into "▁" so the decoder can put them back exactly where they were.
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        return tokenizer, trainers.BpeTrainer(**trainer_kwargs)
    if kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        # No decoder: `tokenizers` then joins tokens with single spaces, which is what we want.
        return tokenizer, trainers.WordLevelTrainer(**trainer_kwargs)
    if kind == "char":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
        # `[\s\S]` rather than `.` so that newlines are characters too.
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
        return tokenizer, trainers.WordLevelTrainer(**trainer_kwargs)
    raise _unknown_kind_error(kind)


def _eos_post_processor() -> processors.TemplateProcessing:
    """Append `</s>` to every sequence (and to each side of a pair)."""
    return processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}",
        pair=f"$A {EOS_TOKEN} $B {EOS_TOKEN}",
        special_tokens=[(EOS_TOKEN, EOS_TOKEN_ID)],
    )


def _check_special_token_ids(tokenizer: Tokenizer) -> None:
    """Internal invariant: the trainers put SPECIAL_TOKENS first, in order."""
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS))), f"special token ids {ids} are not 0..3"


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "bpe",
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool = False,
    model_max_length: int = 256,
) -> PreTrainedTokenizerFast:
    """Train a tokenizer on `texts` and wrap it as a `PreTrainedTokenizerFast`.

    Args:
        texts (`Iterable[str]`):
            Training sentences; a generator is fine. For a shared vocabulary, pass both sides of the corpus.
        kind (`str`, defaults to `"bpe"`):
            `"bpe"`, `"word"` (whitespace-separated symbols) or `"char"` (every character, spaces included).
        vocab_size (`int`, defaults to 8000):
            Upper bound on the vocabulary size, the 4 special tokens included.
        min_frequency (`int`, defaults to 2):
            Minimum count for a merge (`"bpe"`) or a symbol (`"word"`, `"char"`) to enter the vocabulary.
        lowercase (`bool`, defaults to `False`):
            Lowercase the text before tokenizing (also at encoding time).
        model_max_length (`int`, defaults to 256):
            Stored on the tokenizer; used when `truncation=True` is passed without `max_length`.

    Returns:
        `PreTrainedTokenizerFast`: with `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3, right padding, and `</s>`
        appended to every sequence (including `labels` built from `text_target`).

    Example:
        >>> tokenizer = train_tokenizer(["a small corpus", "of two lines"], kind="char", min_frequency=1)
        >>> tokenizer("a small", text_target="two lines")["labels"][-1]
        2
    """
    if kind not in TOKENIZER_KINDS:
        raise _unknown_kind_error(kind)
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room beside the {len(SPECIAL_TOKENS)} special tokens; "
            "use a larger value (e.g. 8000 for BPE)."
        )
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}.")
    if model_max_length < 1:
        raise ValueError(f"model_max_length must be >= 1, got {model_max_length}.")

    checked = _checked_texts(texts)
    tokenizer, trainer = _build_tokenizer(kind, vocab_size, min_frequency)
    tokenizer.normalizer = _normalizer(kind, lowercase)
    tokenizer.train_from_iterator(checked, trainer=trainer)
    _check_special_token_ids(tokenizer)
    tokenizer.post_processor = _eos_post_processor()

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="right",
        model_max_length=model_max_length,
        # The default clean-up rewrites " ." as "." etc., which would break exact round trips.
        clean_up_tokenization_spaces=False,
    )
    logger.info("Trained a %s tokenizer with %d tokens (asked for at most %d).", kind, len(fast), vocab_size)
    return fast


def _has_tokenizer_files(folder: str) -> bool:
    return any(
        os.path.isfile(os.path.join(folder, name)) for name in ("tokenizer.json", "tokenizer_config.json")
    )


def _looks_like_local_path(name_or_path: str) -> bool:
    return os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")) or os.path.exists(name_or_path)


def _require_fast(tokenizer: Any, name_or_path: str) -> PreTrainedTokenizerFast:
    """Return `tokenizer` if it is backed by the `tokenizers` library, else raise `TypeError`."""
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TypeError(
            f"{name_or_path!r} holds a {type(tokenizer).__name__}, not a `tokenizers`-backed "
            "PreTrainedTokenizerFast; train a compatible one with `train_tokenizer(...)`."
        )
    return tokenizer


def _load_fast(name_or_path: str) -> PreTrainedTokenizerFast:
    # The `tokenizers` class itself, not `AutoTokenizer`: an `auto_map` in a stranger's folder is never
    # followed, so loading a tokenizer runs no code from it (and asks nothing).
    return PreTrainedTokenizerFast.from_pretrained(name_or_path, trust_remote_code=False)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with `save_pretrained` (a local folder) or cached from the Hub.

    Works offline (`HF_HUB_OFFLINE=1`): local folders never touch the network, and Hub ids are
    resolved from the local cache.

    Args:
        name_or_path (`str`):
            A folder holding `tokenizer.json` / `tokenizer_config.json`, or a Hub repo id.

    Raises:
        `FileNotFoundError`: when no tokenizer can be found at `name_or_path`.
        `TypeError`: when the tokenizer found is not backed by the `tokenizers` library.
    """
    path = os.path.expanduser(name_or_path)
    if os.path.isdir(path):
        if not _has_tokenizer_files(path):
            raise FileNotFoundError(
                f"The folder {path!r} holds no tokenizer (no tokenizer.json or tokenizer_config.json). "
                "Save one there with `tokenizer.save_pretrained(folder)`."
            )
        return _require_fast(_load_fast(path), path)
    if _looks_like_local_path(name_or_path):
        raise FileNotFoundError(
            f"No tokenizer folder at {path!r}. Check the path, or train one with `train_tokenizer(...)` "
            "and save it with `tokenizer.save_pretrained(folder)`."
        )
    try:
        tokenizer = _load_fast(name_or_path)
    except (OSError, ValueError) as err:  # ValueError: no tokenizer files found to build from
        offline = os.environ.get("HF_HUB_OFFLINE", "0")
        raise FileNotFoundError(
            f"Could not load a tokenizer from {name_or_path!r}: it is not a local folder and no copy was "
            f"found on the Hub or in its local cache (HF_HUB_OFFLINE={offline}). Pass the folder written "
            "by `tokenizer.save_pretrained(folder)`, or download the repo while online first."
        ) from err
    return _require_fast(tokenizer, name_or_path)


def check_tokenizer_matches_config(tokenizer: Any, config: Any) -> None:
    """Check that a tokenizer and a model config agree on special token ids and vocabulary size.

    Args:
        tokenizer:
            Any Hugging Face tokenizer (`pad_token_id`, `bos_token_id`, `eos_token_id`, `len()`).
        config:
            Any object with `pad_token_id`, `bos_token_id`, `eos_token_id`, `vocab_size` and, optionally,
            `decoder_vocab_size` (e.g. a `Seq2SeqAttnConfig`).

    Raises:
        `ValueError`: naming the first disagreement and how to fix it.
    """
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        tokenizer_id = getattr(tokenizer, name)
        config_id = getattr(config, name)
        if tokenizer_id != config_id:
            raise ValueError(
                f"The tokenizer's {name}={tokenizer_id} differs from the config's {name}={config_id}. "
                f"Build the config with {name}={tokenizer_id}, or use a tokenizer from `train_tokenizer` "
                "(pad=0, bos=1, eos=2)."
            )
    num_tokens = len(tokenizer)
    vocab_sizes = {
        "vocab_size": config.vocab_size,
        "decoder_vocab_size": getattr(config, "decoder_vocab_size", None) or config.vocab_size,
    }
    for name, size in vocab_sizes.items():
        if num_tokens > size:
            raise ValueError(
                f"The tokenizer has {num_tokens} tokens but the config's {name} is {size}, so some token "
                f"ids have no embedding. Build the config with {name}>={num_tokens} "
                f"(e.g. {name}=len(tokenizer)), or train a smaller tokenizer."
            )
