"""Grapheme-to-phoneme the way speech front ends use it: a lexicon first, a trained model for the rest.

- [`load_lexicon`]: a CMUdict-format pronunciation file (`WORD  P1 P2 ...`, `WORD(2)` variants, `;;;`
  comment lines, `# ...` comments to the end of a line) as `{WORD: [pronunciation, ...]}`.
- [`normalize_word`]: what the model is given for an input word, or why the word is skipped.
- [`G2P`]: `G2P.from_pretrained(folder).predict(words, n_best=3, lexicon=lexicon)`.
- [`main`]: `seq2seq-attn g2p --model DIR [--lexicon FILE] [--n_best K] [--input FILE]`.

How the model sees a word matches how the `g2p` recipes train it (`data.cmudict_g2p_splits`): its
lowercase letters `a`-`z` separated by spaces as the source (`"hello"` -> `"h e l l o"`), phonemes
separated by spaces as the target (`"HH AH0 L OW1"` with stress, `"HH AH L OW"` without).

Input normalisation (documented behaviour, never a crash):
- Empty words / empty lines: skipped with a warning.
- Surrounding punctuation is stripped (`"hello,"` -> `hello`, `"(yes)"` -> `yes`).
- Typographic apostrophes (`’` `‘` `ʼ`) are read as `'`, for the lexicon and the model alike.
- The lexicon is asked first for the word as written (uppercased, so `don't` and `don’t` find `DON'T`),
  then for its normalised letters.
- For the model, accents are folded (`café` -> `cafe`, NFKD without combining marks), letters are
  lowercased, and apostrophes, hyphens and periods inside the word are dropped (`don't` -> `dont`,
  `x-ray` -> `xray`, `a.m.` -> `am`).
- Words with digits (`b2b`, `1984`) are skipped with a warning: spell numbers out first (text
  normalisation is the front end's job, and the recipe saw no digits).
- Words with other characters once folded (non-Latin letters such as `привет` or `東京`, symbols
  such as `&`) are skipped with a warning: the model only knows `a`-`z`.
- An empty pronunciation from the model (it ended at once) is returned as it is, with a warning naming
  the word.

Probabilities: for model predictions, the probability of the whole phoneme sequence under the model,
`exp(sum of the log-probabilities of its tokens, </s> included)`, from beam search with
`num_return_sequences=n_best` and `output_scores=True`; **not** renormalised over the n-best, so a list's
probabilities sum to at most 1 and the rest is the mass of the hypotheses not returned. Lists are
sorted by that probability (beam search ranks by length-normalised score, which can order them
differently). Lexicon answers have probability 1.0 each, and every variant of a known word is returned
(whatever `n_best`), in lexicon order.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from .options import add_generation_arguments, add_model_arguments

logger = logging.getLogger(__name__)

# Typographic apostrophes (right / left single quotation mark, modifier letter apostrophe) read as `'`:
# lexicons spell DON'T with the ASCII one, word processors and some keyboards type the others.
APOSTROPHES = str.maketrans(dict.fromkeys("\u2019\u2018\u02bc", "'"))
# Dropped inside a word for the model (after APOSTROPHES).
INNER_PUNCTUATION = frozenset("'-‐‑.")
# A `#` that starts a field begins a comment running to the end of the line (cmudict.dict:
# `aalborg AO1 L B AO0 R G # place, danish`); one inside a word (`C#`) is part of the word.
COMMENT = re.compile(r"(?:^|\s)#")
LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")

Pronunciations = list[tuple[str, float]]


# --------------------------------------------------------------------------------------------
# Lexicon
# --------------------------------------------------------------------------------------------
def _lexicon_lines(path: str) -> list[str]:
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # the classic cmudict-0.7b file is Latin-1
    return text.splitlines()


def load_lexicon(path: str) -> dict[str, list[str]]:
    """Read a CMUdict-format lexicon.

    Format: one entry per line, `WORD  P1 P2 ...` (any whitespace between fields); `WORD(2)`, `WORD(3)`
    are variants of `WORD`; lines starting with `;;;` are comments, and so is everything from a `#` that
    starts a field to the end of the line (the `cmudict` package's notes such as `# place, danish`; a `#`
    inside a word, as in `C#`, is kept); blank lines are ignored.
    Words are matched case-insensitively (stored uppercase, typographic apostrophes as `'`).

    Returns:
        `{WORD: ["P1 P2 ...", ...]}`, variants in file order, duplicates dropped.

    Raises:
        `FileNotFoundError`: no such file.
        `ValueError`: a line with a word but no phonemes, naming the line.
    """
    lexicon: dict[str, list[str]] = {}
    for number, line in enumerate(_lexicon_lines(path), start=1):
        stripped = COMMENT.split(line, maxsplit=1)[0].strip()
        if not stripped or stripped.startswith(";;;"):
            continue
        fields = stripped.split()
        if len(fields) < 2:
            raise ValueError(
                f"{path}:{number}: {stripped!r} has a word but no phonemes; expected `WORD  P1 P2 ...` "
                "(CMUdict format)."
            )
        word = fields[0]
        if word.endswith(")") and "(" in word:
            base, _, variant = word[:-1].rpartition("(")
            if base and variant.isdigit():
                word = base
        phones = " ".join(fields[1:])
        variants = lexicon.setdefault(word.translate(APOSTROPHES).upper(), [])
        if phones not in variants:
            variants.append(phones)
    return lexicon


# --------------------------------------------------------------------------------------------
# Input words
# --------------------------------------------------------------------------------------------
def _strip_punctuation(word: str) -> str:
    """Remove punctuation and symbols from both ends of `word`."""
    start, end = 0, len(word)
    while start < end and unicodedata.category(word[start])[0] in "PS":
        start += 1
    while end > start and unicodedata.category(word[end - 1])[0] in "PS":
        end -= 1
    return word[start:end]


def _word_core(word: str) -> str:
    """`word` without surrounding punctuation and with ASCII apostrophes: what the lexicon is asked for, and
    what the model's letters are made from (one place, so both see the same word)."""
    return _strip_punctuation(word.strip().translate(APOSTROPHES))


def normalize_word(word: str) -> tuple[str | None, str]:
    """The letters the model is given for `word`, or None and the reason it is skipped.

    Returns:
        `(letters, "")`, e.g. `("cafe", "")` for `"Café,"`, or `(None, reason)`.
    """
    core = _word_core(word)
    if not core:
        return None, "no letters" if word.strip() else "empty"
    folded = "".join(c for c in unicodedata.normalize("NFKD", core) if not unicodedata.combining(c))
    letters = "".join(c for c in folded.lower() if c not in INNER_PUNCTUATION)
    if any(c.isdigit() for c in letters):
        return None, "contains digits (spell numbers out first)"
    odd = sorted({c for c in letters if c not in LETTERS})
    if odd or not letters:
        return None, f"characters the model does not know ({''.join(odd)!r}; it knows a-z)"
    return letters, ""


def model_source(letters: str) -> str:
    """The model input for normalised letters: `"hello"` -> `"h e l l o"` (as in `cmudict_g2p_splits`)."""
    return " ".join(letters)


def _lexicon_entry(word: str, letters: str | None, lexicon: dict[str, list[str]]) -> list[str] | None:
    for key in (_word_core(word).upper(), (letters or "").upper()):
        if key and key in lexicon:
            return lexicon[key]
    return None


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
def _sequence_log_probs(output: Any, normalize: bool, eos_ids: set[int]) -> list[float]:
    """Sum of the chosen tokens' log-probabilities per returned sequence, up to and including `</s>`."""
    import torch  # here, not at the top: `seq2seq-attn g2p --help` must not load torch

    from ..core.modeling_seq2seq_attn import transition_scores

    transition = transition_scores(
        output.sequences, output.scores, getattr(output, "beam_indices", None), normalize
    )  # (R, steps)
    generated = output.sequences[:, 1:][:, : transition.shape[1]]  # (R, steps)
    is_eos = torch.zeros_like(generated, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= generated == eos
    before_end = (is_eos.long().cumsum(dim=1) - is_eos.long()) == 0  # up to and including the first eos
    return transition.masked_fill(~before_end, 0.0).double().sum(dim=1).tolist()


class G2P:
    """Pronounce words with a lexicon and a trained G2P model (see the module docstring for the rules).

    Args:
        model: a Seq2SeqAttn model trained by the `g2p` or `g2p-stress` recipe (letters -> phonemes).
        tokenizer: its tokenizer (word-level over letters and phonemes).

    Example:
        >>> g2p = G2P.from_pretrained("outputs/g2p-stress")
        >>> g2p.predict(["hello", "zyzzyva"], n_best=2, lexicon=load_lexicon("cmudict.dict"))
        [[('HH AH0 L OW1', 1.0), ('HH EH0 L OW1', 1.0)], [('Z IH1 Z IH0 V AH0', 0.61), ('Z AY1 Z IH0 V AH0', 0.12)]]
    """

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model.eval()
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str = "cpu") -> G2P:
        """Load a saved G2P model folder (see `inference.load_model_and_tokenizer`)."""
        from .inference import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(name_or_path, device=device)
        return cls(model, tokenizer)

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        return set(eos) if isinstance(eos, list) else {eos}

    def pronounce(
        self,
        letters: Sequence[str],
        n_best: int = 1,
        num_beams: int | None = None,
        batch_size: int = 64,
        max_new_tokens: int | None = None,
    ) -> list[Pronunciations]:
        """Model pronunciations of normalised words (`a`-`z` only, see [`normalize_word`]), best first."""
        import torch

        if n_best < 1:
            raise ValueError(f"n_best must be >= 1, got {n_best}.")
        beams = max(n_best, num_beams or self.model.generation_config.num_beams or 1)
        results: list[Pronunciations] = []
        for start in range(0, len(letters), batch_size):
            chunk = [model_source(word) for word in letters[start : start + batch_size]]
            batch = self.tokenizer(chunk, padding=True, padding_side="right", return_tensors="pt")
            batch = batch.to(self.model.device)
            with torch.no_grad():
                output = self.model.generate(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    num_beams=beams,
                    num_return_sequences=n_best,
                    do_sample=False,
                    max_new_tokens=max_new_tokens or 2 * batch["input_ids"].shape[1] + 10,
                    output_scores=True,
                    return_dict_in_generate=True,
                )
            log_probs = _sequence_log_probs(output, normalize=beams == 1, eos_ids=self._eos_ids())
            texts = self.tokenizer.batch_decode(output.sequences, skip_special_tokens=True)
            for item in range(len(chunk)):
                rows = range(item * n_best, (item + 1) * n_best)
                hypotheses = [(texts[r].strip(), math.exp(log_probs[r])) for r in rows]
                results.append(sorted(hypotheses, key=lambda pair: pair[1], reverse=True))
        return results

    def predict(
        self,
        words: Sequence[str],
        n_best: int = 1,
        lexicon: dict[str, list[str]] | None = None,
        num_beams: int | None = None,
        batch_size: int = 64,
        max_new_tokens: int | None = None,
    ) -> list[Pronunciations]:
        """Pronounce `words`: from `lexicon` when it has the word, from the model otherwise.

        Args:
            words (`list[str]`): one word per item, as written (see the module docstring for normalisation).
            n_best (`int`, defaults to 1): model hypotheses per word.
            lexicon (`dict`, *optional*): from [`load_lexicon`].
            num_beams (`int`, *optional*): beam width, at least `n_best`; defaults to the model's generation
                config (the recipes save 5).
            batch_size (`int`, defaults to 64): words per `generate()` call.
            max_new_tokens (`int`, *optional*): defaults to `2 * S + 10` for a batch's longest word of S tokens.

        Returns:
            One list per word of `(phonemes, probability)`, best first; an empty list for a skipped word
            (a warning says why). An empty pronunciation predicted by the model is kept, with a warning.
        """
        if isinstance(words, str):
            raise TypeError("`words` must be a list of strings; wrap a single word as [word].")
        results: list[Pronunciations] = [[] for _ in words]
        to_model: dict[str, list[int]] = {}
        for index, word in enumerate(words):
            if not isinstance(word, str):
                raise TypeError(f"`words[{index}]` is a {type(word).__name__}, expected str.")
            letters, reason = normalize_word(word)
            known = _lexicon_entry(word, letters, lexicon) if lexicon else None
            if known is not None:
                results[index] = [(phones, 1.0) for phones in known]
            elif letters is None:
                logger.warning("Skipping word %d %r: %s.", index + 1, word, reason)
            else:
                to_model.setdefault(letters, []).append(index)
        unique = list(to_model)
        for letters, predicted in zip(
            unique, self.pronounce(unique, n_best, num_beams, batch_size, max_new_tokens), strict=True
        ):
            empty = sum(not phones for phones, _ in predicted)
            for index in to_model[letters]:
                results[index] = list(predicted)
                if empty:  # the model ended at once: say so rather than print a blank pronunciation
                    logger.warning(
                        "Word %d %r: the model predicted an empty pronunciation%s (</s> first); is it "
                        "trained for words like this one?",
                        index + 1,
                        words[index],
                        f" ({empty} of its {len(predicted)} best)" if len(predicted) > 1 else "",
                    )
        return results


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
EPILOG = """examples:
  echo "hello world" | seq2seq-attn g2p --model outputs/g2p-stress
  seq2seq-attn g2p --model outputs/g2p-stress --lexicon cmudict.dict --input words.txt
  seq2seq-attn g2p --model outputs/g2p --n_best 3 --input words.txt > prons.tsv

input: UTF-8 text, one or more words per line (split at whitespace); output: one line per
pronunciation, `word<TAB>phonemes`, plus `<TAB>probability` when --n_best > 1, in input order.
Lexicon words (CMUdict format: `WORD  P1 P2 ...`, `WORD(2)` variants, `;;;` and `# ...` comments) are
answered from the lexicon, every variant, probability 1.0; the model predicts the others.
Probabilities are the model's probability of the whole pronunciation, not renormalised over the n-best.
Normalisation: surrounding punctuation is stripped, accents folded (café -> cafe), ’ ‘ ʼ read as ',
inner ' - . dropped (don't -> dont; the lexicon is asked for DON'T first). Skipped with a warning on
stderr: empty lines, words with digits (spell numbers out first), words with non-Latin letters or
symbols. An empty pronunciation from the model is printed with a warning.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq-attn g2p",
        description="Pronounce words: CMUdict-style lexicon first, a trained grapheme-to-phoneme model for the rest.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(
        parser, model_help="G2P model folder (trained with --recipe g2p or g2p-stress)", backend=False
    )
    parser.add_argument("--lexicon", help="CMUdict-format pronunciation file answered first")
    parser.add_argument("--input", help="text file of words (default: standard input)")
    add_generation_arguments(
        parser,
        ("n_best", "num_beams", "batch_size"),
        {
            "n_best": {"help": "model pronunciations per word, with probabilities"},
            "num_beams": {"default": None, "help": "beam width (default: the model's, >= n_best)"},
            "batch_size": {"default": 64, "help": "words per generate() call"},
        },
    )
    return parser


def _input_words(lines: Iterable[str]) -> list[str]:
    words: list[str] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            logger.warning("Skipping line %d: it is empty.", number)
        words.extend(fields)
    return words


def _read_input(path: str | None) -> list[str]:
    if path is None:
        return _input_words(sys.stdin)
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: byte {error.start} is not UTF-8; re-encode the file as UTF-8.") from None
    return _input_words(text.splitlines())


def main(argv: list[str] | None = None) -> int:
    """`seq2seq-attn g2p ...`: returns 0, or 2 with `error: ...` on stderr for a user mistake."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="warning: %(message)s", level=logging.WARNING, stream=sys.stderr)
    try:
        if args.n_best < 1:
            raise ValueError(f"--n_best must be >= 1, got {args.n_best}.")
        if args.num_beams is not None and args.num_beams < args.n_best:
            raise ValueError(f"--num_beams {args.num_beams} is smaller than --n_best {args.n_best}.")
        lexicon = load_lexicon(args.lexicon) if args.lexicon else None
        words = _read_input(args.input)
        g2p = G2P.from_pretrained(args.model, device=args.device)
        results = g2p.predict(
            words, n_best=args.n_best, lexicon=lexicon, num_beams=args.num_beams, batch_size=args.batch_size
        )
    except (ValueError, FileNotFoundError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for word, pronunciations in zip(words, results, strict=True):
        for phones, probability in pronunciations:
            print(f"{word}\t{phones}\t{probability:.4f}" if args.n_best > 1 else f"{word}\t{phones}")
    return 0


__all__ = ["G2P", "load_lexicon", "main", "model_source", "normalize_word"]
