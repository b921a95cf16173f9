"""The page's event handlers: plain functions of the shared [`ModelCache`] and the components' values.

Each returns what its outputs show (HTML, markdown, `gr.update(...)` dicts, the [`Exploration`] kept in a
`gr.State`), so the page is tested without a browser; [`hf_seq2seq_attn.explorer.app`] only binds them.
Gradio is imported only to build `gr.update` values: `pip install 'hf_seq2seq_attn[app]'`.
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from .beamtree import beam_tree_html
from .decode import Exploration, Hypothesis, explore, head_matrix, hypothesis_alignment
from .formula import formula_markdown
from .models import ModelCache, friendly_error
from .neighbors import (
    NEIGHBORS_K,
    NeighborIndexes,
    nearest_to_source,
    nearest_tokens,
    neighbors_html,
    token_neighbors_html,
)
from .render import alignment_html, heatmap_html, redecoding_html
from .whatif import Alternative, redecode, top_alternatives

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'hf_seq2seq_attn[app]'"
# The widest beam the page's slider offers.
MAX_BEAMS = 10


def head_choices(num_heads: int) -> list[tuple[str, int]]:
    """Choices of the head selector: `("average of N heads", -1)`, then `("head 1", 0)`, ..."""
    return [(f"average of {num_heads} heads", -1)] + [(f"head {n + 1}", n) for n in range(num_heads)]


def nbest_choices(exploration: Exploration) -> list[tuple[str, int]]:
    """Labels of the n-best list: `("1. the text   (score -0.41)", 0)`, best first."""
    return [
        (f"{rank + 1}. {hyp.text or '(empty)'}   (score {hyp.score:.3f})", rank)
        for rank, hyp in enumerate(exploration.hypotheses)
    ]


def import_gradio() -> Any:
    """Import gradio with analytics off (nothing may phone home), or raise ImportError with the install hint."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as err:
        raise ImportError(f"The explorer needs gradio: {INSTALL_HINT}") from err
    return gradio


def _update(**properties: Any) -> dict[str, Any]:
    """`gr.update(**properties)`: new properties for an output component; no argument leaves it as it is."""
    return import_gradio().update(**properties)


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
        return f"### {name}", "", _error(f"Could not load the model: {friendly_error(err)}"), hidden
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
        alignment = f"<p>{html.escape(friendly_error(err))}</p>"
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
        return _no_translation(f"Could not load the model: {friendly_error(err)}")
    start = time.perf_counter()
    try:
        exploration = explore(model, tokenizer, text, num_beams=_beam_width(mode, width))
    except Exception as err:
        logger.exception("translation failed")
        return _no_translation(f"Translation failed: {friendly_error(err)}")
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
        return f"<p>{html.escape(friendly_error(err))}</p>", ""


# ----- The beam search tree ([`hf_seq2seq_attn.explorer.beamtree`]) -------------------------------------


def beam_tree_view(
    exploration: Exploration | None, index: int | None, head: int | None
) -> tuple[Any, str, str]:
    """After a translation: the "Beam search tree" box (shown for beam search only), the tree with the path
    of hypothesis `index` highlighted, and that hypothesis' heat-map (head `head`, -1 = average).

    Returns:
        The accordion's update, the tree HTML ([`beam_tree_html`]) and the heat-map HTML.
    """
    tree = None if exploration is None else exploration.beam_tree
    if exploration is None or tree is None or not exploration.hypotheses:
        return _update(visible=False), "", ""
    index = index if index is not None and 0 <= index < len(exploration.hypotheses) else 0
    head = None if head is None or head < 0 or head >= exploration.num_heads else head
    hypothesis = exploration.hypotheses[index]
    caption = _caption(index, head, exploration.num_heads).replace("Hypothesis", "Leaf: hypothesis", 1)
    matrix = head_matrix(hypothesis.attention, head)
    heatmap = heatmap_html(matrix, exploration.source_tokens, hypothesis.tokens, caption, coverage=True)
    return _update(visible=True), beam_tree_html(tree, index), heatmap


def translate_with_tree(
    cache: ModelCache, name: str, text: str, mode: str, width: float | None
) -> tuple[Any, ...]:
    """The Translate button: [`translate`], then [`beam_tree_view`] of its best hypothesis, in one event, so
    the page draws the tree with the heat-map instead of waiting for a second round trip.

    Returns:
        [`translate`]'s outputs, then [`beam_tree_view`]'s.
    """
    outputs = translate(cache, name, text, mode, width)
    return (*outputs, *beam_tree_view(outputs[-1], 0, -1))


def beam_tree_pick(
    exploration: Exploration | None, head: int | None, data: dict[str, Any] | None
) -> tuple[str, str]:
    """A click on a returned hypothesis' leaf (`data = {"hypothesis": rank}`, sent by the page's script):
    the tree with its path highlighted and its heat-map."""
    rank = (data or {}).get("hypothesis")
    _, tree, heatmap = beam_tree_view(exploration, int(rank) if rank is not None else None, head)
    return tree, heatmap


# ----- What if: replace an output token, decode the rest ([`hf_seq2seq_attn.explorer.whatif`]) -------


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
        return _update(choices=[], value=None), _whatif_message(f"No alternatives: {friendly_error(err)}")
    original = hypothesis.token_ids[int(position)]
    others = [a.token_id for a in found if a.token_id != original]
    return _update(choices=alternative_choices(found, original), value=others[0] if others else None), ""


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
        return _whatif_message(f"Re-decoding failed: {friendly_error(err)}"), ""
    head = None if head is None or head < 0 or head >= exploration.num_heads else head
    caption = f"What if ({_which_head(head, exploration.num_heads)}): rows = output tokens, columns = source tokens."
    matrix = head_matrix(redecoding.attention, head)
    heatmap = heatmap_html(matrix, exploration.source_tokens, redecoding.tokens, caption, coverage=True)
    return redecoding_html(redecoding, int(position)), heatmap


# ----- Nearest training sentences ([`hf_seq2seq_attn.explorer.neighbors`]) ---------------------------


def neighbors_view(
    indexes: NeighborIndexes,
    name: str,
    exploration: Exploration | None,
    index: int | None = None,
    k: int = NEIGHBORS_K,
) -> str:
    """After a translation (or an n-best pick), the "Nearest training sentences" box of the column showing
    model `name`: the `k` training pairs whose mean encoder state is closest to the source's
    ([`nearest_to_source`]), then for each output token of hypothesis `index` the training tokens nearest
    in decoder state ([`nearest_tokens`]), one click-to-open list each.

    Returns:
        The lists' HTML ([`neighbors_html`], [`token_neighbors_html`]), or a message.
    """
    if exploration is None or not exploration.hypotheses:
        return '<p class="s2sa-neighbors-message">Translate a sentence to see the training pairs nearest to it.</p>'
    hypothesis = exploration.hypotheses[
        index if index is not None and 0 <= index < len(exploration.hypotheses) else 0
    ]
    try:
        model, tokenizer = indexes.models.get(name)
        found = indexes.get(name)
        sentences = nearest_to_source(model, found, exploration.source_ids, k)
        tokens = nearest_tokens(model, found, exploration.source_ids, hypothesis.token_ids)
        per_token = token_neighbors_html(tokenizer, hypothesis.tokens, tokens)
    except Exception as err:
        logger.exception("nearest neighbours failed")
        return f'<p class="s2sa-neighbors-message">No neighbours: {html.escape(friendly_error(err))}</p>'
    heading = (
        "<p>Per output token: the training tokens the decoder was nearest to when it wrote it (click one)</p>"
    )
    return neighbors_html(sentences) + heading + per_token


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
