"""The model's formula on the page: each score's equation and paper come from its class in the modeling file.

[`formula_markdown`] states the attention score, decoder style and sizes of a config; [`formula_table_html`]
is the README's table "Attention: each formula and its config value", which the page carries itself.
"""

from __future__ import annotations

import html
import re
from typing import Any

from ..core.modeling_seq2seq_attn import ATTENTION_SCORES

# The page carries the README's formula table itself (a Space has no README of the package to link to).
FORMULA_TABLE_URL = "#formula-table"


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
