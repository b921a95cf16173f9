"""Word alignments from cross-attention: the part the translation pipeline needs (`return_alignments`).

A core file (saved with the model, so a folder's pipeline aligns without this package); the file tools
(`hf_seq2seq_attn.tools.alignment`: `align`, Pharaoh output, AER) build on it.

Attention *is* a soft alignment: when the decoder produces target token t it reads the source through the
weights `attn_weights[t, :]`. This module turns the attention behind a generated hypothesis into links
between source and target **words**:

1. The attention of the hypothesis that was returned: greedy rows as they are; beam search rows picked
   step by step through `beam_indices` (the beam each token was expanded from), so a hypothesis gets the
   weights its own prefix produced, not those of whichever beam sat in its slot. Heads are averaged, or
   one head is chosen.
2. Tokens to words. Each token gets the span of text it adds when the token sequence is decoded one token
   at a time; the word it belongs to is the whitespace-separated word holding the first non-space
   character of that span. This works alike for the three tokenizer kinds of this package (BPE with
   Metaspace `▁` word starts, word-level, char-level) and any tokenizer whose decoding of a prefix is a
   prefix of the decoding. A token that adds only whitespace (a lone `▁`, a space character) joins the
   next word, as the Metaspace marker starts a word. Special tokens (`</s>`, `<pad>`, `<s>`) belong to no
   word; on the target side `<unk>` neither (it is not in the translation text), on the source side it
   stands for the user's word and counts.
3. Tokens to words in the matrix: `soft[j][i]` = the mean over the target tokens of word j of the summed
   weight on the source tokens of word i. Rows therefore sum to at most 1 (the rest went to `</s>`).
4. Hard links: each target word is linked to the source word it attends to most (`argmax` of its row).

[`align`] does it all for a list of sentences; [`alignment_from_attention`] does steps 2-4 for one
hypothesis whose attention you already have (the translation pipeline uses it); [`alignment_error_rate`]
scores links against a reference (Och & Ney 2003).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Alignment:
    """One translation and its word alignment to the source.

    Attributes:
        translation (`str`): the decoded hypothesis (special tokens removed).
        source_words (`list[str]`): the source sentence split at whitespace.
        target_words (`list[str]`): the translation split at whitespace.
        pairs (`list[tuple[int, int]]`): hard links `(i, j)`, source word i to target word j, sorted.
        soft (`list[list[float]]`): `(target words, source words)` attention mass, see the module docstring.
    """

    translation: str
    source_words: list[str]
    target_words: list[str]
    pairs: list[tuple[int, int]] = field(default_factory=list)
    soft: list[list[float]] = field(default_factory=list)

    def pharaoh(self) -> str:
        """The links in Pharaoh / Moses format: `"0-0 1-2 ..."` (source index `-` target index)."""
        return " ".join(f"{i}-{j}" for i, j in self.pairs)


# --------------------------------------------------------------------------------------------
# Tokens to words
# --------------------------------------------------------------------------------------------
def token_words(tokenizer: Any, ids: Sequence[int], drop_ids: set[int]) -> tuple[list[str], list[int | None]]:
    """Split the decoding of `ids` into words and say which word each token belongs to.

    Args:
        tokenizer: a Hugging Face tokenizer (`decode`).
        ids: token ids of one sequence, `(L,)`.
        drop_ids: ids that belong to no word (special tokens); they are left out of the decoding too.

    Returns:
        `(words, word_of_token)`: the whitespace-separated words of the decoded text, and for each of the
        L tokens the index of its word, or None.
    """
    kept = [token for token in ids if token not in drop_ids]
    # ends[k] = length of the text decoded from the first k kept tokens
    ends = [0]
    for k in range(1, len(kept) + 1):
        prefix = tokenizer.decode(kept[:k], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        ends.append(max(len(prefix), ends[-1]))
    text = tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    word_at = np.full(len(text) + 1, -1, dtype=np.int64)  # word index of each non-space character
    words = text.split()
    position = 0
    for index, word in enumerate(words):
        start = text.index(word, position)
        word_at[start : start + len(word)] = index
        position = start + len(word)

    kept_words: list[int | None] = []
    for k in range(len(kept)):
        span = word_at[ends[k] : min(ends[k + 1], len(text))]
        inside = span[span >= 0]
        kept_words.append(int(inside[0]) if inside.size else None)
    # Whitespace-only tokens (a lone "▁", a space character) join the following word.
    following: int | None = None
    for k in range(len(kept) - 1, -1, -1):
        if kept_words[k] is None:
            kept_words[k] = following
        else:
            following = kept_words[k]

    word_of_token: list[int | None] = []
    kept_iter = iter(kept_words)
    for token in ids:
        word_of_token.append(None if token in drop_ids else next(kept_iter))
    return words, word_of_token


def _special_ids(tokenizer: Any) -> set[int]:
    return {int(i) for i in tokenizer.all_special_ids}


def _structural_ids(tokenizer: Any) -> set[int]:
    """Special tokens that never stand for a word of the user's text: everything but `<unk>`."""
    return _special_ids(tokenizer) - {tokenizer.unk_token_id}


# --------------------------------------------------------------------------------------------
# Attention to alignment
# --------------------------------------------------------------------------------------------
def select_head(weights: torch.Tensor | np.ndarray, head: int | None) -> np.ndarray:
    """`(T, N, S)` attention of one hypothesis to `(T, S)`: the mean over heads, or head `head`."""
    array = (
        weights.detach().cpu().double().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    )
    if array.ndim != 3:
        raise ValueError(f"Expected attention weights of shape (T, N, S), got {tuple(array.shape)}.")
    num_heads = array.shape[1]
    if head is None:
        return array.mean(axis=1).astype(np.float64)
    if not -num_heads <= head < num_heads:
        raise ValueError(
            f"head={head} does not exist: the model has {num_heads} head(s) (0..{num_heads - 1})."
        )
    return array[:, head].astype(np.float64)


def merge_to_words(
    weights: np.ndarray,
    source_word_of_token: Sequence[int | None],
    target_word_of_token: Sequence[int | None],
    num_source_words: int,
    num_target_words: int,
) -> np.ndarray:
    """Token attention `(T, S)` to word attention `(target words, source words)`.

    Source tokens of a word are summed (attention mass on the word), target tokens of a word are averaged
    (each row is a distribution, so is their mean). Tokens mapped to None are left out.
    """
    soft = np.zeros((num_target_words, num_source_words), dtype=np.float64)
    counts = np.zeros(num_target_words, dtype=np.float64)
    for t, j in enumerate(target_word_of_token):
        if j is None:
            continue
        counts[j] += 1
        for s, i in enumerate(source_word_of_token):
            if i is not None:
                soft[j, i] += weights[t, s]
    return soft / np.maximum(counts, 1.0)[:, None]


def hard_links(soft: np.ndarray) -> list[tuple[int, int]]:
    """Link each target word j to its most-attended source word: sorted `(i, j)` pairs."""
    pairs = []
    for j, row in enumerate(soft):
        if row.size and row.max() > 0:
            pairs.append((int(row.argmax()), j))
    return sorted(pairs)


def alignment_from_attention(
    tokenizer: Any,
    source_ids: Sequence[int],
    output_ids: Sequence[int],
    weights: torch.Tensor | np.ndarray,
    head: int | None = None,
    source: str | None = None,
) -> Alignment:
    """The word alignment of one hypothesis from its attention.

    Args:
        tokenizer: the model's tokenizer.
        source_ids: the source token ids `(S,)` without padding (`</s>` included).
        output_ids: the generated ids `(T,)` without the decoder start token, up to the first `</s>`.
        weights: `(T', N, S')` with `T' >= T`, `S' >= S` (extra rows/columns, e.g. padding, are ignored).
        head: average the heads (None) or use this one.
        source: the source text; when given and it has as many words as the decoded source, its words
            are reported (the decoding may differ in spelling, e.g. after NFKC normalisation or `<unk>`).

    Returns:
        [`Alignment`].
    """
    source_ids, output_ids = [int(i) for i in source_ids], [int(i) for i in output_ids]
    attention = select_head(weights, head)[: len(output_ids), : len(source_ids)]  # (T, S)
    source_words, source_map = token_words(tokenizer, source_ids, _structural_ids(tokenizer))
    if source is not None and len(source.split()) == len(source_words):
        source_words = source.split()
    target_words, target_map = token_words(tokenizer, output_ids, _special_ids(tokenizer))
    soft = merge_to_words(attention, source_map, target_map, len(source_words), len(target_words))
    translation = tokenizer.decode(output_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return Alignment(
        translation=translation,
        source_words=source_words,
        target_words=target_words,
        pairs=hard_links(soft),
        soft=soft.tolist(),
    )


def hypothesis_attention(output: Any) -> torch.Tensor:
    """Cross-attention behind each returned sequence of `generate(output_attentions=True, return_dict_in_generate=True)`.

    `output.cross_attentions` is a tuple over steps of a tuple over layers of `(rows, N, 1, S)`, rows
    being `B * num_beams` in beam search. Row t of a returned sequence is read from the beam that
    generated its token t (`output.beam_indices[r, t]`); greedy search and sampling keep rows in place.

    Returns:
        `(R, steps, N, S)` for the R returned sequences (`output.sequences` rows); steps after a
        sequence ended hold zeros in beam search and the padding steps' weights otherwise.
    """
    if not output.cross_attentions:
        raise ValueError(
            "No cross-attention in the generate() output: call it with output_attentions=True and "
            "return_dict_in_generate=True."
        )
    steps = torch.stack(
        [step[-1][:, :, 0, :] for step in output.cross_attentions], dim=1
    )  # (rows, steps, N, S)
    beam_indices = getattr(output, "beam_indices", None)
    if beam_indices is None:
        return steps
    beam_indices = beam_indices.long()  # (R, steps'), -1 after a sequence ended
    length = beam_indices.shape[1]
    rows = beam_indices.clamp(min=0)
    picked = steps[rows, torch.arange(length, device=rows.device)[None, :]]  # (R, steps', N, S)
    picked = picked.masked_fill((beam_indices < 0)[:, :, None, None], 0.0)
    return picked


def generated_ids(sequence: Sequence[int], eos_ids: set[int], pad_id: int | None) -> list[int]:
    """The generated ids of one `generate()` row: without the start token, up to and including `</s>`."""
    ids = [int(token) for token in sequence[1:]]
    end = next((k + 1 for k, token in enumerate(ids) if token in eos_ids), None)
    if end is not None:
        return ids[:end]
    while ids and pad_id is not None and ids[-1] == pad_id:  # cut by max_new_tokens
        ids.pop()
    return ids


def eos_ids(model: Any) -> set[int]:
    """The ids that end a hypothesis: the generation config's `eos_token_id` (else the config's), as a set."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None:
        return set()
    return set(eos) if isinstance(eos, list) else {eos}
