"""The explorer page (gradio): lays out one column per model and binds the [`handlers`] to its events.

Gradio is imported only when [`build_app`] runs: `pip install 'hf_seq2seq_attn[app]'`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .formula import formula_table_html
from .handlers import (
    MAX_BEAMS,
    beam_tree_pick,
    beam_tree_view,
    change_model,
    import_gradio,
    model_header,
    neighbors_view,
    rerender,
    translate_with_tree,
    whatif_alternatives,
    whatif_redecode,
    whatif_reset,
)
from .models import MAX_MODELS, ModelCache
from .neighbors import NEIGHBORS_K, NEIGHBORS_MAX, NeighborIndexes
from .whatif import TOP_K

WHATIF_HELP = (
    "Pick an output token of the shown hypothesis and a token the model could have produced instead "
    f"(its {TOP_K} most probable at that step). **Re-decode** forces the tokens before it and your choice "
    "(`decoder_input_ids` of `generate()`) and decodes the rest with the same search as the translation "
    "(greedy, or beam search of the same width, keeping its best hypothesis)."
)


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


# gr.HTML runs no <script> in its value; this listener, set once on the component, sends a leaf's rank.
LEAF_CLICK_JS = (
    "element.addEventListener('click', (event) => {"
    " const leaf = event.target.closest('[data-hypothesis]');"
    " if (leaf) trigger('click', {hypothesis: Number(leaf.dataset.hypothesis)}); });"
)


@dataclass
class _BeamTreeBox:
    """The "Beam search tree" box of a column (shown for beam search): the tree and a leaf's heat-map."""

    accordion: Any
    tree: Any
    heatmap: Any


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
    beam_tree: _BeamTreeBox
    neighbors: Any = None  # the "Nearest training sentences" box, with `--neighbors`

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
    "a hypothesis of the n-best list, or a head; under **What if**, replace an output token and re-decode. "
    "With beam search, the **Beam search tree** under the heat-map shows every hypothesis the search kept "
    "and the candidates it pruned; click a returned hypothesis' leaf to see its attention."
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
        beam_tree=_beam_tree_section(gr, position),  # under the heat-map
        alignment=gr.HTML("", elem_id=f"s2sa-alignment-{position}", js_on_load=None),
        exploration=gr.State(None),
        whatif=_whatif_section(gr, position),  # last: the section goes under the alignment
    )


def _beam_tree_section(gr: Any, position: int) -> _BeamTreeBox:
    """The "Beam search tree" box of column `position`, hidden until a beam translation fills it."""
    with gr.Accordion("Beam search tree", open=True, visible=False) as accordion:
        tree = gr.HTML("", elem_id=f"s2sa-beamtree-{position}", js_on_load=LEAF_CLICK_JS)
        heatmap = gr.HTML("", elem_id=f"s2sa-beamtree-heatmap-{position}", js_on_load=None)
    return _BeamTreeBox(accordion, tree, heatmap)


def _bind_beam_tree(gr: Any, column: _Column) -> None:
    """A click on a leaf of the tree draws that hypothesis' heat-map under it (the translation and a model
    change redraw the whole box: [`_bind_column`], [`_model_loader`])."""
    box = column.beam_tree

    def on_leaf(exploration: Any, head: Any, event: Any) -> tuple[str, str]:
        return beam_tree_pick(exploration, head, getattr(event, "_data", None))

    on_leaf.__name__ = "beam_tree_pick"  # the API endpoint's name
    on_leaf.__annotations__ = {"event": gr.EventData}  # what makes gradio pass the event's data
    box.tree.click(on_leaf, [column.exploration, column.head], [box.tree, box.heatmap])


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


def _model_loader(gr: Any, cache: ModelCache, position: int, column: _Column) -> Any:
    """The "Load another model" box under a column, and its Load button; returns its click event."""
    with gr.Accordion("Load another model", open=False):
        path = gr.Textbox(label="Model folder or Hub id", elem_id=f"s2sa-path-{position}")
        load = gr.Button("Load", elem_id=f"s2sa-load-{position}")
    loaded = load.click(_with_cache(change_model, cache), [path], column.model_outputs())
    loaded.then(whatif_reset, [column.exploration, column.nbest], column.whatif.reset_outputs())
    box = column.beam_tree  # a model change clears the exploration: this hides the tree
    loaded.then(
        beam_tree_view,
        [column.exploration, column.nbest, column.head],
        [box.accordion, box.tree, box.heatmap],
    )
    return loaded


def _bind_column(cache: ModelCache, column: _Column, controls: _Controls) -> list[Any]:
    """Translate on the button or Enter; draw again on a pick in the n-best list or the head selector.

    A new translation or n-best pick then offers the shown hypothesis' positions to the what-if box.
    Returns those events (a translation, an n-best pick), after which other boxes may follow."""
    on_translate = _with_cache(translate_with_tree, cache)  # the tree in the same round trip
    reset = ([column.exploration, column.nbest], column.whatif.reset_outputs())
    box = column.beam_tree
    tree_outputs = [box.accordion, box.tree, box.heatmap]
    shown = []
    for trigger in (controls.button.click, controls.source.submit):
        translated = trigger(
            on_translate,
            [column.name, controls.source, controls.mode, controls.width],
            column.translation_outputs() + tree_outputs,
        )
        translated.then(whatif_reset, *reset)
        shown.append(translated)
    on_pick = _with_cache(rerender, cache)
    for selector in (column.nbest, column.head):
        picked = selector.input(
            on_pick,
            [column.name, column.exploration, column.nbest, column.head],
            [column.heatmap, column.alignment],
        )
        if selector is column.nbest:  # a head pick keeps the what-if box as it is
            picked.then(whatif_reset, *reset)
            shown.append(picked)
    _bind_whatif(cache, column)
    return shown


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


def _start_neighbors(
    cache: ModelCache, models: Sequence[str], path: str | None, limit: int
) -> NeighborIndexes | None:
    """The neighbour indexes of `path` (None without one), built now for the models that load, so the first
    translation does not wait; a model that does not load says so in its column instead."""
    if path is None:
        return None
    indexes = NeighborIndexes(cache, path, limit)
    for name in models:
        try:
            cache.get(name)
        except Exception:  # the column shows why
            continue
        indexes.get(name)  # a bad training file raises here, before the page is served
    return indexes


def _neighbors_section(gr: Any, indexes: NeighborIndexes, position: int) -> Any:
    """The "Nearest training sentences" box of column `position` ([`_bind_neighbors`] fills it)."""
    label = (
        f"Nearest training sentences (the {NEIGHBORS_K} pairs of {indexes.path} closest in encoder state; "
        "per output token, the training tokens closest in decoder state)"
    )
    with gr.Accordion(label, open=True):
        return gr.HTML("", elem_id=f"s2sa-neighbors-{position}", js_on_load=None)


def _bind_neighbors(indexes: NeighborIndexes, column: _Column, shown: Sequence[Any]) -> None:
    """After each event of `shown` (a translation, an n-best pick, a model change), list the neighbours
    of the shown hypothesis."""

    def on_shown(name: str, exploration: Any, index: int | None) -> str:
        return neighbors_view(indexes, name, exploration, index)

    on_shown.__name__ = "neighbors_view"  # the API endpoint's name
    for event in shown:
        event.then(on_shown, [column.name, column.exploration, column.nbest], [column.neighbors])


def build_app(
    models: Sequence[str],
    allow_model_change: bool = True,
    title: str = "Seq2SeqAttn attention explorer",
    neighbors: str | None = None,
    neighbors_max: int = NEIGHBORS_MAX,
) -> Any:
    """The explorer page: one column per model (at most two), all fed the same input.

    A model that fails to load (missing folder, another architecture, offline Hub id) shows its error in
    its column; the page itself always builds.

    Args:
        models: model folders or Hub ids.
        allow_model_change (`bool`, defaults to `True`): show a box to load another folder or Hub id in
            each column (off in a public Space: it would read any path on the server).
        title: the page title.
        neighbors (`str`, *optional*): a training file (JSON Lines / CSV / TSV with source and target
            columns): each column then lists the training pairs nearest to the typed sentence. Their
            index is built (or loaded from its cache) for every model here before the page is returned.
        neighbors_max (`int`, defaults to 30,000): the training pairs read from `neighbors`.

    Returns:
        `gradio.Blocks`, not launched (see [`launch_app`]).
    """
    gr = import_gradio()
    if not 1 <= len(models) <= MAX_MODELS:
        raise ValueError(f"The explorer shows 1 or {MAX_MODELS} models side by side, got {len(models)}.")
    cache = ModelCache(capacity=2 * MAX_MODELS)
    indexes = _start_neighbors(cache, models, neighbors, neighbors_max)
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        controls = _controls(gr)
        columns, loads = [], []
        with gr.Row(equal_height=False):
            for position, name in enumerate(models):
                with gr.Column(elem_id=f"s2sa-model-{position}"):
                    column = _model_column(gr, cache, position, name)
                    if indexes is not None:
                        column.neighbors = _neighbors_section(gr, indexes, position)
                    columns.append(column)
                    loads.append(_model_loader(gr, cache, position, column) if allow_model_change else None)
        for column, loaded in zip(columns, loads, strict=True):
            shown = _bind_column(cache, column, controls)
            _bind_beam_tree(gr, column)
            if indexes is not None:
                _bind_neighbors(indexes, column, shown + ([loaded] if loaded is not None else []))
        gr.HTML(formula_table_html(), elem_id="s2sa-formula-table")
    return demo


def launch_app(
    demo: Any, server_name: str | None = None, server_port: int | None = None, **kwargs: Any
) -> Any:
    """Launch without share links; `server_name=None` lets a Space's `GRADIO_SERVER_NAME` (0.0.0.0) apply."""
    return demo.launch(server_name=server_name, server_port=server_port, share=False, **kwargs)
