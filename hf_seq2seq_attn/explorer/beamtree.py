"""The beam search as a tree: every hypothesis kept at every step, the candidates it pruned, the scores.

`generate()` returns only the final hypotheses (`sequences`, `sequences_scores`, `beam_indices`) and the
per-step log-probabilities of its beams (`scores[t]`, `(beams, V)`); the beams it kept at each step are
not in its output. [`SearchRecorder`], a `LogitsProcessor` that changes nothing, notes the running beams
(`input_ids`, `(beams, 1 + t)`) it is handed at each step; [`beam_tree`] joins them with `scores` into a
[`BeamTree`]: a node is a prefix (its last token), its score the cumulative log-probability beam search
summed for it (float32, as `generate` does), kept nodes are the beams extended at the next step and the
returned hypotheses, pruned nodes the other top-`num_beams` next tokens of each kept beam.
[`beam_tree_html`] draws it server-side as an SVG trellis (one column per step). No gradio here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor


class SearchRecorder(LogitsProcessor):
    """Notes the running beams `generate()` hands its logits processors at each step; returns the scores as
    they are (an observer: appended after the default processors, it sees `scores[t]` of the output).

    Attributes:
        steps (`list[torch.Tensor]`): step t -> `(batch * beams, 1 + t)` the sequences extended at step t.
    """

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.steps.append(input_ids.detach().clone())  # generate may reuse the buffer
        return scores


@dataclass
class TreeNode:
    """One token of the search tree.

    Attributes:
        step (`int`): output position (0-based; the root, the decoder start token, is -1).
        token_id (`int`), token (`str`): the token this node appends to its parent's prefix.
        score (`float`): cumulative log-probability of the prefix (beam search's running beam score).
        kept (`bool`): extended at the next step or returned; False = a pruned candidate.
        beam (`int`): the row of step `step`'s batch this token extended (`beam_indices` semantics).
        parent (`int`): index of the parent node in [`BeamTree.nodes`] (-1 for the root).
        hypothesis (`int | None`): n-best rank (0-based) when this node ends a returned hypothesis.
        final_score (`float | None`): that hypothesis' `sequences_scores` (length-normalised score).
        row (`int | None`): its own row at the next step, when that step extended it.
    """

    step: int
    token_id: int
    token: str
    score: float
    kept: bool
    beam: int
    parent: int
    hypothesis: int | None = None
    final_score: float | None = None
    row: int | None = None


@dataclass
class BeamTree:
    """The search tree of one beam translation: `nodes[0]` is the root, parents come before children."""

    nodes: list[TreeNode]
    num_beams: int
    length_penalty: float = 1.0
    leaves: list[int] = field(default_factory=list)  # node index of each returned hypothesis, best first

    def path(self, index: int) -> list[int]:
        """Node indices from the root to node `index`."""
        found = []
        while index >= 0:
            found.append(index)
            index = self.nodes[index].parent
        return found[::-1]


def _returned_prefixes(output: Any, lengths: Sequence[int]) -> list[tuple[int, ...]]:
    """The prefix (start token included) of each returned hypothesis of `lengths[r]` generated tokens."""
    return [tuple(output.sequences[r, : 1 + length].tolist()) for r, length in enumerate(lengths)]


def _kept_children(
    steps: Sequence[torch.Tensor], returned: Sequence[tuple[int, ...]]
) -> dict[tuple[int, ...], list[int]]:
    """Prefix -> the tokens of its kept children: the rows the recorder saw after step 0 (the beams each
    step kept and the next extended) and every prefix of the returned hypotheses."""
    kept = {tuple(row) for ids in steps[1:] for row in ids.tolist()}
    kept |= {prefix[: k + 1] for prefix in returned for k in range(1, len(prefix))}
    children: dict[tuple[int, ...], list[int]] = {}
    for prefix in sorted(kept):
        children.setdefault(prefix[:-1], []).append(prefix[-1])
    return children


def _expand_step(
    tree: BeamTree,
    tokenizer: Any,
    index: dict[tuple[int, ...], int],
    rows: list[list[int]],
    scores: torch.Tensor,
    children: dict[tuple[int, ...], list[int]],
) -> None:
    """Add the children of every beam extended at one step: its kept children, then the rest of its
    top-`num_beams` next tokens (pruned).

    Args:
        rows: the `(beams, 1 + t)` sequences the step extended (the recorder's), as lists.
        scores: `(beams, V)` that step's log-probabilities (`generate()`'s `scores[t]`).
    """
    for row, prefix in enumerate(map(tuple, rows)):
        parent = index.get(prefix)
        # at step 0 every row is the start token (rows 1.. start at -1e9): the first one is the beam
        if parent is None or tree.nodes[parent].row is not None:
            continue
        tree.nodes[parent].row = row
        kept = children.get(prefix, [])
        top = torch.topk(scores[row], k=min(tree.num_beams, scores.shape[-1]))
        pruned = [
            int(i)
            for i, v in zip(top.indices.tolist(), top.values.tolist(), strict=True)
            if i not in kept and math.isfinite(v)
        ]
        base = np.float32(tree.nodes[parent].score)
        for token_id in kept + pruned:
            score = float(base + np.float32(scores[row, token_id].item()))  # float32, as generate() adds
            token = tokenizer.convert_ids_to_tokens(token_id)
            node = TreeNode(len(prefix) - 1, token_id, token, score, token_id in kept, row, parent)
            if node.kept:
                index[prefix + (token_id,)] = len(tree.nodes)
            tree.nodes.append(node)


def beam_tree(
    output: Any,
    steps: Sequence[torch.Tensor],
    tokenizer: Any,
    lengths: Sequence[int],
    num_beams: int,
    length_penalty: float = 1.0,
) -> BeamTree:
    """The search tree of a single-source beam search.

    Args:
        output: `generate(..., num_return_sequences=num_beams, output_scores=True,
            return_dict_in_generate=True)`: `sequences (beams, 1 + T)`, `scores` (T x `(beams, V)`),
            `sequences_scores (beams,)`.
        steps: [`SearchRecorder.steps`] of that same call.
        tokenizer: names the tokens.
        lengths: generated tokens of each returned hypothesis (up to its first `</s>`).
        num_beams: the beam width (the number of candidates shown per kept beam).
        length_penalty: the `length_penalty` of the call (final score = score / length ** length_penalty).
    """
    returned = _returned_prefixes(output, lengths)
    children = _kept_children(steps, returned)
    start = int(output.sequences[0, 0])
    root = TreeNode(-1, start, tokenizer.convert_ids_to_tokens(start), 0.0, True, 0, -1)
    tree = BeamTree([root], num_beams, length_penalty)
    index: dict[tuple[int, ...], int] = {(start,): 0}
    for t, ids in enumerate(steps):
        _expand_step(tree, tokenizer, index, ids.tolist(), output.scores[t].float(), children)
    for rank, prefix in enumerate(returned):
        leaf = tree.nodes[index[prefix]]
        leaf.hypothesis, leaf.final_score = rank, float(output.sequences_scores[rank])
        tree.leaves.append(index[prefix])
    return tree


# ----- HTML: an SVG trellis, one column per step, children next to their parent -------------------------
NODE_WIDTH, NODE_HEIGHT, COLUMN_WIDTH, ROW_HEIGHT = 96, 30, 124, 36
BEAM_TREE_CSS = """
.s2sa-beamtree { overflow: auto; max-height: 70vh; }
.s2sa-beamtree p { color: #555; font-size: 12px; margin: 0 0 4px 0; }
.s2sa-beamtree svg text { font-size: 11px; font-family: sans-serif; }
.s2sa-beamtree .s2sa-kept rect { fill: #dbe9f6; stroke: #08306b; }
.s2sa-beamtree .s2sa-pruned rect { fill: #f4f4f4; stroke: #c8c8c8; stroke-dasharray: 3 2; }
.s2sa-beamtree .s2sa-pruned text { fill: #9a9a9a; }
.s2sa-beamtree .s2sa-leaf { cursor: pointer; }
.s2sa-beamtree .s2sa-leaf rect { stroke: #e4572e; stroke-width: 2; }
.s2sa-beamtree .s2sa-on-path rect { fill: #ffe8a3; }
.s2sa-beamtree line { stroke: #888; }
.s2sa-beamtree line.s2sa-pruned-edge { stroke: #d0d0d0; stroke-dasharray: 3 2; }
"""
BEAM_TREE_NOTE = (
    "Each column is an output step; a box is a token, with the cumulative log-probability of its prefix. "
    "Blue: hypotheses beam search kept; grey: the other top-{k} next tokens of each kept beam, pruned (at "
    "the last step, beams kept but never extended). Red outline: a returned hypothesis, with its final "
    "score (score / length^{lp}) and rank; click it to see its attention."
)


def _slots(tree: BeamTree) -> list[int]:
    """The vertical slot of each node in its step's column: children grouped under their parent, parents
    in their own order (so edges do not cross), kept before pruned, higher score first."""
    slots = [0] * len(tree.nodes)
    by_step: dict[int, list[int]] = {}
    for i, node in enumerate(tree.nodes[1:], start=1):
        by_step.setdefault(node.step, []).append(i)
    for step in sorted(by_step):
        order = sorted(
            by_step[step],
            key=lambda i: (slots[tree.nodes[i].parent], not tree.nodes[i].kept, -tree.nodes[i].score),
        )
        for slot, i in enumerate(order):
            slots[i] = slot
    return slots


def _node_svg(index: int, node: TreeNode, x: int, y: int, on_path: bool) -> str:
    """One node: a `<g>` carrying its data attributes, a box, the token and its score (or final score)."""
    classes = ["s2sa-node", "s2sa-kept" if node.kept else "s2sa-pruned"]
    data = (
        f'data-node="{index}" data-step="{node.step}" data-token-id="{node.token_id}" '
        f'data-score="{node.score:.6f}" data-kept="{int(node.kept)}" data-beam="{node.beam}"'
    )
    label = f"{node.score:.3f}"
    if node.hypothesis is not None:
        classes.append("s2sa-leaf")
        data += f' data-hypothesis="{node.hypothesis}" data-final-score="{node.final_score:.6f}"'
        label = f"#{node.hypothesis + 1} final {node.final_score:.3f}"
    if on_path:
        classes.append("s2sa-on-path")
    token = html.escape(node.token if len(node.token) <= 12 else node.token[:11] + "…")
    tip = html.escape(f"{node.token} (id {node.token_id}), step {node.step + 1}, score {node.score:.4f}")
    return (
        f'<g class="{" ".join(classes)}" {data} transform="translate({x},{y})"><title>{tip}</title>'
        f'<rect width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="4"></rect>'
        f'<text x="5" y="12">{token}</text><text x="5" y="25">{label}</text></g>'
    )


def beam_tree_html(tree: BeamTree, selected: int | None = 0) -> str:
    """The tree as HTML: a note and an SVG with one `g.s2sa-node` per node (`data-step`, `data-token-id`,
    `data-score`, `data-kept="1|0"`, `data-beam`; returned leaves also `data-hypothesis`,
    `data-final-score`). The path of returned hypothesis `selected` (0-based rank) is highlighted."""
    slots = _slots(tree)
    path = (
        set(tree.path(tree.leaves[selected]))
        if selected is not None and selected < len(tree.leaves)
        else set()
    )
    place = [((node.step + 1) * COLUMN_WIDTH, slots[i] * ROW_HEIGHT + 2) for i, node in enumerate(tree.nodes)]
    edges = [
        f'<line class="{"s2sa-edge" if node.kept else "s2sa-pruned-edge"}" '
        f'x1="{place[node.parent][0] + NODE_WIDTH}" y1="{place[node.parent][1] + NODE_HEIGHT // 2}" '
        f'x2="{place[i][0]}" y2="{place[i][1] + NODE_HEIGHT // 2}"></line>'
        for i, node in enumerate(tree.nodes)
        if node.parent >= 0
    ]
    boxes = [_node_svg(i, node, *place[i], i in path) for i, node in enumerate(tree.nodes)]
    width = (max(node.step for node in tree.nodes) + 2) * COLUMN_WIDTH
    height = (max(slots) + 1) * ROW_HEIGHT + 4
    note = html.escape(BEAM_TREE_NOTE.format(k=tree.num_beams, lp=f"{tree.length_penalty:g}"))
    return (
        f'<style>{BEAM_TREE_CSS}</style><div class="s2sa-beamtree"><p>{note}</p>'
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f"{''.join(edges)}{''.join(boxes)}</svg></div>"
    )
