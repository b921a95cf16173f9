"""Offline evaluation metrics: BLEU / chrF for translation, WER / PER / exact match for G2P.

BLEU and chrF call `sacrebleu` directly with its defaults (13a tokenisation for BLEU), so scores match
the `sacrebleu` command line. We do not go through the `evaluate` library's loader: it fetches the
sacrebleu metric script from the Hugging Face Hub at run time and so fails offline.

The G2P metrics accept several references per item (e.g. the alternative CMUdict pronunciations of a
word); an item counts as correct if it matches any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import sacrebleu

logger = logging.getLogger(__name__)


def _check_lengths(predictions: Sequence[object], references: Sequence[object]) -> None:
    """Raise `ValueError` unless both lists are non-empty and of equal length."""
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} predictions but {len(references)} references; "
            "pass exactly one reference entry per prediction, in the same order."
        )
    if not predictions:
        raise ValueError("Got no predictions: pass at least one prediction/reference pair.")


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100) with sacrebleu defaults (13a tokenisation, `exp` smoothing, cased).

    Args:
        predictions (`list[str]`): detokenized system outputs.
        references (`list[str]`): one detokenized reference per prediction.
    """
    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_bleu(predictions, [references]).score)


def corpus_chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF (0-100) with sacrebleu defaults (character 6-grams, beta 2, no word n-grams).

    Args:
        predictions (`list[str]`): detokenized system outputs.
        references (`list[str]`): one detokenized reference per prediction.
    """
    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_chrf(predictions, [references]).score)


def translation_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Return `{"bleu": ..., "chrf": ...}` for a translation test set (both 0-100)."""
    return {"bleu": corpus_bleu(predictions, references), "chrf": corpus_chrf(predictions, references)}


def levenshtein_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Minimum number of insertions, deletions and substitutions turning `a` into `b`.

    Works on any sequences: strings (characters) or lists of symbols (phonemes).
    Two-row dynamic programme, O(len(a) * len(b)) time and O(len(b)) memory.
    """
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, start=1):
        current = [i]
        for j, item_b in enumerate(b, start=1):
            current.append(
                min(
                    previous[j] + 1,  # delete item_a
                    current[j - 1] + 1,  # insert item_b
                    previous[j - 1] + (item_a != item_b),  # substitute (free when equal)
                )
            )
        previous = current
    return previous[-1]


def _normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


def _reference_alternatives(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Turn each reference entry into a non-empty list of alternatives (a bare string means one)."""
    alternatives = []
    for index, entry in enumerate(references):
        options = [entry] if isinstance(entry, str) else list(entry)
        if not options:
            raise ValueError(f"Reference entry {index} lists no accepted reference; give at least one.")
        alternatives.append(options)
    return alternatives


def word_error_rate(predictions: list[str], references: list[list[str]]) -> float:
    """Percentage of items whose prediction equals none of its accepted references (G2P "WER").

    Whitespace is normalised first (runs of spaces collapse, ends are stripped).

    Args:
        predictions (`list[str]`): one prediction per item, e.g. `"K AE1 T"`.
        references (`list[list[str]]`): the accepted references of each item; a bare string is one reference.
    """
    _check_lengths(predictions, references)
    errors = 0
    for prediction, options in zip(predictions, _reference_alternatives(references), strict=True):
        accepted = {_normalize_whitespace(option) for option in options}
        errors += _normalize_whitespace(prediction) not in accepted
    return 100.0 * errors / len(predictions)


def _closest_reference(symbols: list[str], options: list[list[str]]) -> tuple[int, int]:
    """Return `(distance, length)` of the option closest to `symbols`; ties go to the first option."""
    distances = [levenshtein_distance(symbols, option) for option in options]
    best = distances.index(min(distances))
    return distances[best], len(options[best])


def phoneme_error_rate(predictions: list[str], references: list[list[str]]) -> float:
    """Symbol-level error rate (percentage) against the closest accepted reference of each item.

    For each item, the closest reference is the one at the smallest Levenshtein distance over
    whitespace-split symbols (ties go to the first listed). The rate is the sum of those distances
    divided by the sum of the closest references' lengths, so long items weigh more than short ones.

    Args:
        predictions (`list[str]`): space-separated symbols, e.g. `"K AE1 T"`.
        references (`list[list[str]]`): the accepted references of each item; a bare string is one reference.
    """
    _check_lengths(predictions, references)
    total_distance = 0
    total_length = 0
    for prediction, options in zip(predictions, _reference_alternatives(references), strict=True):
        distance, length = _closest_reference(prediction.split(), [option.split() for option in options])
        total_distance += distance
        total_length += length
    if total_length == 0:
        raise ValueError("All closest references are empty, so the phoneme error rate is undefined.")
    return 100.0 * total_distance / total_length


def exact_match(predictions: list[str], references: list[str], normalize_whitespace: bool = False) -> float:
    """Percentage of predictions identical to their reference.

    Comparison is exact (spaces matter, which suits character-level tasks) unless
    `normalize_whitespace=True`, which collapses runs of whitespace and strips the ends first.
    """
    _check_lengths(predictions, references)
    if normalize_whitespace:
        predictions = [_normalize_whitespace(text) for text in predictions]
        references = [_normalize_whitespace(text) for text in references]
    matches = sum(
        prediction == reference for prediction, reference in zip(predictions, references, strict=True)
    )
    return 100.0 * matches / len(predictions)


# --------------------------------------------------------------------------------------------
# Metrics by task
# --------------------------------------------------------------------------------------------
TASKS = ("translation", "g2p")


def task_metrics(task: str, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """The metrics of a task; `references[i]` lists the accepted outputs of item i (the first is canonical).

    translation: BLEU and chrF against the canonical reference. g2p: WER and PER against the closest accepted
    pronunciation, and exact match against the canonical one.
    """
    if task == "translation":
        return translation_metrics(predictions, [accepted[0] for accepted in references])
    if task == "g2p":
        return {
            "wer": word_error_rate(predictions, references),
            "per": phoneme_error_rate(predictions, references),
            "exact_match": exact_match(
                predictions, [accepted[0] for accepted in references], normalize_whitespace=True
            ),
        }
    raise ValueError(f"task must be one of {TASKS}; got {task!r}.")
