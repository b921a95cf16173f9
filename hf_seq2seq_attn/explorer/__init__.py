"""Attention explorer: type a sentence, watch which source tokens each output token looked at.

`seq2seq-attn explore --model DIR [--model DIR2]` opens a local web page (Gradio, the Hugging Face Spaces
convention) that translates what you type, greedy or with beam search and an n-best list, and draws the
cross-attention of the chosen hypothesis as an interactive heat-map (hover a cell: source token, output
token, weight), one head at a time or averaged, next to the word alignment derived from it and the
model's attention formula. With two models both are shown side by side for the same input. The same app
runs unchanged as a Hugging Face Space ([`write_space`], `--push_space`).

The page is built from pure functions that are tested without a browser. Modules, one job each:
    decode.py    [`explore`]: one `generate()` call -> [`Exploration`]: source tokens, the hypotheses
                 (n-best with scores) and the attention `(N, T, S)` behind each, beam hypotheses followed
                 through `beam_indices`; [`head_matrix`] (one head, or the mean of the heads) and
                 [`hypothesis_alignment`] (the word alignment of `core.alignment_seq2seq_attn`)
    beamtree.py  the beam search as a tree: [`SearchRecorder`] (a `LogitsProcessor` that only watches the
                 beams `generate()` keeps), [`beam_tree`] -> [`BeamTree`] of [`TreeNode`]s (kept and pruned
                 tokens, cumulative scores, the returned leaves), [`beam_tree_html`] (a server-side SVG)
    render.py    HTML: [`heatmap_html`] (rows = output tokens, columns = source tokens) with the coverage row
                 under it ([`source_coverage`]: the attention each source token received),
                 [`alignment_html`], [`redecoding_html`]
    formula.py   [`formula_markdown`]: the score function (equation and paper from its class in the modeling
                 file), decoder style and sizes read from the config; [`formula_table_html`]
    whatif.py    "What if": the top-k tokens at an output step ([`top_alternatives`]), and the translation
                 re-decoded with another token forced there ([`redecode`], `decoder_input_ids` of `generate()`)
    neighbors.py nearest training sentences: [`load_or_build_index`] (a training file's pairs run once with
                 teacher forcing: mean-pooled encoder states and each target token's decoder state, cached as
                 safetensors beside the model) -> [`NeighborIndex`]; [`nearest`] (exact cosine, one matmul)
                 -> [`Neighbor`]s, [`nearest_tokens`] -> [`TokenNeighbor`]s per output token;
                 [`neighbors_html`], [`token_neighbors_html`]; [`NeighborIndexes`] (one per model of the page)
    models.py    [`load_model`] (checked before anything loads) and the shared [`ModelCache`]
    handlers.py  the page's event handlers, plain functions of the model cache and the components' values:
                 [`translate`], [`translate_with_tree`], [`rerender`], [`change_model`], [`whatif_reset`],
                 [`whatif_alternatives`], [`whatif_redecode`], [`beam_tree_view`], [`beam_tree_pick`],
                 [`neighbors_view`]
    app.py       [`build_app`] only lays out components and binds the handlers; [`launch_app`]
    space.py     [`write_space`], [`push_space`]: the app as a Hugging Face Space, with this package vendored
    cli.py       `seq2seq-attn explore`: [`build_parser`], [`main`] (standard library only until parsed)

Every name above is importable from `hf_seq2seq_attn.explorer`; each loads its module on first use, so
importing the package loads neither torch nor gradio. Gradio is imported only by [`build_app`] and the
handlers' updates: `pip install 'hf_seq2seq_attn[app]'`.
"""

from __future__ import annotations

import importlib
from typing import Any

# submodule -> the names it gives the package (loaded on first access, PEP 562)
_SUBMODULE_NAMES = {
    "decode": (
        "DEFAULT_MAX_SOURCE_TOKENS",
        "MAX_INPUT_CHARS",
        "Exploration",
        "Hypothesis",
        "encode_source",
        "explore",
        "head_matrix",
        "hypothesis_alignment",
        "max_source_tokens",
        "step_attention",
    ),
    "beamtree": ("BEAM_TREE_CSS", "BeamTree", "SearchRecorder", "TreeNode", "beam_tree", "beam_tree_html"),
    "render": (
        "COVERAGE_NOTE",
        "HEATMAP_CSS",
        "alignment_html",
        "heatmap_html",
        "redecoding_html",
        "source_coverage",
    ),
    "formula": (
        "CITATION_PATTERN",
        "DECODER_STYLE_NOTES",
        "FORMULA_TABLE_URL",
        "formula_markdown",
        "formula_table_html",
        "score_formula",
    ),
    "whatif": ("TOP_K", "Alternative", "Redecoding", "redecode", "top_alternatives"),
    "neighbors": (
        "NEIGHBORS_K",
        "NEIGHBORS_MAX",
        "Neighbor",
        "NeighborIndex",
        "NeighborIndexes",
        "TokenIndex",
        "TokenNeighbor",
        "build_index",
        "encode_pairs",
        "load_or_build_index",
        "nearest",
        "nearest_to_source",
        "nearest_tokens",
        "neighbors_html",
        "sentence_vectors",
        "token_neighbors_html",
    ),
    "models": ("MAX_MODELS", "ModelCache", "load_model"),
    "handlers": (
        "INSTALL_HINT",
        "MAX_BEAMS",
        "alternative_choices",
        "beam_tree_pick",
        "beam_tree_view",
        "change_model",
        "head_choices",
        "model_header",
        "nbest_choices",
        "neighbors_view",
        "position_choices",
        "rerender",
        "translate",
        "translate_with_tree",
        "whatif_alternatives",
        "whatif_redecode",
        "whatif_reset",
    ),
    "app": ("INTRO", "WHATIF_HELP", "build_app", "launch_app"),
    "space": ("SPACE_APP", "SPACE_README", "push_space", "write_space"),
    "cli": ("EPILOG", "build_parser", "main"),
}
_EXPORTS = {name: module for module, names in _SUBMODULE_NAMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Load the submodule that defines `name` (a public name, or a submodule itself) on first access."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later accesses skip this function
        return value
    if name in _SUBMODULE_NAMES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "BeamTree",
    "Exploration",
    "Hypothesis",
    "Neighbor",
    "NeighborIndex",
    "TokenIndex",
    "TokenNeighbor",
    "alignment_html",
    "alternative_choices",
    "beam_tree",
    "beam_tree_html",
    "beam_tree_pick",
    "beam_tree_view",
    "build_app",
    "encode_pairs",
    "encode_source",
    "explore",
    "formula_markdown",
    "head_choices",
    "head_matrix",
    "heatmap_html",
    "hypothesis_alignment",
    "launch_app",
    "load_model",
    "load_or_build_index",
    "main",
    "nbest_choices",
    "nearest",
    "nearest_to_source",
    "nearest_tokens",
    "neighbors_html",
    "neighbors_view",
    "position_choices",
    "push_space",
    "redecoding_html",
    "source_coverage",
    "step_attention",
    "token_neighbors_html",
    "translate_with_tree",
    "whatif_alternatives",
    "whatif_redecode",
    "whatif_reset",
    "write_space",
]
