"""Word alignments from cross-attention: Pharaoh / Moses `i-j` pairs and soft alignment matrices.

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

import json
from collections.abc import Sequence
from typing import Any

import torch

from ..core.alignment_seq2seq_attn import (  # the attention-to-words steps, re-exported: one import for users
    Alignment,
    alignment_from_attention,
    eos_ids,
    generated_ids,
    hard_links,
    hypothesis_attention,
    merge_to_words,
    select_head,
    token_words,
)
from .inference import default_max_new_tokens


def format_line(alignment: Alignment, soft: bool = False, decimals: int = 4) -> str:
    """`"translation ||| 0-0 1-2"`, plus `" ||| <soft matrix as JSON>"` when `soft` (rounded to `decimals`)."""
    line = f"{alignment.translation} ||| {alignment.pharaoh()}"
    if soft:
        rounded = [[round(value, decimals) for value in row] for row in alignment.soft]
        line += " ||| " + json.dumps(rounded, separators=(",", ":"))
    return line


@torch.no_grad()
def align(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    num_beams: int = 1,
    head: int | None = None,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    **generate_kwargs: Any,
) -> list[Alignment]:
    """Translate `sources` and align each translation to its source, word by word.

    Args:
        model: a Seq2SeqAttn model (any encoder-decoder whose `generate` returns `cross_attentions`).
        tokenizer: its tokenizer.
        sources (`list[str]`): the sentences.
        num_beams (`int`, defaults to 1): 1 = greedy; > 1 = beam search, aligned through `beam_indices`.
        head (`int`, *optional*): use this attention head; by default the heads are averaged.
        batch_size (`int`, defaults to 32): sentences per `generate()` call.
        max_new_tokens (`int`, *optional*): defaults to `2 * S + 10` for a batch's longest source of S tokens.
        **generate_kwargs: more `generate()` options (`length_penalty`, `do_sample`, ...);
            `num_return_sequences` must stay 1 (one alignment per source).

    Returns:
        One [`Alignment`] per source, in input order.

    Example:
        >>> for a in align(model, tokenizer, ["la casa verde"], num_beams=5):
        ...     print(format_line(a))
        the green house ||| 0-0 1-2 2-1
    """
    if isinstance(sources, str):
        raise TypeError("`sources` must be a list of strings; wrap a single sentence as [sentence].")
    if generate_kwargs.get("num_return_sequences", 1) != 1:
        raise ValueError("align() returns one alignment per source: leave num_return_sequences at 1.")
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    ends = eos_ids(model)
    pad_id = model.generation_config.pad_token_id
    results: list[Alignment] = []
    for start in range(0, len(sources), batch_size):
        batch_sources = list(sources[start : start + batch_size])
        encoded = tokenizer(batch_sources)["input_ids"]
        batch = tokenizer.pad({"input_ids": encoded}, padding=True, padding_side="right", return_tensors="pt")
        batch = batch.to(model.device)
        output = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            num_beams=num_beams,
            max_new_tokens=max_new_tokens or default_max_new_tokens(batch["input_ids"].shape[1]),
            output_attentions=True,
            return_dict_in_generate=True,
            **generate_kwargs,
        )
        attention = hypothesis_attention(output).float().cpu()  # (B, steps, N, S)
        for row, (source, source_ids) in enumerate(zip(batch_sources, encoded, strict=True)):
            output_ids = generated_ids(output.sequences[row].tolist(), ends, pad_id)
            results.append(
                alignment_from_attention(tokenizer, source_ids, output_ids, attention[row], head, source)
            )
    return results


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------
Links = set[tuple[int, int]] | Sequence[tuple[int, int]]


def parse_pharaoh(text: str) -> set[tuple[int, int]]:
    """`"0-0 1-2"` (also `"1p2"` possible links, read as plain links) to `{(0, 0), (1, 2)}`."""
    links = set()
    for item in text.split():
        left, _, right = item.replace("p", "-").partition("-")
        if not (left.isdigit() and right.isdigit()):
            raise ValueError(f"{item!r} is not a Pharaoh link `i-j` (source index, target index).")
        links.add((int(left), int(right)))
    return links


def alignment_error_rate(
    predicted: Sequence[Links], sure: Sequence[Links], possible: Sequence[Links] | None = None
) -> float:
    """Corpus-level alignment error rate (Och & Ney 2003): `1 - (|A∩S| + |A∩P|) / (|A| + |S|)`.

    Args:
        predicted: per sentence, the predicted links A.
        sure: per sentence, the sure reference links S.
        possible: per sentence, the possible links P (S is added to P); defaults to S.
    Returns:
        AER in [0, 1]; 0 when every predicted link is possible and every sure link is predicted.
    """
    if len(predicted) != len(sure) or (possible is not None and len(possible) != len(sure)):
        raise ValueError("predicted, sure (and possible) need one entry per sentence.")
    hits_sure = hits_possible = size_a = size_s = 0
    for index, (a_links, s_links) in enumerate(zip(predicted, sure, strict=True)):
        a, s = set(a_links), set(s_links)
        p = s | (set(possible[index]) if possible is not None else set())
        hits_sure += len(a & s)
        hits_possible += len(a & p)
        size_a += len(a)
        size_s += len(s)
    if size_a + size_s == 0:
        return 0.0
    return 1.0 - (hits_sure + hits_possible) / (size_a + size_s)


__all__ = [
    "Alignment",
    "align",
    "alignment_error_rate",
    "alignment_from_attention",
    "eos_ids",
    "format_line",
    "generated_ids",
    "hard_links",
    "hypothesis_attention",
    "merge_to_words",
    "parse_pharaoh",
    "select_head",
    "token_words",
]
