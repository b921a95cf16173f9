"""Attention explorer: type a sentence, watch which source tokens each output token looked at.

`seq2seq-attn explore --model DIR [--model DIR2]` opens a local web page (Gradio, the Hugging Face Spaces
convention) that translates what you type, greedy or with beam search and an n-best list, and draws the
cross-attention of the chosen hypothesis as an interactive heat-map (hover a cell: source token, output
token, weight), one head at a time or averaged, next to the word alignment derived from it and the
model's attention formula. With two models both are shown side by side for the same input. The same app
runs unchanged as a Hugging Face Space ([`write_space`], `--push_space`).

The page is built from pure functions that are tested without a browser:

- [`explore`]: one `generate()` call -> [`Exploration`]: source tokens, the hypotheses (n-best with
  scores) and the attention `(N, T, S)` behind each, beam hypotheses followed through `beam_indices`;
- [`head_matrix`], [`heatmap_html`]: one head (or the mean of the heads) as an HTML table whose rows are
  the output tokens and whose columns are the source tokens, with the coverage row under it
  ([`source_coverage`]: the column sums, the attention each source token received);
- [`alignment_html`]: the word alignment of [`hf_seq2seq_attn.core.alignment_seq2seq_attn`];
- [`formula_markdown`]: the score function (equation and paper from its class in the modeling file),
  decoder style and sizes read from the config;
- "What if" ([`hf_seq2seq_attn.explorer_whatif`]): the top-k tokens at an output step, and the translation
  re-decoded with another token forced there (`decoder_input_ids` of `generate()`);
- [`translate`], [`rerender`], [`change_model`], [`whatif_reset`], [`whatif_alternatives`],
  [`whatif_redecode`]: the page's event handlers, plain functions of the shared model cache and the
  components' values; [`build_app`] only lays out components and binds them.

Gradio is imported only by [`build_app`] and friends: `pip install 'hf_seq2seq_attn[app]'`.
"""

from __future__ import annotations

import argparse
import functools
import html
import importlib
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core.alignment_seq2seq_attn import alignment_from_attention, eos_ids
from .core.modeling_seq2seq_attn import ATTENTION_SCORES
from .explorer_whatif import TOP_K, Alternative, Redecoding, redecode, top_alternatives
from .tools.inference import (
    check_model_type,
    default_max_new_tokens,
    load_model_and_tokenizer,
    looks_like_path,
)

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'hf_seq2seq_attn[app]'"
# The page carries the README's formula table itself (a Space has no README of the package to link to).
FORMULA_TABLE_URL = "#formula-table"
# A tokenizer saved without `model_max_length` reports ~1e30; read at most this many source tokens then.
DEFAULT_MAX_SOURCE_TOKENS = 512
# Characters read from the text box; far more than any model reads, so only a paste of a book is clipped.
MAX_INPUT_CHARS = 20_000
MAX_BEAMS = 10
MAX_MODELS = 2


# --------------------------------------------------------------------------------------------
# Data behind the page (no gradio)
# --------------------------------------------------------------------------------------------
@dataclass
class Hypothesis:
    """One translation of the source and the attention that produced it.

    Attributes:
        text (`str`): the decoded translation (special tokens removed).
        token_ids (`list[int]`): the T generated ids, the final `</s>` included when generated.
        tokens (`list[str]`): the T generated tokens (`convert_ids_to_tokens`).
        score (`float`): mean log-probability per generated token (beam search's length-normalised score
            with `length_penalty=1`; the same quantity for greedy search).
        attention (`np.ndarray`): `(N, T, S)` float32; row t is the attention the decoder used when it
            produced token t. Each row sums to 1 over the S source tokens.
    """

    text: str
    token_ids: list[int]
    tokens: list[str]
    score: float
    attention: np.ndarray


@dataclass
class Exploration:
    """Everything the page shows for one input and one model.

    Attributes:
        source_ids (`list[int]`): the S source ids the model read (`</s>` included).
        source_tokens (`list[str]`): their tokens.
        hypotheses (`list[Hypothesis]`): best first; one for greedy search, `num_beams` for beam search.
        num_beams (`int`): 1 = greedy.
        notices (`list[str]`): what the user should know about the input (e.g. it was truncated).
        source_text (`str`): the text translated, when it was not truncated (used to name source words).
    """

    source_ids: list[int]
    source_tokens: list[str]
    hypotheses: list[Hypothesis]
    num_beams: int = 1
    notices: list[str] = field(default_factory=list)
    source_text: str | None = None

    @property
    def num_heads(self) -> int:
        return int(self.hypotheses[0].attention.shape[0]) if self.hypotheses else 1


def max_source_tokens(tokenizer: Any) -> int:
    """The longest source (in tokens, `</s>` included) the explorer feeds the model: the tokenizer's
    `model_max_length` (training's `--max_source_length`), or [`DEFAULT_MAX_SOURCE_TOKENS`] when unset."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit < 1 or limit > 100_000:
        return DEFAULT_MAX_SOURCE_TOKENS
    return limit


def encode_source(tokenizer: Any, text: str) -> tuple[list[int], list[str]]:
    """Token ids of `text`, truncated to [`max_source_tokens`] with `</s>` kept last, and notices.

    Returns:
        `(ids, notices)`: ids `(S,)`, and a sentence for the page when the text was clipped.
    """
    notices = []
    if len(text) > MAX_INPUT_CHARS:
        notices.append(
            f"The text has {len(text):,} characters; only the first {MAX_INPUT_CHARS:,} were read."
        )
        text = text[:MAX_INPUT_CHARS]
    ids = tokenizer(text)["input_ids"]
    limit = max_source_tokens(tokenizer)
    if len(ids) > limit:
        eos = tokenizer.eos_token_id
        tail = [eos] if eos is not None and ids[-1] == eos else []
        kept = ids[: limit - len(tail)] + tail
        notices.append(
            f"The text is {len(ids):,} tokens long; this model reads at most {limit} (its maximum source "
            f"length), so only the first {len(kept) - len(tail)} tokens were translated."
        )
        ids = kept
    return ids, notices


def _generated_length(ids: Sequence[int], eos_ids: set[int]) -> int:
    """Tokens up to and including the first `</s>` (all of them when none was generated)."""
    return next((k + 1 for k, token in enumerate(ids) if token in eos_ids), len(ids))


def step_attention(cross_attentions: Sequence[Sequence[torch.Tensor]], rows: Sequence[int]) -> np.ndarray:
    """Attention behind one returned sequence of `generate(output_attentions=True, return_dict_in_generate=True)`.

    Args:
        cross_attentions: tuple over steps of a 1-tuple of `(B * beams, N, 1, S)`.
        rows: for each of the T generated tokens, the row of the step's batch that produced it: the row
            itself in greedy search, `beam_indices[r, t]` in beam search (the beam that token t extended,
            flattened over the batch), so a hypothesis gets the weights its own prefix produced.
    Returns:
        `(N, T, S)` float32.
    """
    picked = [cross_attentions[t][-1][row, :, 0, :] for t, row in enumerate(rows)]  # T x (N, S)
    return torch.stack(picked, dim=1).float().cpu().numpy()  # (N, T, S)


def _check_explore_arguments(text: str, num_beams: int) -> None:
    """Raise for what [`explore`] cannot translate: a non-string, or a beam width outside 1..64."""
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}.")
    if not 1 <= num_beams <= 64:
        raise ValueError(f"num_beams must be between 1 and 64, got {num_beams}.")


def _generate(model: Any, source_ids: list[int], num_beams: int, max_new_tokens: int | None) -> Any:
    """One `generate()` call returning every hypothesis with its scores and cross-attention.

    Returns:
        The `generate` output: `sequences (num_beams, 1 + T)`, `scores`, `cross_attentions`, and for
        beam search `sequences_scores (num_beams,)` and `beam_indices (num_beams, T)`.
    """
    input_ids = torch.tensor([source_ids], device=model.device)  # (1, S)
    limit = max_new_tokens if max_new_tokens is not None else default_max_new_tokens(len(source_ids))
    if limit < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {limit}.")
    return model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        num_beams=num_beams,
        num_return_sequences=num_beams,
        do_sample=False,
        max_new_tokens=limit,
        output_attentions=True,
        output_scores=True,
        return_dict_in_generate=True,
        **({"length_penalty": 1.0} if num_beams > 1 else {}),
    )


def _greedy_rows(output: Any, r: int, eos_ids: set[int]) -> tuple[list[int], float]:
    """Batch rows behind sequence `r` of a greedy search (`r` at every step) and its mean log-probability."""
    generated = output.sequences[r, 1:].tolist()
    length = _generated_length(generated, eos_ids)
    log_probs = [torch.log_softmax(output.scores[t][r].float(), dim=-1)[generated[t]] for t in range(length)]
    score = float(torch.stack(log_probs).mean()) if log_probs else float("nan")
    return [r] * length, score


def _beam_rows(output: Any, r: int, eos_ids: set[int]) -> tuple[list[int], float]:
    """Batch rows behind sequence `r` of a beam search (its `beam_indices`, up to its first `</s>`) and
    its length-normalised score."""
    generated = output.sequences[r, 1:].tolist()
    rows = [int(i) for i in output.beam_indices[r].tolist() if i >= 0]  # -1 pads the steps after it ended
    length = min(len(rows), _generated_length(generated, eos_ids))
    return rows[:length], float(output.sequences_scores[r])


def _hypothesis(tokenizer: Any, output: Any, r: int, beam: bool, eos_ids: set[int]) -> Hypothesis | None:
    """Sequence `r` of a `generate` output as a [`Hypothesis`] (None when it generated no token)."""
    rows, score = (_beam_rows if beam else _greedy_rows)(output, r, eos_ids)
    ids = output.sequences[r, 1 : 1 + len(rows)].tolist()  # the T generated ids, one per row
    if not ids:
        return None
    return Hypothesis(
        text=tokenizer.decode(ids, skip_special_tokens=True),
        token_ids=ids,
        tokens=tokenizer.convert_ids_to_tokens(ids),
        score=score,
        attention=step_attention(output.cross_attentions, rows),
    )


@torch.no_grad()
def explore(
    model: Any,
    tokenizer: Any,
    text: str,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
) -> Exploration:
    """Translate `text` once and keep, for each returned hypothesis, the attention that produced it.

    Args:
        model: a [`Seq2SeqAttnForConditionalGeneration`] (or any encoder-decoder whose `generate` returns
            `cross_attentions`).
        tokenizer: its tokenizer.
        text (`str`): the source; clipped to the model's maximum source length (see [`encode_source`]).
        num_beams (`int`, defaults to 1): 1 = greedy search (one hypothesis); k > 1 = beam search returning
            all k hypotheses, best first.
        max_new_tokens (`int`, *optional*): defaults to `2 * S + 10`.

    Returns:
        [`Exploration`].
    """
    _check_explore_arguments(text, num_beams)
    source_ids, notices = encode_source(tokenizer, text)
    output = _generate(model, source_ids, num_beams, max_new_tokens)
    ends = eos_ids(model)
    found = (_hypothesis(tokenizer, output, r, num_beams > 1, ends) for r in range(output.sequences.shape[0]))
    return Exploration(
        source_ids=list(source_ids),
        source_tokens=tokenizer.convert_ids_to_tokens(source_ids),
        hypotheses=[hypothesis for hypothesis in found if hypothesis is not None],
        num_beams=num_beams,
        notices=notices,
        source_text=None if notices else text,
    )


def head_matrix(attention: np.ndarray, head: int | None = None) -> np.ndarray:
    """`(N, T, S)` attention to the `(T, S)` map of head `head` (0-based), or the mean of the heads (None)."""
    if attention.ndim != 3:
        raise ValueError(f"Expected attention of shape (N, T, S), got {tuple(attention.shape)}.")
    if head is None:
        return attention.mean(axis=0)
    if not 0 <= head < attention.shape[0]:
        raise ValueError(f"head={head} does not exist: the model has {attention.shape[0]} head(s).")
    return attention[head]


def head_choices(num_heads: int) -> list[tuple[str, int]]:
    """Choices of the head selector: `("average of N heads", -1)`, then `("head 1", 0)`, ..."""
    return [(f"average of {num_heads} heads", -1)] + [(f"head {n + 1}", n) for n in range(num_heads)]


def nbest_choices(exploration: Exploration) -> list[tuple[str, int]]:
    """Labels of the n-best list: `("1. the text   (score -0.41)", 0)`, best first."""
    return [
        (f"{rank + 1}. {hyp.text or '(empty)'}   (score {hyp.score:.3f})", rank)
        for rank, hyp in enumerate(exploration.hypotheses)
    ]


# --------------------------------------------------------------------------------------------
# HTML: heat-map and alignment
# --------------------------------------------------------------------------------------------
# The tooltip is pure CSS (`::after` showing the cell's `data-tip` on hover): gr.HTML does not run
# <script> tags, and no extra component or round trip to the server is needed per hover.
HEATMAP_CSS = """
.s2sa-heatmap { overflow: auto; max-height: 75vh; padding: 0 8em 3em 0; }
.s2sa-heatmap table.s2sa-table { border-collapse: collapse; font-size: 12px; line-height: 1.1; width: auto;
  margin: 0; border: none; }
.s2sa-heatmap table.s2sa-table th { font-weight: normal; padding: 1px 4px !important; white-space: nowrap;
  border: none !important; background: none; }
.s2sa-heatmap table.s2sa-table th.s2sa-src { writing-mode: vertical-rl; transform: rotate(180deg);
  text-align: left; vertical-align: bottom; }
.s2sa-heatmap table.s2sa-table th.s2sa-tgt { text-align: right; }
.s2sa-heatmap table.s2sa-table td { width: 18px; min-width: 18px; height: 18px; padding: 0 !important;
  background: rgba(8, 48, 107, var(--w));
  position: relative; border: 1px solid #eee !important; }
.s2sa-heatmap table.s2sa-table td:hover { outline: 2px solid #e4572e; z-index: 5; }
.s2sa-heatmap table.s2sa-table td:hover::after { content: attr(data-tip); position: absolute; left: 110%; top: 110%;
  white-space: pre; background: #222; color: #fff; padding: 3px 6px; border-radius: 3px; z-index: 10;
  font-size: 12px; pointer-events: none; }
.s2sa-heatmap tr:has(td:hover) th.s2sa-tgt { background: #ffe8a3; }
.s2sa-heatmap caption { caption-side: top; text-align: left; padding-bottom: 4px; color: #555; white-space: nowrap; }
.s2sa-align td, .s2sa-align th { padding: 1px 8px; text-align: left; }
.s2sa-heatmap table.s2sa-table tfoot td.s2sa-cov { height: auto; font-size: 10px; padding: 2px 0 !important;
  text-align: center; }
.s2sa-heatmap table.s2sa-table tfoot td.s2sa-cov span { writing-mode: vertical-rl; transform: rotate(180deg); }
.s2sa-heatmap table.s2sa-table tfoot th.s2sa-cov-label { text-align: right; font-style: italic; }
.s2sa-heatmap p.s2sa-cov-note { color: #555; font-size: 12px; margin: 4px 0 0 0; }
"""


COVERAGE_NOTE = (
    "Coverage: the total attention each source token received (the column sums above; Tu et al. 2016). "
    "Shaded against an even share, T/S = {share:.2f} here (1 when the translation is as long as the "
    "source): purple = less (a dropped word?), orange = more (a word translated twice?)."
)


def source_coverage(matrix: np.ndarray) -> np.ndarray:
    """`(T, S)` attention -> `(S,)` coverage: the attention each source token received over all T output
    tokens (Tu et al. 2016, the sum their coverage vector accumulates). It sums to T."""
    return matrix.sum(axis=0)  # (S,)


def _coverage_colour(value: float, share: float) -> str:
    """Background of a coverage cell: purple below the even share T/S (under-translated), orange above
    (over-translated), stronger the further from it, full at 0 and at twice the share.

    The share, not 1, is the reference: a translation twice as long as its source gives every word
    coverage ~2, and only departures from that say something about one word."""
    strength = min(abs(value / share - 1.0), 1.0) * 0.85 if share > 0 else 0.0
    rgb = "117, 112, 179" if value < share else "230, 97, 1"
    return f"rgba({rgb}, {strength:.3f})"


def _coverage_html(matrix: np.ndarray, source: Sequence[str]) -> str:
    """The `<tfoot>` row of [`source_coverage`] under the heat-map's columns (`source`: escaped tokens),
    and the note that explains it, placed after the table.

    Each cell shows the value (2 decimals), carries it in `data-coverage` (6 decimals) and as a hover tip."""
    share = matrix.shape[0] / max(matrix.shape[1], 1)  # T / S
    cells = "".join(
        f'<td class="s2sa-cov" data-coverage="{value:.6f}" data-tip="{token}: total attention {value:.3f}" '
        f'style="background: {_coverage_colour(value, share)}"><span>{value:.2f}</span></td>'
        for token, value in zip(source, source_coverage(matrix).tolist(), strict=True)
    )
    note = html.escape(COVERAGE_NOTE.format(share=share))
    return (
        f'<tfoot><tr class="s2sa-coverage"><th class="s2sa-cov-label">coverage</th>{cells}</tr></tfoot>'
        f'</table><p class="s2sa-cov-note">{note}</p>'
    )


def heatmap_html(
    matrix: np.ndarray,
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    caption: str = "",
    coverage: bool = False,
) -> str:
    """An interactive heat-map: one table row per output token, one column per source token.

    Args:
        matrix: `(T, S)` attention weights (rows = output tokens).
        source_tokens: the S column labels.
        target_tokens: the T row labels.
        caption: a line above the table.
        coverage (`bool`, defaults to `False`): add the [`source_coverage`] row under the columns
            (`<tfoot>`, one `td.s2sa-cov` per source token) and a line explaining it.

    Returns:
        HTML (a `<style>` block and a `<table>`). Cell (t, s) is the s-th `<td>` of the t-th body row; it
        carries its weight as the CSS variable `--w` (the colour: white 0 to dark blue 1) and a `data-tip`
        ("output ← source: weight") that a CSS tooltip shows on hover. Cells carry nothing else: a
        94 x 42 map is ~4,000 cells, and the browser's time grows with the markup (the table's
        headers name every row and column for screen readers).
    """
    num_targets, num_sources = matrix.shape
    if num_targets != len(target_tokens) or num_sources != len(source_tokens):
        raise ValueError(
            f"matrix {tuple(matrix.shape)} does not match {len(target_tokens)} target and "
            f"{len(source_tokens)} source tokens (rows = target, columns = source)."
        )
    source = [html.escape(token) for token in source_tokens]
    parts = [f"<style>{HEATMAP_CSS}</style>", '<div class="s2sa-heatmap">']
    parts.append(f'<table class="s2sa-table" data-rows="{num_targets}" data-cols="{num_sources}">')
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append("<thead><tr><th></th>")
    parts += [f'<th class="s2sa-src" title="{token}">{token}</th>' for token in source]
    parts.append("</tr></thead><tbody>")
    for t, target_token in enumerate(target_tokens):
        target = html.escape(target_token)
        parts.append(f'<tr class="s2sa-row"><th class="s2sa-tgt">{target}</th>')
        for s in range(num_sources):
            weight = float(matrix[t, s])
            tip = f"{target} ← {source[s]}: {weight:.3f}"
            parts.append(f'<td data-tip="{tip}" style="--w:{min(max(weight, 0.0), 1.0):.3f}"></td>')
        parts.append("</tr>")
    parts += ["</tbody>", _coverage_html(matrix, source) if coverage else "</table>", "</div>"]
    return "".join(parts)


def hypothesis_alignment(
    tokenizer: Any, exploration: Exploration, index: int = 0, head: int | None = None
) -> Any | None:
    """The word alignment of hypothesis `index` from its own attention (None without the alignment module)."""
    hypothesis = exploration.hypotheses[index]
    weights = np.ascontiguousarray(hypothesis.attention.transpose(1, 0, 2))  # (T, N, S)
    return alignment_from_attention(
        tokenizer,
        exploration.source_ids,
        hypothesis.token_ids,
        weights,
        head=head,
        source=exploration.source_text,
    )


def alignment_html(alignment: Any | None) -> str:
    """The hard word links (`Alignment.pairs`) as a small table plus their Pharaoh string."""
    if alignment is None:
        return "<p><em>Word alignments need <code>hf_seq2seq_attn.tools.alignment</code>, not in this version.</em></p>"
    if not alignment.pairs:
        return "<p><em>No word links (the translation has no words).</em></p>"
    rows = "".join(
        f"<tr><td>{html.escape(alignment.target_words[j])}</td><td>←</td>"
        f"<td>{html.escape(alignment.source_words[i])}</td><td><code>{i}-{j}</code></td></tr>"
        for i, j in sorted(alignment.pairs, key=lambda pair: pair[1])
    )
    return (
        '<div class="s2sa-align"><p>Word alignment (each output word linked to the source word it attends '
        f"to most): <code>{html.escape(alignment.pharaoh())}</code></p>"
        f"<table><tr><th>output word</th><th></th><th>source word</th><th>link</th></tr>{rows}</table></div>"
    )


# --------------------------------------------------------------------------------------------
# The model's formula: each score's equation and paper come from its class in the modeling file
# --------------------------------------------------------------------------------------------
# The first "Author et al. YEAR, eq. N" of a score class's docstring: the paper equation it implements.
CITATION_PATTERN = re.compile(r"[A-Z][A-Za-z-]+ et al\. \d{4}, eq\. \d+")
DECODER_STYLE_NOTES = {
    "bahdanau": "query = previous state s_{t-1}; the context c_t joins the RNN input; read-out [s_t; c_t; e_{t-1}]",
    "luong": "the RNN steps first; query = s_t; attentional state tanh(W_c [c_t; s_t])",
}


def score_formula(attention_type: str) -> tuple[str, str]:
    """`(equation, citation)` of the score class `attention_type` names (`ATTENTION_SCORES`), e.g.
    `("s^T W h", "Luong et al. 2015, eq. 8")`; `("?", "?")` for a name the modeling file does not know."""
    score_class = ATTENTION_SCORES.get(attention_type)
    if score_class is None:
        return "?", "?"
    citation = CITATION_PATTERN.search(score_class.__doc__ or "")
    return score_class.equation or "?", citation.group(0) if citation else "?"


def formula_table_html() -> str:
    """The README's table "Attention: each formula and its config value", as HTML with the anchor the
    formula links of [`formula_markdown`] point to."""
    rows = [(*score_formula(name), f"attention_type={name!r}") for name in ATTENTION_SCORES]
    rows.insert(
        1,
        (
            "v^T tanh(W [s; h])",
            "Luong et al. 2015, eq. 8 concat: the same function",
            "attention_type='concat'",
        ),
    )
    rows.append(
        (
            "concat(head_1..N) W_O, each head any score above",
            "Vaswani et al. 2017, 3.2.2",
            "num_attention_heads=N",
        )
    )
    rows += [(text, "decoder", f"decoder_style={style!r}") for style, text in DECODER_STYLE_NOTES.items()]
    body = "".join(
        f"<tr><td><code>{html.escape(a)}</code></td><td>{html.escape(b)}</td><td><code>{html.escape(c)}</code></td></tr>"
        for a, b, c in rows
    )
    return (
        '<h3 id="formula-table">Attention: each formula and its config value</h3>'
        f"<table><tr><th>formula</th><th>paper</th><th>config</th></tr>{body}</table>"
    )


def _sizes_line(config: Any) -> str:
    """The RNN type, layer and embedding sizes, attention width and vocabulary of `config`, in one line."""
    return (
        f"{getattr(config, 'rnn_type', '?').upper()} encoder "
        f"{'bidirectional ' if getattr(config, 'bidirectional', False) else ''}"
        f"{getattr(config, 'encoder_hidden_size', '?')} per direction x {getattr(config, 'encoder_layers', '?')}, "
        f"decoder {getattr(config, 'decoder_hidden_size', '?')} x {getattr(config, 'decoder_layers', '?')}, "
        f"embeddings {getattr(config, 'embedding_size', '?')}, attention width "
        f"{getattr(config, 'attention_size', None) or getattr(config, 'decoder_hidden_size', '?')}, "
        f"vocabulary {getattr(config, 'vocab_size', '?')}"
    )


def formula_markdown(config: Any) -> str:
    """The attention formula, decoder style and sizes of `config`, each linked to the README's formula table."""
    attention_type = getattr(config, "attention_type", "?")
    formula, paper = score_formula(attention_type)
    heads = int(getattr(config, "num_attention_heads", 1))
    style = getattr(config, "decoder_style", "?")
    link = f"([formula table]({FORMULA_TABLE_URL}))"
    score = f'`score(s, h) = {formula}` — `attention_type="{attention_type}"`, {paper} {link}'
    if heads > 1:
        score = (
            f"{heads} heads, each `{formula}` on its own projections, then `concat(head_1..{heads}) W_O` — "
            f'`attention_type="{attention_type}"`, `num_attention_heads={heads}` {link}'
        )
    feeding = " with input feeding" if style == "luong" and getattr(config, "input_feeding", False) else ""
    return "\n".join(
        [
            f"- **Attention**: {score}",
            f'- **Decoder** `decoder_style="{style}"`{feeding}: {DECODER_STYLE_NOTES.get(style, "?")} {link}',
            f"- **Sizes**: {_sizes_line(config)}",
        ]
    )


# --------------------------------------------------------------------------------------------
# Loading models (checked, cached)
# --------------------------------------------------------------------------------------------
def load_model(name: str) -> tuple[Any, Any]:
    """Load and check a model for the explorer: a folder or a Hub id (from the cache when offline).

    The folder's `config.json` is checked before anything loads, and no code from it runs
    ([`inference.load_model_and_tokenizer`]): the model box of a public explorer is safe to type into.

    Raises:
        `FileNotFoundError`, `ValueError`, `TypeError`: with a message fit for the page or the terminal.
    """
    name = name.strip()
    if not name:
        raise ValueError("No model given: type a model folder or a Hub id.")
    return load_model_and_tokenizer(name)


class ModelCache:
    """Loaded models by name, shared by all sessions of the app (a few at most), loaded once each."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._models: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[Any, Any]:
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            loaded = load_model(name)
            self._models[name] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return loaded


def _friendly(err: BaseException) -> str:
    """One line for the page: the message of a user-facing error, the type for anything else."""
    if isinstance(err, (FileNotFoundError, ValueError, TypeError, OSError)):
        text = str(err).strip().strip('"') or type(err).__name__
    else:
        text = f"something went wrong ({type(err).__name__}); see the server log."
    return text.splitlines()[0]


# --------------------------------------------------------------------------------------------
# The app: event handlers (plain functions, testable without a browser), then the page's wiring
# --------------------------------------------------------------------------------------------
def _import_gradio() -> Any:
    """Import gradio with analytics off (nothing may phone home), or raise ImportError with the install hint."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as err:
        raise ImportError(f"The explorer needs gradio: {INSTALL_HINT}") from err
    return gradio


def _update(**properties: Any) -> dict[str, Any]:
    """`gr.update(**properties)`: new properties for an output component; no argument leaves it as it is."""
    return _import_gradio().update(**properties)


def _error(message: str) -> str:
    """A column's status line for something that went wrong."""
    return f"⚠️ **{message}**"


def model_header(cache: ModelCache, name: str) -> tuple[str, str, str, dict[str, Any]]:
    """The header of the column showing model `name`: title, formula, status (an error when it does not
    load, else empty) and the head selector's update (visible when the model has several heads)."""
    try:
        model, _ = cache.get(name)
    except Exception as err:
        logger.warning("could not load %r: %s", name, err)
        hidden = _update(choices=head_choices(1), value=-1, visible=False)
        return f"### {name}", "", _error(f"Could not load the model: {_friendly(err)}"), hidden
    heads = int(getattr(model.config, "num_attention_heads", 1))
    head_update = _update(choices=head_choices(heads), value=-1, visible=heads > 1)
    return f"### {name}", formula_markdown(model.config), "", head_update


def _which_head(head: int | None, num_heads: int) -> str:
    """What a heat-map of head `head` (None = average) shows: "head 2", "average of heads", "attention"."""
    if head is not None:
        return f"head {head + 1}"
    return "average of heads" if num_heads > 1 else "attention"


def _caption(index: int, head: int | None, num_heads: int) -> str:
    """The line above the heat-map of hypothesis `index` (0-based) and head `head` (None = average)."""
    which = _which_head(head, num_heads)
    return f"Hypothesis {index + 1} ({which}): rows = output tokens, columns = source tokens. Hover a cell."


def _render(
    cache: ModelCache, name: str, exploration: Exploration | None, index: int | None, head: int | None
) -> tuple[str, str]:
    """Heat-map and alignment HTML of hypothesis `index` and head `head` (-1 or None = average)."""
    if exploration is None or not exploration.hypotheses:
        return "", ""
    index = index if index is not None and 0 <= index < len(exploration.hypotheses) else 0
    head = None if head is None or head < 0 or head >= exploration.num_heads else head
    hypothesis = exploration.hypotheses[index]
    heatmap = heatmap_html(
        head_matrix(hypothesis.attention, head),
        exploration.source_tokens,
        hypothesis.tokens,
        _caption(index, head, exploration.num_heads),
        coverage=True,
    )
    try:
        _, tokenizer = cache.get(name)
        alignment = alignment_html(hypothesis_alignment(tokenizer, exploration, index, head))
    except Exception as err:  # the heat-map stays useful when the alignment fails
        logger.exception("alignment failed")
        alignment = f"<p>{html.escape(_friendly(err))}</p>"
    return heatmap, alignment


def _beam_width(mode: str, width: float | None) -> int:
    """`num_beams` for the search radio and the beam-width slider: 1 for greedy, else 2..MAX_BEAMS."""
    return 1 if mode == "greedy" else max(2, min(MAX_BEAMS, int(width or 2)))


def _no_translation(message: str) -> tuple[Any, ...]:
    """[`translate`]'s outputs when there is nothing to draw: the message, everything else cleared."""
    return _error(message), _update(choices=[], value=None), _update(value=-1), "", "", None


def translate(cache: ModelCache, name: str, text: str, mode: str, width: float | None) -> tuple[Any, ...]:
    """The Translate button (and Enter in the text box) for the column showing model `name`.

    Returns:
        The column's status, n-best list update, head selector update, heat-map HTML, alignment HTML and
        its [`Exploration`] (kept in a `gr.State` for [`rerender`]).
    """
    if not isinstance(text, str) or not text.strip():
        return _no_translation("Type a sentence to translate.")
    try:
        model, tokenizer = cache.get(name)
    except Exception as err:
        return _no_translation(f"Could not load the model: {_friendly(err)}")
    start = time.perf_counter()
    try:
        exploration = explore(model, tokenizer, text, num_beams=_beam_width(mode, width))
    except Exception as err:
        logger.exception("translation failed")
        return _no_translation(f"Translation failed: {_friendly(err)}")
    if not exploration.hypotheses:
        return _no_translation("The model generated no tokens for this input.")
    status = " ".join(f"ℹ️ {notice}" for notice in exploration.notices)
    heatmap, alignment = _render(cache, name, exploration, 0, None)
    nbest = _update(choices=nbest_choices(exploration), value=0)
    logger.info("%s: translated and drawn in %.0f ms", name, 1000 * (time.perf_counter() - start))
    return status, nbest, _update(value=-1), heatmap, alignment, exploration


def rerender(
    cache: ModelCache, name: str, exploration: Exploration | None, index: int | None, head: int | None
) -> tuple[str, str]:
    """A pick in the n-best list or the head selector: heat-map and alignment HTML, drawn again."""
    try:
        return _render(cache, name, exploration, index, head)
    except Exception as err:
        logger.exception("rendering failed")
        return f"<p>{html.escape(_friendly(err))}</p>", ""


# ----- What if: replace an output token, decode the rest ([`explorer_whatif`]) -------------------
WHATIF_HELP = (
    "Pick an output token of the shown hypothesis and a token the model could have produced instead "
    f"(its {TOP_K} most probable at that step). **Re-decode** forces the tokens before it and your choice "
    "(`decoder_input_ids` of `generate()`) and decodes the rest with the same search as the translation "
    "(greedy, or beam search of the same width, keeping its best hypothesis)."
)


def _shown_hypothesis(exploration: Exploration | None, index: int | None) -> Hypothesis | None:
    """Hypothesis `index` of the n-best list (the first for an index out of range), or None."""
    if exploration is None or not exploration.hypotheses:
        return None
    return exploration.hypotheses[
        index if index is not None and 0 <= index < len(exploration.hypotheses) else 0
    ]


def position_choices(hypothesis: Hypothesis) -> list[tuple[str, int]]:
    """Choices of the what-if position list: `("1. the", 0)`, ... one per output token."""
    return [(f"{t + 1}. {token}", t) for t, token in enumerate(hypothesis.tokens)]


def alternative_choices(alternatives: Sequence[Alternative], original: int) -> list[tuple[str, int]]:
    """Choices of the what-if token list: `("the (p = 0.412, original)", id)`, most probable first."""
    return [
        (f"{a.token} (p = {a.probability:.3f}{', original' if a.token_id == original else ''})", a.token_id)
        for a in alternatives
    ]


def _whatif_message(message: str) -> str:
    """The what-if result box when there is no new translation to show."""
    return f'<p class="s2sa-whatif-message">{html.escape(message)}</p>'


def whatif_reset(exploration: Exploration | None, index: int | None) -> tuple[Any, ...]:
    """After a translation, a pick in the n-best list or a model change: offer the output positions of the
    shown hypothesis, clear the alternatives and any earlier re-decoding.

    Returns:
        The position list update, the alternatives update, the result HTML and the heat-map HTML.
    """
    hypothesis = _shown_hypothesis(exploration, index)
    positions = [] if hypothesis is None else position_choices(hypothesis)
    return _update(choices=positions, value=None), _update(choices=[], value=None), "", ""


def whatif_alternatives(
    cache: ModelCache, name: str, exploration: Exploration | None, index: int | None, position: int | None
) -> tuple[Any, str]:
    """A pick in the position list: the top-k tokens at that step, the most probable other token picked.

    Returns:
        The alternatives update and the result HTML (a message when they could not be computed).
    """
    hypothesis = _shown_hypothesis(exploration, index)
    if exploration is None or hypothesis is None or position is None:
        return _update(choices=[], value=None), ""
    try:
        model, tokenizer = cache.get(name)
        found = top_alternatives(
            model, tokenizer, exploration.source_ids, hypothesis.token_ids, int(position)
        )
    except Exception as err:
        logger.exception("top-k alternatives failed")
        return _update(choices=[], value=None), _whatif_message(f"No alternatives: {_friendly(err)}")
    original = hypothesis.token_ids[int(position)]
    others = [a.token_id for a in found if a.token_id != original]
    return _update(choices=alternative_choices(found, original), value=others[0] if others else None), ""


def redecoding_html(redecoding: Redecoding, position: int) -> str:
    """The new translation, the forced token and the change in sequence log-probability.

    The translation is `.s2sa-whatif-text`; the `<div>` carries its ids in `data-ids` (space-separated)."""
    search = (
        "greedy search" if redecoding.num_beams == 1 else f"beam search with {redecoding.num_beams} beams"
    )
    new, old = redecoding.log_prob, redecoding.original_log_prob
    forced = html.escape(redecoding.tokens[position])
    per_token = f"{old / len(redecoding.original_log_probs):.3f} → {new / len(redecoding.log_probs):.3f}"
    return (
        f'<div class="s2sa-whatif" data-ids="{" ".join(map(str, redecoding.token_ids))}">'
        f"<p>Token {position + 1} forced to <code>{forced}</code>, the rest decoded by {search}: "
        f'<b class="s2sa-whatif-text">{html.escape(redecoding.text)}</b></p>'
        f'<p>Sequence log-probability: {old:.3f} → {new:.3f} (<span class="s2sa-whatif-change">'
        f"{new - old:+.3f}</span>); per token {per_token}.</p></div>"
    )


def whatif_redecode(
    cache: ModelCache,
    name: str,
    exploration: Exploration | None,
    index: int | None,
    position: int | None,
    token_id: int | None,
    head: int | None,
) -> tuple[str, str]:
    """The Re-decode button: force `token_id` at `position` of the shown hypothesis, decode the rest.

    Returns:
        The result HTML ([`redecoding_html`]) and the new translation's heat-map (head `head`, with coverage).
    """
    hypothesis = _shown_hypothesis(exploration, index)
    if exploration is None or hypothesis is None or position is None or token_id is None:
        return _whatif_message("Pick an output token and a replacement first."), ""
    try:
        model, tokenizer = cache.get(name)
        redecoding = redecode(
            model,
            tokenizer,
            exploration.source_ids,
            hypothesis.token_ids,
            int(position),
            int(token_id),
            num_beams=exploration.num_beams,
        )
    except Exception as err:
        logger.exception("re-decoding failed")
        return _whatif_message(f"Re-decoding failed: {_friendly(err)}"), ""
    head = None if head is None or head < 0 or head >= exploration.num_heads else head
    caption = f"What if ({_which_head(head, exploration.num_heads)}): rows = output tokens, columns = source tokens."
    matrix = head_matrix(redecoding.attention, head)
    heatmap = heatmap_html(matrix, exploration.source_tokens, redecoding.tokens, caption, coverage=True)
    return redecoding_html(redecoding, int(position)), heatmap


def _keep_column(status: str) -> tuple[Any, ...]:
    """[`change_model`]'s outputs when the column keeps its model: only the status changes."""
    keep = [_update() for _ in range(8)]  # one update each: gradio may edit what it is handed
    return (*keep[:3], status, *keep[3:])


def change_model(cache: ModelCache, path: str | None) -> tuple[Any, ...]:
    """The Load button of a column: show model `path` there, or say why not and keep the current one.

    Returns:
        The column's model name, title, formula, status, head selector update, n-best list update,
        heat-map HTML, alignment HTML and exploration (the last four cleared).
    """
    path = (path or "").strip()
    if not path:
        return _keep_column(_error("Type a model folder or Hub id."))
    header, formula, status, head_update = model_header(cache, path)
    if status:  # failed: keep the current model
        return _keep_column(status)
    cleared = _update(choices=[], value=None)
    return path, header, formula, f"Loaded {path}.", head_update, cleared, "", "", None


def _with_cache(handler: Callable[..., Any], cache: ModelCache) -> Callable[..., Any]:
    """`handler` with its `cache` argument given, keeping its name (gradio names the API endpoint after it)."""
    bound = functools.partial(handler, cache)
    bound.__name__ = handler.__name__  # type: ignore[attr-defined]
    return bound


@dataclass
class _Controls:
    """The input row shared by all columns."""

    source: Any
    mode: Any
    width: Any
    button: Any


@dataclass
class _WhatIf:
    """The what-if section of a column: position list, alternatives, Re-decode button, result, heat-map."""

    position: Any
    token: Any
    button: Any
    result: Any
    heatmap: Any

    def reset_outputs(self) -> list[Any]:
        """What [`whatif_reset`] returns, in its order."""
        return [self.position, self.token, self.result, self.heatmap]


@dataclass
class _Column:
    """The components of one model's column."""

    name: Any
    title: Any
    formula: Any
    status: Any
    nbest: Any
    head: Any
    heatmap: Any
    alignment: Any
    exploration: Any
    whatif: _WhatIf

    def translation_outputs(self) -> list[Any]:
        """What [`translate`] returns, in its order."""
        return [self.status, self.nbest, self.head, self.heatmap, self.alignment, self.exploration]

    def model_outputs(self) -> list[Any]:
        """What [`change_model`] returns, in its order."""
        return [
            self.name,
            self.title,
            self.formula,
            self.status,
            self.head,
            self.nbest,
            self.heatmap,
            self.alignment,
            self.exploration,
        ]


INTRO = (
    "# Attention explorer\nType a sentence: each output token's row of the heat-map shows which source "
    "tokens the decoder attended to when it produced it; the coverage row under it sums each column. Pick "
    "a hypothesis of the n-best list, or a head; under **What if**, replace an output token and re-decode."
)


def _controls(gr: Any) -> _Controls:
    """The source text box, the search mode, the beam width and the Translate button."""
    with gr.Row():
        source = gr.Textbox(
            label="Source sentence", lines=2, scale=4, elem_id="s2sa-source", placeholder="En el principio..."
        )
        with gr.Column(scale=1, min_width=200):
            mode = gr.Radio(["greedy", "beam search"], value="greedy", label="Search", elem_id="s2sa-mode")
            width = gr.Slider(2, MAX_BEAMS, value=5, step=1, label="Beam width", elem_id="s2sa-width")
            button = gr.Button("Translate", variant="primary", elem_id="s2sa-translate")
    return _Controls(source, mode, width, button)


def _model_column(gr: Any, cache: ModelCache, position: int, name: str) -> _Column:
    """The components of the column showing model `name` (`position` 0 or 1 names their element ids)."""
    header, formula, status, head_update = model_header(cache, name)
    nbest_label = "n-best (score = mean log-probability per token)"
    return _Column(
        name=gr.State(name),
        title=gr.Markdown(header),
        formula=gr.Markdown(formula, elem_id=f"s2sa-formula-{position}"),
        status=gr.Markdown(status, elem_id=f"s2sa-status-{position}"),
        nbest=gr.Radio([], label=nbest_label, type="value", elem_id=f"s2sa-nbest-{position}"),
        head=gr.Radio(
            head_update.get("choices", []),
            value=-1,
            label="Attention head",
            visible=head_update.get("visible", False),
            elem_id=f"s2sa-head-{position}",
        ),
        heatmap=gr.HTML("", elem_id=f"s2sa-heatmap-{position}", js_on_load=None),
        alignment=gr.HTML("", elem_id=f"s2sa-alignment-{position}", js_on_load=None),
        exploration=gr.State(None),
        whatif=_whatif_section(gr, position),  # last: the section goes under the alignment
    )


def _whatif_section(gr: Any, position: int) -> _WhatIf:
    """The "What if" box of column `position`: pick an output token, a replacement, and re-decode."""
    with gr.Accordion("What if: replace an output token and decode the rest", open=True):
        gr.Markdown(WHATIF_HELP)
        with gr.Row():
            where = gr.Dropdown(
                [], value=None, label="Output token", elem_id=f"s2sa-whatif-position-{position}"
            )
            button = gr.Button("Re-decode", scale=0, elem_id=f"s2sa-redecode-{position}")
        label = f"Replace it with (the {TOP_K} most probable tokens at that step)"
        token = gr.Radio([], label=label, type="value", elem_id=f"s2sa-whatif-token-{position}")
        result = gr.HTML("", elem_id=f"s2sa-whatif-result-{position}", js_on_load=None)
        heatmap = gr.HTML("", elem_id=f"s2sa-whatif-heatmap-{position}", js_on_load=None)
    return _WhatIf(where, token, button, result, heatmap)


def _model_loader(gr: Any, cache: ModelCache, position: int, column: _Column) -> None:
    """The "Load another model" box under a column, and its Load button."""
    with gr.Accordion("Load another model", open=False):
        path = gr.Textbox(label="Model folder or Hub id", elem_id=f"s2sa-path-{position}")
        load = gr.Button("Load", elem_id=f"s2sa-load-{position}")
    loaded = load.click(_with_cache(change_model, cache), [path], column.model_outputs())
    loaded.then(whatif_reset, [column.exploration, column.nbest], column.whatif.reset_outputs())


def _bind_column(cache: ModelCache, column: _Column, controls: _Controls) -> None:
    """Translate on the button or Enter; draw again on a pick in the n-best list or the head selector.

    A new translation or n-best pick then offers the shown hypothesis' positions to the what-if box."""
    on_translate = _with_cache(translate, cache)
    reset = ([column.exploration, column.nbest], column.whatif.reset_outputs())
    for trigger in (controls.button.click, controls.source.submit):
        trigger(
            on_translate,
            [column.name, controls.source, controls.mode, controls.width],
            column.translation_outputs(),
        ).then(whatif_reset, *reset)
    on_pick = _with_cache(rerender, cache)
    for selector in (column.nbest, column.head):
        picked = selector.input(
            on_pick,
            [column.name, column.exploration, column.nbest, column.head],
            [column.heatmap, column.alignment],
        )
        if selector is column.nbest:  # a head pick keeps the what-if box as it is
            picked.then(whatif_reset, *reset)
    _bind_whatif(cache, column)


def _bind_whatif(cache: ModelCache, column: _Column) -> None:
    """A pick in the what-if position list shows the alternatives there; Re-decode decodes the rest."""
    whatif = column.whatif
    whatif.position.input(
        _with_cache(whatif_alternatives, cache),
        [column.name, column.exploration, column.nbest, whatif.position],
        [whatif.token, whatif.result],
    )
    whatif.button.click(
        _with_cache(whatif_redecode, cache),
        [column.name, column.exploration, column.nbest, whatif.position, whatif.token, column.head],
        [whatif.result, whatif.heatmap],
    )


def build_app(
    models: Sequence[str], allow_model_change: bool = True, title: str = "Seq2SeqAttn attention explorer"
) -> Any:
    """The explorer page: one column per model (at most two), all fed the same input.

    A model that fails to load (missing folder, another architecture, offline Hub id) shows its error in
    its column; the page itself always builds.

    Args:
        models: model folders or Hub ids.
        allow_model_change (`bool`, defaults to `True`): show a box to load another folder or Hub id in
            each column (off in a public Space: it would read any path on the server).
        title: the page title.

    Returns:
        `gradio.Blocks`, not launched (see [`launch_app`]).
    """
    gr = _import_gradio()
    if not 1 <= len(models) <= MAX_MODELS:
        raise ValueError(f"The explorer shows 1 or {MAX_MODELS} models side by side, got {len(models)}.")
    cache = ModelCache(capacity=2 * MAX_MODELS)
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        controls = _controls(gr)
        columns = []
        with gr.Row(equal_height=False):
            for position, name in enumerate(models):
                with gr.Column(elem_id=f"s2sa-model-{position}"):
                    columns.append(_model_column(gr, cache, position, name))
                    if allow_model_change:
                        _model_loader(gr, cache, position, columns[-1])
        for column in columns:
            _bind_column(cache, column, controls)
        gr.HTML(formula_table_html(), elem_id="s2sa-formula-table")
    return demo


def launch_app(
    demo: Any, server_name: str | None = None, server_port: int | None = None, **kwargs: Any
) -> Any:
    """Launch without share links; `server_name=None` lets a Space's `GRADIO_SERVER_NAME` (0.0.0.0) apply."""
    return demo.launch(server_name=server_name, server_port=server_port, share=False, **kwargs)


# --------------------------------------------------------------------------------------------
# Space
# --------------------------------------------------------------------------------------------
SPACE_APP = '''"""Attention explorer Space, written by hf_seq2seq_attn.explorer.write_space.

Runs `hf_seq2seq_attn.explorer.build_app` unchanged; MODELS are folders next to this file or Hub ids.
"""

import os

from hf_seq2seq_attn.explorer import build_app, launch_app

MODELS = {models}
HERE = os.path.dirname(os.path.abspath(__file__))
demo = build_app(
    [os.path.join(HERE, m) if os.path.isdir(os.path.join(HERE, m)) else m for m in MODELS],
    allow_model_change=False,
)

if __name__ == "__main__":
    launch_app(demo)
'''

SPACE_README = """---
title: {title}
emoji: 🔍
colorFrom: blue
colorTo: indigo
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
pinned: false
tags:
  - seq2seq_attn
  - attention
---

Attention explorer for {models}: type a sentence and see which source tokens each output token attended to.
Made with the `hf_seq2seq_attn` package, whose code ships in this Space (`hf_seq2seq_attn/`).
"""


def _copy_model_folder(folder: str, destination: str) -> list[str]:
    """Copy what loading the model and its card need, local paths named as the copy; return the names.

    A Space is public: the files it gets are those of a Hub push (`hub.SHARED_FILE_PATTERNS`), so no
    pickle, training state, predictions or path of this machine goes with the model. An earlier copy is
    replaced, not merged: files a previous version copied there would otherwise be uploaded with the Space.
    """
    from .tools.hub import copy_shared_files

    shutil.rmtree(destination, ignore_errors=True)
    return copy_shared_files(folder, destination)


def _space_requirements() -> list[str]:
    """The package's own dependencies (as installed) plus gradio: what the vendored copy needs."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("hf_seq2seq_attn") or []
    except PackageNotFoundError:  # running from a source tree that was never installed
        declared = ["torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "numpy"]
    core = [line.split(";")[0].strip() for line in declared if "extra ==" not in line]
    gradio = next((line.split(";")[0].strip() for line in declared if 'extra == "app"' in line), "gradio")
    return [*core, gradio]


def _vendor_package(output_dir: str) -> list[str]:
    """Copy this package's modules into the Space, so it runs where the package is not published.

    Every `.py` file of the package and its subpackages, but not the benchmark, which the app never runs.
    """
    package = Path(__file__).resolve().parent
    names = sorted(
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.relative_to(package).parts[0] != "benchmark"
    )
    for name in names:
        destination = Path(output_dir) / "hf_seq2seq_attn" / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / name, destination)
    return [f"hf_seq2seq_attn/{name}" for name in names]


def _write_text(path: str, text: str) -> None:
    """Write `text` to `path` as UTF-8 (a Space's files are read on another machine)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _space_models(names: Sequence[str], output_dir: str) -> tuple[list[str], list[str]]:
    """Copy the local model folders among `names` into `output_dir/model`, `model2`.

    Returns:
        `(references, written)`: what `app.py` loads for each name (the copy's subfolder, or the Hub id
        itself), and the files copied, relative to `output_dir`.
    """
    references, written = [], []
    for position, name in enumerate(names):
        if not looks_like_path(name):
            references.append(name)
            continue
        check_model_type(name)
        subfolder = "model" if position == 0 else f"model{position + 1}"
        copied = _copy_model_folder(os.path.expanduser(name), os.path.join(output_dir, subfolder))
        written += [f"{subfolder}/{f}" for f in copied]
        references.append(subfolder)
    return references, written


def _space_readme(names: Sequence[str]) -> str:
    """The Space's README: its card (gradio SDK and version, title) naming the models shown."""
    try:
        gradio_version = importlib.import_module("gradio").__version__
    except ImportError:
        gradio_version = "6.0.0"
    labels = ", ".join(os.path.basename(os.path.normpath(n)) if looks_like_path(n) else n for n in names)
    return SPACE_README.format(
        title=f"Attention explorer: {labels}"[:60], gradio_version=gradio_version, models=labels
    )


def write_space(
    models: str | Sequence[str], output_dir: str, requirements: Sequence[str] | None = None
) -> list[str]:
    """Write a Hugging Face Space that runs this explorer: `app.py`, `requirements.txt`, `README.md`.

    Args:
        models: one or two model folders (copied into `output_dir/model`, `model2`) or Hub ids (loaded
            from the Hub when the Space starts).
        output_dir: the Space folder (created).
        requirements: the `requirements.txt` lines; default: this package's dependencies and gradio (the
            package itself is copied into the Space, so it runs without being published anywhere).

    Returns:
        The paths written, relative to `output_dir`.
    """
    names = [models] if isinstance(models, str) else list(models)
    if not 1 <= len(names) <= MAX_MODELS:
        raise ValueError(f"A Space shows 1 or {MAX_MODELS} models, got {len(names)}.")
    os.makedirs(output_dir, exist_ok=True)
    references, copied = _space_models(names, output_dir)
    _write_text(os.path.join(output_dir, "app.py"), SPACE_APP.format(models=repr(references)))
    vendored = _vendor_package(output_dir)
    lines = requirements or _space_requirements()
    _write_text(os.path.join(output_dir, "requirements.txt"), "".join(f"{line}\n" for line in lines))
    _write_text(os.path.join(output_dir, "README.md"), _space_readme(names))
    return ["app.py", "requirements.txt", "README.md", *copied, *vendored]


def push_space(
    models: str | Sequence[str], repo_id: str, private: bool = False, token: str | None = None
) -> str:
    """Write the Space ([`write_space`]) to a temporary folder and upload it to `repo_id`; return its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        write_space(models, folder)
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=folder, repo_id=repo_id, repo_type="space", commit_message="Attention explorer"
        )
    return f"https://huggingface.co/spaces/{repo_id}"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
EPILOG = """examples:
  seq2seq-attn explore --model outputs/demo
  seq2seq-attn explore --model outputs/additive --model outputs/dot --port 7861
  seq2seq-attn explore --model outputs/demo --write_space my_space     # app.py + requirements.txt
  seq2seq-attn explore --model you/demo-model --push_space you/demo-explorer
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq-attn explore",
        description="Open the attention explorer: translate in the browser and hover the attention heat-map.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", action="append", required=True, help="model folder or Hub id; give it twice to compare two"
    )
    parser.add_argument("--port", type=int, default=7860, help="local port (default 7860)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--write_space", metavar="DIR", help="write a Hugging Face Space folder and exit")
    parser.add_argument("--push_space", metavar="REPO_ID", help="upload the Space to REPO_ID and exit")
    parser.add_argument("--private", action="store_true", help="with --push_space: create a private Space")
    return parser


def _fail(message: str) -> int:
    """Print `error: message` for a user mistake and return the exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def _argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line, checked before any model loads (None when nothing is)."""
    if len(args.model) > MAX_MODELS:
        return f"give --model at most {MAX_MODELS} times (got {len(args.model)})."
    if not 1 <= args.port <= 65535:
        return f"--port must be between 1 and 65535, got {args.port}."
    for name in args.model:
        try:
            check_model_type(name)  # before anything of it loads: no code from the folder or repo runs
        except (OSError, ValueError) as err:
            return _friendly(err)
    return None


def _publish_space(args: argparse.Namespace) -> None:
    """`--write_space DIR` (which wins when both are given) or `--push_space REPO_ID`."""
    if args.write_space:
        write_space(args.model, args.write_space)
        print(
            f"Wrote a Space to {args.write_space}: upload it with `huggingface-cli upload --repo-type space "
            f"REPO_ID {args.write_space}` or use --push_space."
        )
    else:
        print(f"Space: {push_space(args.model, args.push_space, private=args.private)}")


def main(argv: list[str] | None = None) -> int:
    """`seq2seq-attn explore`: returns an exit code; user mistakes print `error: ...` and return 2."""
    args = build_parser().parse_args(argv)
    problem = _argument_problem(args)
    if problem is not None:
        return _fail(problem)
    try:
        if args.write_space or args.push_space:
            _publish_space(args)
            return 0
        demo = build_app(args.model)
    except ImportError as err:
        return _fail(str(err))
    except (OSError, ValueError) as err:
        return _fail(_friendly(err))
    try:
        launch_app(demo, server_name=args.host, server_port=args.port, inbrowser=False)
    except OSError as err:
        return _fail(f"could not start the server on {args.host}:{args.port}: {err}")
    return 0


__all__ = [
    "Exploration",
    "Hypothesis",
    "alignment_html",
    "alternative_choices",
    "build_app",
    "encode_source",
    "explore",
    "formula_markdown",
    "head_choices",
    "head_matrix",
    "heatmap_html",
    "hypothesis_alignment",
    "launch_app",
    "load_model",
    "main",
    "nbest_choices",
    "position_choices",
    "push_space",
    "redecoding_html",
    "source_coverage",
    "step_attention",
    "whatif_alternatives",
    "whatif_redecode",
    "whatif_reset",
    "write_space",
]
