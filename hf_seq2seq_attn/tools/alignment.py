"""Word alignments for files of sentences: [`align`], Pharaoh / Moses `i-j` output, and the alignment error
rate against a reference (Och & Ney 2003).

The steps from a hypothesis's attention to word links (beam-aware attention rows, tokens to words, the soft
matrix, hard links) live in the core, [`hf_seq2seq_attn.core.alignment_seq2seq_attn`], because the
translation pipeline of a saved model needs them too; they are re-exported here, so one import serves.
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
