"""The explorer's HTML: the attention heat-map with its coverage row, the word alignment, a re-decoding.

Pure functions of arrays and strings (no model, no gradio), tested by parsing their output:
[`heatmap_html`] (one row per output token, one column per source token, a CSS tooltip per cell),
[`source_coverage`] (the column sums drawn under it), [`alignment_html`] and [`redecoding_html`].
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # only for the annotation: this module needs no torch
    from .whatif import Redecoding

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
