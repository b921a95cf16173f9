"""The data behind the attention explorer's page (no browser): hypotheses, heat-map matrices and labels,
heads, alignments, the formula, model checks, the Space files and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_inference_model import build_tiny_model, save_tiny_model
from transformers import LogitsProcessor, LogitsProcessorList

from hf_seq2seq_attn import explorer
from hf_seq2seq_attn.core.configuration_seq2seq_attn import DECODER_STYLES
from hf_seq2seq_attn.core.modeling_seq2seq_attn import ATTENTION_SCORES
from hf_seq2seq_attn.explorer import (
    Exploration,
    ModelCache,
    alignment_html,
    beam_tree_html,
    beam_tree_pick,
    beam_tree_view,
    change_model,
    encode_source,
    explore,
    formula_markdown,
    head_choices,
    head_matrix,
    heatmap_html,
    hypothesis_alignment,
    nbest_choices,
    position_choices,
    rerender,
    score_formula,
    source_coverage,
    step_attention,
    translate,
    whatif_alternatives,
    whatif_redecode,
    whatif_reset,
    write_space,
)
from hf_seq2seq_attn.explorer.whatif import TOP_K, forced_prefix, redecode, top_alternatives
from hf_seq2seq_attn.tools.inference import check_model_type

SOURCE = "el gato negro come hola"
# Float32 attention recomputed by a teacher-forced forward instead of cached decoding steps: the same
# operations in a different grouping (one call over T steps vs T calls), so agreement to ~1e-7 is
# expected; 1e-5 leaves room for other BLAS builds, while a wrong beam row differs by 0.1-0.3 (below).
ATOL = 1e-5


def sharp_model(num_attention_heads: int = 1, seed: int = 0):
    """A tiny untrained model whose attention depends strongly on the decoder state.

    An untrained model attends almost uniformly, so taking the wrong beam's row at some step would
    change the weights by ~1e-3 only; scaling the attention parameters and the embeddings makes the rows
    differ (by 0.1-0.3 between beams, checked in `test_beam_attention_follows_beam_indices`).
    """
    model, tokenizer = build_tiny_model(
        seed=seed, num_attention_heads=num_attention_heads, attention_size=16, attention_type="additive"
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".attention." in name:
                parameter.mul_(10)
        model.model.encoder.embed_tokens.weight.mul_(5)
        model.model.decoder.embed_tokens.weight.mul_(5)
    return model, tokenizer


@torch.no_grad()
def teacher_forced(model, source_ids, output_ids):
    """Independent recomputation: one forward over `start + output[:-1]` -> attention (N, T, S), log-probs (T,)."""
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id, *output_ids[:-1]]])
    out = model(
        input_ids=torch.tensor([source_ids]),
        decoder_input_ids=decoder_input_ids,
        output_attentions=True,
        use_cache=False,
        return_dict=True,
    )
    log_probs = torch.log_softmax(out.logits[0].double(), dim=-1)[torch.arange(len(output_ids)), output_ids]
    return out.cross_attentions[-1][0].double().numpy(), log_probs.numpy()


# --------------------------------------------------------------------------------------------
# Hypotheses and their attention
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("heads", [1, 2])
def test_greedy_attention_and_score_match_teacher_forcing(heads):
    model, tokenizer = sharp_model(heads)
    exploration = explore(model, tokenizer, SOURCE, max_new_tokens=12)
    assert exploration.source_ids == tokenizer(SOURCE)["input_ids"]
    assert exploration.source_tokens == tokenizer.convert_ids_to_tokens(exploration.source_ids)
    assert len(exploration.hypotheses) == 1
    hypothesis = exploration.hypotheses[0]
    reference = model.generate(
        input_ids=torch.tensor([exploration.source_ids]), num_beams=1, do_sample=False, max_new_tokens=12
    )[0, 1:].tolist()
    assert hypothesis.token_ids == reference[: len(hypothesis.token_ids)]
    assert hypothesis.tokens == tokenizer.convert_ids_to_tokens(hypothesis.token_ids)
    T, S = len(hypothesis.token_ids), len(exploration.source_ids)
    assert hypothesis.attention.shape == (heads, T, S)
    attention, log_probs = teacher_forced(model, exploration.source_ids, hypothesis.token_ids)
    np.testing.assert_allclose(hypothesis.attention, attention, atol=ATOL, rtol=0)
    assert hypothesis.score == pytest.approx(log_probs.mean(), abs=1e-5)


@pytest.mark.parametrize("heads", [1, 2])
def test_beam_attention_follows_beam_indices(heads):
    model, tokenizer = sharp_model(heads)
    exploration = explore(model, tokenizer, SOURCE, num_beams=4, max_new_tokens=12)
    assert exploration.num_beams == 4 and len(exploration.hypotheses) == 4
    scores = [hyp.score for hyp in exploration.hypotheses]
    assert scores == sorted(scores, reverse=True)
    # The naive reading (row r of every step) must be wrong for some hypothesis, or this test could not fail.
    output = model.generate(
        input_ids=torch.tensor([exploration.source_ids]),
        num_beams=4,
        num_return_sequences=4,
        do_sample=False,
        max_new_tokens=12,
        length_penalty=1.0,
        output_attentions=True,
        return_dict_in_generate=True,
    )
    naive_error = 0.0
    for rank, hypothesis in enumerate(exploration.hypotheses):
        T = len(hypothesis.token_ids)
        assert hypothesis.token_ids == output.sequences[rank, 1 : 1 + T].tolist()
        attention, log_probs = teacher_forced(model, exploration.source_ids, hypothesis.token_ids)
        np.testing.assert_allclose(hypothesis.attention, attention, atol=ATOL, rtol=0)
        # length_penalty=1: beam search's score is the mean log-probability of the chosen tokens
        assert hypothesis.score == pytest.approx(log_probs.mean(), abs=1e-4)
        naive = step_attention(output.cross_attentions, [rank] * T)
        naive_error = max(naive_error, float(np.abs(naive - attention).max()))
    assert naive_error > 0.05


def test_beam_hypotheses_stop_at_eos():
    """A hypothesis ends at its first </s>; later steps of other beams do not leak into its rows."""
    model, tokenizer = build_tiny_model(seed=1)
    eos = tokenizer.eos_token_id
    with torch.no_grad():  # make </s> likely after a few tokens so beams of different lengths finish
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
        model.lm_head.bias[eos] = 2.5
    exploration = explore(model, tokenizer, SOURCE, num_beams=3, max_new_tokens=10)
    lengths = set()
    for hypothesis in exploration.hypotheses:
        if eos in hypothesis.token_ids:
            assert hypothesis.token_ids.index(eos) == len(hypothesis.token_ids) - 1
        lengths.add(len(hypothesis.token_ids))
        attention, _ = teacher_forced(model, exploration.source_ids, hypothesis.token_ids)
        np.testing.assert_allclose(hypothesis.attention, attention, atol=ATOL, rtol=0)
    assert any(eos in hyp.token_ids for hyp in exploration.hypotheses)


def test_rows_sum_to_one_and_heads():
    model, tokenizer = sharp_model(num_attention_heads=2)
    hypothesis = explore(model, tokenizer, SOURCE, max_new_tokens=12).hypotheses[0]
    for head in (None, 0, 1):
        matrix = head_matrix(hypothesis.attention, head)
        assert matrix.shape == hypothesis.attention.shape[1:]
        # float32 softmax rows: sums within a few ulps of 1 (S <= 6 terms)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(head_matrix(hypothesis.attention, 1), hypothesis.attention[1])
    np.testing.assert_allclose(
        head_matrix(hypothesis.attention), hypothesis.attention.mean(axis=0), atol=1e-7
    )
    assert np.abs(hypothesis.attention[0] - hypothesis.attention[1]).max() > 0.01  # heads really differ
    with pytest.raises(ValueError, match="head=2 does not exist"):
        head_matrix(hypothesis.attention, 2)
    assert head_choices(2) == [("average of 2 heads", -1), ("head 1", 0), ("head 2", 1)]


def test_nbest_labels_carry_text_and_score():
    model, tokenizer = sharp_model()
    exploration = explore(model, tokenizer, SOURCE, num_beams=3, max_new_tokens=6)
    choices = nbest_choices(exploration)
    assert [value for _, value in choices] == [0, 1, 2]
    for (label, rank), hypothesis in zip(choices, exploration.hypotheses, strict=True):
        assert label.startswith(f"{rank + 1}. ") and f"{hypothesis.score:.3f}" in label


# --------------------------------------------------------------------------------------------
# The beam search tree
# --------------------------------------------------------------------------------------------
class _Watcher(LogitsProcessor):
    """The test's own observer of generate(): the running beams and the scores it is handed at each step."""

    def __init__(self):
        self.rows, self.scores = [], []

    def __call__(self, input_ids, scores):
        self.rows.append([tuple(row) for row in input_ids.tolist()])
        self.scores.append(scores.clone())
        return scores


def watched_beam_search(model, source_ids, num_beams, max_new_tokens):
    """generate() as the explorer calls it for beam search, watched by `_Watcher`."""
    watcher = _Watcher()
    output = model.generate(
        input_ids=torch.tensor([source_ids]),
        num_beams=num_beams,
        num_return_sequences=num_beams,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        length_penalty=1.0,
        output_scores=True,
        return_dict_in_generate=True,
        logits_processor=LogitsProcessorList([watcher]),
    )
    return output, watcher


def node_prefix(tree, index):
    """The token ids from the root (the decoder start token) to node `index`."""
    return tuple(tree.nodes[i].token_id for i in tree.path(index))


def eos_model():
    """A tiny model made to generate `</s>` after a few tokens, so beams finish at different steps."""
    model, tokenizer = build_tiny_model(seed=1)
    with torch.no_grad():
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
        model.lm_head.bias[tokenizer.eos_token_id] = 2.5
    return model, tokenizer


@pytest.fixture(params=["sharp", "eos"], scope="module")
def watched_tree(request):
    """A beam-5 exploration, the same search watched by the test, the returned prefixes and the tree's."""
    model, tokenizer = sharp_model() if request.param == "sharp" else eos_model()
    exploration = explore(model, tokenizer, SOURCE, num_beams=5, max_new_tokens=12)
    output, watcher = watched_beam_search(model, exploration.source_ids, 5, 12)
    plain = model.generate(  # the observers change nothing
        input_ids=torch.tensor([exploration.source_ids]),
        num_beams=5,
        num_return_sequences=5,
        do_sample=False,
        max_new_tokens=12,
        length_penalty=1.0,
    )
    assert torch.equal(plain, output.sequences)
    lengths = [len(h.token_ids) for h in exploration.hypotheses]
    returned = [tuple(output.sequences[r, : 1 + length].tolist()) for r, length in enumerate(lengths)]
    tree = exploration.beam_tree
    prefixes = [node_prefix(tree, i) for i in range(len(tree.nodes))]
    # the row of each step's batch holding a prefix (step 0: all rows are the start token; row 0 is live)
    row_of = [{row: r for r, row in reversed(list(enumerate(rows)))} for rows in watcher.rows]
    return SimpleNamespace(
        exploration=exploration,
        output=output,
        watcher=watcher,
        returned=returned,
        tree=tree,
        prefixes=prefixes,
        row_of=row_of,
        kind=request.param,
    )


def test_beam_tree_kept_nodes_are_the_beams_generate_kept(watched_tree):
    w = watched_tree
    steps = len(w.watcher.rows)
    kept = [i for i, node in enumerate(w.tree.nodes) if node.kept and node.step >= 0]
    for t in range(steps):
        shown = {w.prefixes[i] for i in kept if w.tree.nodes[i].step == t}
        expected = set(w.watcher.rows[t + 1]) if t + 1 < steps else set()
        expected |= {prefix[: t + 2] for prefix in w.returned if len(prefix) >= t + 2}
        assert shown == expected, t  # kept = the beams generate() extended next, and the returned ones
    # cumulative scores: the sums of generate()'s per-step scores along each kept path
    for i in kept:
        prefix, node = w.prefixes[i], w.tree.nodes[i]
        steps_scores = [
            float(w.watcher.scores[t][w.row_of[t][prefix[: t + 1]], prefix[t + 1]])
            for t in range(node.step + 1)
        ]
        assert node.score == pytest.approx(sum(steps_scores), abs=1e-5)
        assert node.beam == w.row_of[node.step][prefix[:-1]]
    if w.kind == "eos":  # the test covers hypotheses that end before the search does
        assert len({len(prefix) for prefix in w.returned}) > 1


def test_beam_tree_leaves_are_the_returned_hypotheses_with_their_scores(watched_tree):
    w = watched_tree
    assert len(w.tree.leaves) == 5
    for rank, leaf in enumerate(w.tree.leaves):
        node, length = w.tree.nodes[leaf], len(w.returned[rank]) - 1
        assert w.prefixes[leaf] == w.returned[rank] and node.hypothesis == rank
        final = float(w.output.sequences_scores[rank])
        assert node.final_score == pytest.approx(final, abs=1e-6)
        assert node.score / length**1.0 == pytest.approx(final, abs=1e-5)  # length_penalty=1
        beams = [w.tree.nodes[i].beam for i in w.tree.path(leaf)[1:]]
        assert beams == w.output.beam_indices[rank, :length].tolist()


def test_beam_tree_pruned_nodes_are_the_top_k_candidates_not_kept(watched_tree):
    w = watched_tree
    kept = {w.prefixes[i] for i, node in enumerate(w.tree.nodes) if node.kept}
    pruned = {w.prefixes[i] for i, node in enumerate(w.tree.nodes) if not node.kept}
    expected = set()
    for t, rows in enumerate(w.row_of):
        for prefix, row in rows.items():
            top = torch.topk(w.watcher.scores[t][row], 5).indices.tolist()
            expected |= {prefix + (token,) for token in top} - kept
    assert pruned == expected and len(pruned) > 10
    for i, node in enumerate(w.tree.nodes):
        if not node.kept:
            t, parent = node.step, w.prefixes[node.parent]
            step_score = float(w.watcher.scores[t][w.row_of[t][parent], node.token_id])
            assert node.score == pytest.approx(w.tree.nodes[node.parent].score + step_score, abs=1e-5), i
    model, tokenizer = sharp_model()
    assert explore(model, tokenizer, SOURCE, max_new_tokens=12).beam_tree is None  # greedy: no tree


class _TreeParser(HTMLParser):
    """The attributes of every node (`g.s2sa-node`) of the beam tree's SVG."""

    def __init__(self):
        super().__init__()
        self.nodes = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "g" and "s2sa-node" in attributes.get("class", "").split():
            self.nodes.append(attributes)


def test_beam_tree_html_carries_every_node_and_marks_the_leaves():
    model, tokenizer = sharp_model()
    exploration = explore(model, tokenizer, SOURCE, num_beams=5, max_new_tokens=12)
    tree = exploration.beam_tree
    parser = _TreeParser()
    parser.feed(beam_tree_html(tree, selected=2))
    assert len(parser.nodes) == len(tree.nodes)
    for shown, node in zip(parser.nodes, tree.nodes, strict=True):
        assert int(shown["data-step"]) == node.step and int(shown["data-token-id"]) == node.token_id
        assert float(shown["data-score"]) == pytest.approx(node.score, abs=1e-6)
        assert shown["data-kept"] == ("1" if node.kept else "0") and int(shown["data-beam"]) == node.beam
        classes = shown["class"].split()
        assert ("s2sa-pruned" in classes) == (not node.kept)
        assert ("s2sa-leaf" in classes) == (node.hypothesis is not None)
    leaves = [shown for shown in parser.nodes if "data-hypothesis" in shown]
    assert [int(shown["data-hypothesis"]) for shown in leaves] == sorted(
        range(5), key=lambda r: tree.leaves[r]
    )
    on_path = [int(shown["data-node"]) for shown in parser.nodes if "s2sa-on-path" in shown["class"].split()]
    assert on_path == tree.path(tree.leaves[2])


def test_beam_tree_handlers_show_the_leaf_heatmap():
    pytest.importorskip("gradio")
    model, tokenizer = sharp_model(num_attention_heads=2)
    exploration = explore(model, tokenizer, SOURCE, num_beams=5, max_new_tokens=12)
    box, tree, heatmap = beam_tree_view(exploration, 0, -1)
    assert box["visible"] is True and tree == beam_tree_html(exploration.beam_tree, 0)
    tree, heatmap = beam_tree_pick(exploration, 1, {"hypothesis": 3})
    hypothesis = exploration.hypotheses[3]
    assert tree == beam_tree_html(exploration.beam_tree, 3)
    caption = "Leaf: hypothesis 4 (head 2): rows = output tokens, columns = source tokens. Hover a cell."
    assert heatmap == heatmap_html(
        hypothesis.attention[1], exploration.source_tokens, hypothesis.tokens, caption, coverage=True
    )
    attention, _ = teacher_forced(model, exploration.source_ids, hypothesis.token_ids)  # the leaf's own
    np.testing.assert_allclose(hypothesis.attention, attention, atol=ATOL, rtol=0)
    parser = _TableParser()
    parser.feed(heatmap)
    assert parser.rows == hypothesis.tokens
    greedy = explore(model, tokenizer, SOURCE, max_new_tokens=12)
    for hidden in (beam_tree_view(greedy, 0, -1), beam_tree_view(None, None, None)):
        assert hidden[0]["visible"] is False and hidden[1:] == ("", "")


def test_translate_with_tree_is_translate_then_the_tree_of_its_best_hypothesis(tmp_path):
    """The Translate button's handler: the translation's outputs and its tree, in one event."""
    from hf_seq2seq_attn.explorer import translate_with_tree

    pytest.importorskip("gradio")
    folder = save_sharp_model(tmp_path / "model")
    cache = ModelCache()
    outputs = translate_with_tree(cache, folder, SOURCE, "beam search", 4)
    alone = translate(cache, folder, SOURCE, "beam search", 4)
    assert len(outputs) == len(alone) + 3 and outputs[3:5] == alone[3:5]  # the same heat-map and alignment
    exploration = outputs[len(alone) - 1]
    box, tree, heatmap = outputs[len(alone) :]
    assert box["visible"] is True and tree == beam_tree_html(exploration.beam_tree, 0)
    assert (tree, heatmap) == beam_tree_view(exploration, 0, -1)[1:]
    greedy = translate_with_tree(cache, folder, SOURCE, "greedy", 4)
    assert greedy[-3]["visible"] is False and greedy[-2:] == ("", "")


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------
def test_long_input_is_truncated_with_a_notice():
    model, tokenizer = build_tiny_model()
    tokenizer.model_max_length = 12
    ids, notices = encode_source(tokenizer, "el gato " * 50)
    assert len(ids) == 12 and ids[-1] == tokenizer.eos_token_id
    assert ids[:11] == tokenizer("el gato " * 50)["input_ids"][:11]
    assert len(notices) == 1 and "101 tokens" in notices[0] and "at most 12" in notices[0]
    paste = ("hola mundo " * 1000)[:10_000]  # the 10,000-character paste
    exploration = explore(model, tokenizer, paste, max_new_tokens=4)
    assert len(exploration.source_ids) == 12 and exploration.notices
    assert exploration.hypotheses[0].attention.shape[2] == 12
    assert encode_source(tokenizer, "hola mundo") == (tokenizer("hola mundo")["input_ids"], [])


def test_empty_text_and_bad_arguments():
    model, tokenizer = build_tiny_model()
    exploration = explore(model, tokenizer, "", max_new_tokens=3)  # the page refuses it; the function works
    assert exploration.source_tokens == ["</s>"]
    with pytest.raises(TypeError):
        explore(model, tokenizer, None)
    with pytest.raises(ValueError, match="num_beams"):
        explore(model, tokenizer, "hola", num_beams=0)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
class _TableParser(HTMLParser):
    """Collect column labels, row labels and cell attributes of the heat-map table."""

    def __init__(self):
        super().__init__()
        self.columns, self.rows, self.cells = [], [], []  # cells: (row, column, attributes)
        self._label = None
        self._column = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "th" and attributes.get("class") in ("s2sa-src", "s2sa-tgt"):
            self._label = attributes["class"]
        elif tag == "tr":
            self._column = 0
        elif tag == "td":
            self.cells.append((len(self.rows) - 1, self._column, attributes))
            self._column += 1

    def handle_data(self, data):
        if self._label == "s2sa-src":
            self.columns.append(data)
        elif self._label == "s2sa-tgt":
            self.rows.append(data)
        self._label = None


def test_heatmap_html_rows_are_output_tokens_and_cells_carry_weights():
    model, tokenizer = sharp_model(num_attention_heads=2)
    exploration = explore(model, tokenizer, SOURCE, num_beams=2, max_new_tokens=8)
    hypothesis = exploration.hypotheses[1]
    matrix = head_matrix(hypothesis.attention, 0)
    parser = _TableParser()
    parser.feed(heatmap_html(matrix, exploration.source_tokens, hypothesis.tokens))
    assert parser.rows == hypothesis.tokens  # one row per output token, labelled with it
    assert parser.columns == exploration.source_tokens  # `</s>` unescaped back by the parser
    T, S = matrix.shape
    assert len(parser.cells) == T * S
    assert [(t, s) for t, s, _ in parser.cells] == [(t, s) for t in range(T) for s in range(S)]
    for t, s, cell in parser.cells:
        assert cell["style"] == f"--w:{matrix[t, s]:.3f}"  # the colour's weight
        assert (
            cell["data-tip"] == f"{hypothesis.tokens[t]} ← {exploration.source_tokens[s]}: {matrix[t, s]:.3f}"
        )


def test_heatmap_html_escapes_tokens_and_checks_shapes():
    page = heatmap_html(np.array([[0.25, 0.75]]), ['"q"', "<unk>"], ["a&b"])
    assert "<unk>" not in page.replace("&lt;unk&gt;", "") and "&lt;unk&gt;" in page and "&amp;" in page
    assert 'data-tip="a&amp;b ← &quot;q&quot;: 0.250"' in page
    with pytest.raises(ValueError, match="rows = target"):
        heatmap_html(np.zeros((2, 3)), ["a", "b", "c"], ["x"])


class _CoverageParser(HTMLParser):
    """Collect the coverage cells (`td.s2sa-cov`): their `data-coverage` and the number they show."""

    def __init__(self):
        super().__init__()
        self.values, self.shown = [], []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "td" and attributes.get("class") == "s2sa-cov":
            self.values.append(float(attributes["data-coverage"]))
            self._in_cell = True

    def handle_data(self, data):
        if self._in_cell:
            self.shown.append(data)
            self._in_cell = False


def save_sharp_model(folder, num_attention_heads: int = 1) -> str:
    """`sharp_model` saved as a folder the page's model cache loads."""
    model, tokenizer = sharp_model(num_attention_heads)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize(
    ("mode", "index", "head"), [("greedy", 0, -1), ("beam search", 2, -1), ("beam search", 1, 1)]
)
def test_coverage_row_is_the_column_sums_of_the_heatmap(tmp_path, mode, index, head):
    """The page's coverage row: one cell per source token, each the attention its column received."""
    pytest.importorskip("gradio")
    folder = save_sharp_model(tmp_path / "sharp", num_attention_heads=2)
    cache = ModelCache()
    model, _ = cache.get(folder)
    exploration = translate(cache, folder, SOURCE, mode, 3)[-1]
    heatmap, _ = rerender(cache, folder, exploration, index, head)
    hypothesis = exploration.hypotheses[index]
    attention, _ = teacher_forced(model, exploration.source_ids, hypothesis.token_ids)  # (N, T, S)
    matrix = attention.mean(axis=0) if head < 0 else attention[head]  # (T, S), recomputed independently
    parser = _CoverageParser()
    parser.feed(heatmap)
    assert len(parser.values) == len(exploration.source_tokens)
    # The page's own matrix: exactly its column sums (data-coverage keeps 6 decimals), shown with 2.
    shown_matrix = head_matrix(hypothesis.attention, head if head >= 0 else None)
    np.testing.assert_allclose(parser.values, source_coverage(shown_matrix), atol=1e-6, rtol=0)
    assert parser.shown == [f"{value:.2f}" for value in parser.values]
    # Recomputed independently by teacher forcing: over the page's 22 steps the sharp model's float32
    # cached and teacher-forced weights drift apart by up to ~1e-3 per cell (~5e-4 per column sum),
    # while another head or hypothesis differs by > 0.1.
    np.testing.assert_allclose(parser.values, matrix.sum(axis=0), atol=2e-3, rtol=0)
    assert sum(parser.values) == pytest.approx(len(hypothesis.token_ids), abs=1e-4)  # rows sum to 1
    assert np.ptp(parser.values) > 0.1, "the sharp model's columns differ, so a wrong axis would show"
    assert "Coverage: the total attention" in heatmap
    assert "<tfoot" not in heatmap_html(matrix, exploration.source_tokens, hypothesis.tokens)  # opt-in


def test_alignment_of_the_chosen_hypothesis():
    alignment_module = pytest.importorskip("hf_seq2seq_attn.tools.alignment")
    model, tokenizer = sharp_model(num_attention_heads=2)
    exploration = explore(model, tokenizer, SOURCE, num_beams=3, max_new_tokens=8)
    for index in range(3):
        for head in (None, 1):
            alignment = hypothesis_alignment(tokenizer, exploration, index, head)
            hypothesis = exploration.hypotheses[index]
            assert alignment.translation == hypothesis.text
            assert alignment.source_words == SOURCE.split()
            expected = alignment_module.alignment_from_attention(
                tokenizer,
                exploration.source_ids,
                hypothesis.token_ids,
                hypothesis.attention.transpose(1, 0, 2),
                head=head,
            )
            assert alignment.pairs == expected.pairs
            page = alignment_html(alignment)
            assert alignment.pharaoh() in page
    assert "not in this version" in alignment_html(None)


# --------------------------------------------------------------------------------------------
# Formula, model checks
# --------------------------------------------------------------------------------------------
def test_formula_names_the_config_and_links_the_formula_table_in_the_page():
    model, _ = build_tiny_model(attention_type="general", decoder_style="luong", input_feeding=True)
    text = formula_markdown(model.config)
    assert "`score(s, h) = s^T W h`" in text and 'attention_type="general"' in text
    assert 'decoder_style="luong"' in text and "input feeding" in text
    assert "](#formula-table)" in text
    table = explorer.formula_table_html()
    assert (
        'id="formula-table"' in table and table.count("<tr>") == 1 + 5 + 1 + 2
    )  # header, scores, heads, styles
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "## Attention: each formula and its config value" in readme, "the page mirrors this README table"
    multi = formula_markdown(build_tiny_model(num_attention_heads=2, attention_size=16)[0].config)
    assert "2 heads" in multi and "num_attention_heads=2" in multi and "v^T tanh(W_q s + W_k h)" in multi


def test_formulas_come_from_the_score_classes():
    """The page states each score as its class in the modeling file does: one place for each formula."""
    table = explorer.formula_table_html()
    for name, score_class in ATTENTION_SCORES.items():
        equation, citation = score_formula(name)
        assert equation == score_class.equation and citation in score_class.__doc__
        assert explorer.CITATION_PATTERN.fullmatch(citation), (name, citation)
        assert f"<code>{equation}</code>" in table and f"attention_type=&#x27;{name}&#x27;" in table
        markdown = formula_markdown(SimpleNamespace(attention_type=name))
        assert f"`score(s, h) = {equation}`" in markdown and citation in markdown
    assert score_formula("additive") == ("v^T tanh(W_q s + W_k h)", "Bahdanau et al. 2015, eq. 6")
    assert score_formula("no_such_score") == ("?", "?")
    assert set(explorer.DECODER_STYLE_NOTES) == set(DECODER_STYLES)


def test_check_model_type(tmp_path):
    good = save_tiny_model(tmp_path / "good")
    check_model_type(good)
    with pytest.raises(FileNotFoundError, match="No model folder"):
        check_model_type(str(tmp_path / "missing"))
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(ValueError, match="'bert' model, not a 'seq2seq_attn'"):
        check_model_type(str(other))
    (tmp_path / "good" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        check_model_type(good)


# --------------------------------------------------------------------------------------------
# The page's event handlers, without a browser
# --------------------------------------------------------------------------------------------
def _is_keep(update) -> bool:
    """A gradio update that changes nothing (`gr.update()`)."""
    return update == {"__type__": "update"}


def test_translate_and_rerender_handlers(tmp_path):
    pytest.importorskip("gradio")
    folder = save_tiny_model(tmp_path / "two_heads", num_attention_heads=2, attention_size=16)
    cache = ModelCache()
    model, tokenizer = cache.get(folder)
    status, nbest, head, heatmap, alignment, exploration = translate(cache, folder, SOURCE, "beam search", 3)
    expected = explore(model, tokenizer, SOURCE, num_beams=3)
    assert status == "" and [h.token_ids for h in exploration.hypotheses] == [
        h.token_ids for h in expected.hypotheses
    ]
    assert nbest["choices"] == nbest_choices(expected) and nbest["value"] == 0 and head["value"] == -1
    first = expected.hypotheses[0]
    caption = "Hypothesis 1 (average of heads): rows = output tokens, columns = source tokens. Hover a cell."
    assert heatmap == heatmap_html(
        head_matrix(first.attention), expected.source_tokens, first.tokens, caption, coverage=True
    )
    assert "Word alignment" in alignment
    assert len(translate(cache, folder, SOURCE, "greedy", 3)[-1].hypotheses) == 1
    picked, _ = rerender(cache, folder, exploration, 2, 1)
    assert "Hypothesis 3 (head 2)" in picked
    assert rerender(cache, folder, None, 0, -1) == ("", "")
    for text in ("", "   ", None):
        status, nbest, head, heatmap, alignment, state = translate(cache, folder, text, "greedy", 2)
        assert "Type a sentence" in status and (heatmap, alignment, state) == ("", "", None)
        assert nbest["choices"] == [] and nbest["value"] is None and head["value"] == -1
    assert (
        "Could not load the model: No model folder"
        in translate(cache, str(tmp_path / "no"), "hola", "greedy", 2)[0]
    )


def test_change_model_handler(tmp_path):
    pytest.importorskip("gradio")
    folder = save_tiny_model(tmp_path / "model")
    cache = ModelCache()
    for path, message in (("  ", "Type a model folder"), (str(tmp_path / "missing"), "No model folder")):
        outputs = change_model(cache, path)
        assert len(outputs) == 9 and message in outputs[3]
        assert all(_is_keep(update) for position, update in enumerate(outputs) if position != 3)
    name, title, formula, status, head, nbest, heatmap, alignment, state = change_model(cache, f" {folder} ")
    assert (name, title, status) == (folder, f"### {folder}", f"Loaded {folder}.")
    assert formula == formula_markdown(cache.get(folder)[0].config)
    assert (
        head["visible"] is False and nbest["choices"] == [] and (heatmap, alignment, state) == ("", "", None)
    )


# --------------------------------------------------------------------------------------------
# What if: top-k alternatives at a step, re-decoding with a forced prefix
# --------------------------------------------------------------------------------------------
def expected_redecoding(model, source_ids, prefix, num_beams):
    """`generate()` called directly with the forced prefix, the explorer's budget counting the forced tokens."""
    input_ids = torch.tensor([source_ids])
    remaining = 2 * len(source_ids) + 10 - (len(prefix) - 1)
    if remaining < 1:  # the forced tokens fill the budget: nothing left to generate
        return prefix[1:]
    sequences = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        decoder_input_ids=torch.tensor([prefix]),
        num_beams=num_beams,
        do_sample=False,
        max_new_tokens=remaining,
        **({"length_penalty": 1.0} if num_beams > 1 else {}),
    )
    ids = sequences[0, 1:].tolist()
    eos = model.config.eos_token_id
    return ids[: ids.index(eos) + 1] if eos in ids else ids


@torch.no_grad()
def step_probabilities(model, source_ids, prefix_ids):
    """p(y_t | x, y_<t) over the vocabulary after `start + prefix_ids`, from a plain forward: (V,) float64."""
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id, *prefix_ids]])
    logits = model(
        input_ids=torch.tensor([source_ids]), decoder_input_ids=decoder_input_ids, use_cache=False
    ).logits
    return torch.softmax(logits[0, -1].double(), dim=-1)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_top_alternatives_are_the_k_most_probable_tokens(num_beams):
    model, tokenizer = sharp_model()
    exploration = explore(model, tokenizer, SOURCE, num_beams=num_beams, max_new_tokens=8)
    hypothesis = exploration.hypotheses[-1]  # for beam search, not the best: its tokens are not argmaxes
    found_original = 0
    for position in range(len(hypothesis.token_ids)):
        alternatives = top_alternatives(
            model, tokenizer, exploration.source_ids, hypothesis.token_ids, position
        )
        probs = step_probabilities(model, exploration.source_ids, hypothesis.token_ids[:position])
        expected = torch.argsort(probs, descending=True)[:TOP_K].tolist()
        assert [a.token_id for a in alternatives] == expected
        assert [a.token for a in alternatives] == tokenizer.convert_ids_to_tokens(expected)
        np.testing.assert_allclose([a.probability for a in alternatives], probs[expected].numpy(), atol=1e-6)
        assert sum(a.probability for a in alternatives) <= 1.0
        original = hypothesis.token_ids[position]
        in_top_k = int((probs > probs[original]).sum()) < TOP_K
        assert (original in expected) == in_top_k
        found_original += in_top_k
        if num_beams == 1:  # greedy: the original is the most probable token
            assert expected[0] == original
    assert found_original > 0
    with pytest.raises(ValueError, match="position=99"):
        top_alternatives(model, tokenizer, exploration.source_ids, hypothesis.token_ids, 99)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_redecode_is_generate_with_the_forced_prefix(num_beams):
    model, tokenizer = sharp_model(num_attention_heads=2)
    exploration = explore(model, tokenizer, SOURCE, num_beams=num_beams)
    hypothesis = exploration.hypotheses[0]
    source_ids, token_ids = exploration.source_ids, hypothesis.token_ids
    start = model.config.decoder_start_token_id
    changed = 0
    for position in (0, 2, len(token_ids) - 1):
        alternatives = top_alternatives(model, tokenizer, source_ids, token_ids, position)
        chosen = next(a.token_id for a in alternatives if a.token_id != token_ids[position])
        prefix = [start, *token_ids[:position], chosen]
        assert forced_prefix(model, token_ids, position, chosen) == prefix
        new = redecode(model, tokenizer, source_ids, token_ids, position, chosen, num_beams=num_beams)
        assert new.prefix == prefix and new.num_beams == num_beams
        assert new.token_ids == expected_redecoding(model, source_ids, prefix, num_beams)
        assert new.token_ids[: position + 1] == prefix[1:]
        changed += new.token_ids != token_ids
        assert new.tokens == tokenizer.convert_ids_to_tokens(new.token_ids)
        assert new.text == tokenizer.decode(new.token_ids, skip_special_tokens=True)
        attention, log_probs = teacher_forced(model, source_ids, new.token_ids)
        np.testing.assert_allclose(new.attention, attention, atol=ATOL, rtol=0)
        np.testing.assert_allclose(new.log_probs, log_probs, atol=1e-6)
        assert new.log_prob == pytest.approx(log_probs.sum(), abs=1e-5)
        assert new.original_log_prob / len(token_ids) == pytest.approx(hypothesis.score, abs=1e-4)
    assert changed == 3


def test_redecode_greedy_matches_a_manual_argmax_loop_and_stops_at_a_forced_eos():
    """Independent of generate(): greedy from the forced prefix is an argmax loop of full forward passes."""
    model, tokenizer = sharp_model()
    exploration = explore(model, tokenizer, SOURCE)
    token_ids, source_ids = exploration.hypotheses[0].token_ids, exploration.source_ids
    alternatives = top_alternatives(model, tokenizer, source_ids, token_ids, 1)
    chosen = next(a.token_id for a in alternatives if a.token_id != token_ids[1])
    new = redecode(model, tokenizer, source_ids, token_ids, 1, chosen)
    manual = [token_ids[0], chosen]
    while len(manual) < 2 * len(source_ids) + 10 and manual[-1] != tokenizer.eos_token_id:
        manual.append(int(step_probabilities(model, source_ids, manual).argmax()))
    assert new.token_ids == manual
    eos = redecode(model, tokenizer, source_ids, token_ids, 2, tokenizer.eos_token_id)
    assert eos.token_ids == [*token_ids[:2], tokenizer.eos_token_id] and eos.attention.shape[1] == 3


def test_whatif_handlers(tmp_path):
    pytest.importorskip("gradio")
    folder = save_sharp_model(tmp_path / "sharp", num_attention_heads=2)
    cache = ModelCache()
    model, tokenizer = cache.get(folder)
    exploration = translate(cache, folder, SOURCE, "beam search", 3)[-1]
    hypothesis = exploration.hypotheses[1]
    positions, tokens, result, heatmap = whatif_reset(exploration, 1)
    assert positions["choices"] == position_choices(hypothesis) and positions["value"] is None
    assert positions["choices"][0] == (f"1. {hypothesis.tokens[0]}", 0)
    assert tokens["choices"] == [] and (result, heatmap) == ("", "")
    assert whatif_reset(None, 0)[0]["choices"] == []
    tokens, message = whatif_alternatives(cache, folder, exploration, 1, 2)
    alternatives = top_alternatives(model, tokenizer, exploration.source_ids, hypothesis.token_ids, 2)
    assert [value for _, value in tokens["choices"]] == [a.token_id for a in alternatives] and message == ""
    # picked: the most probable token other than the original
    assert tokens["value"] == next(a.token_id for a in alternatives if a.token_id != hypothesis.token_ids[2])
    for (label, _), alternative in zip(tokens["choices"], alternatives, strict=True):
        assert label.startswith(f"{alternative.token} (p = {alternative.probability:.3f}")
        assert label.endswith(", original)") == (alternative.token_id == hypothesis.token_ids[2])
    result, heatmap = whatif_redecode(cache, folder, exploration, 1, 2, tokens["value"], 1)
    expected = redecode(model, tokenizer, exploration.source_ids, hypothesis.token_ids, 2, tokens["value"], 3)
    assert f'data-ids="{" ".join(map(str, expected.token_ids))}"' in result
    assert (
        f'<b class="s2sa-whatif-text">{expected.text}</b>' in result and "beam search with 3 beams" in result
    )
    assert f"{expected.log_prob - expected.original_log_prob:+.3f}" in result
    caption = "What if (head 2): rows = output tokens, columns = source tokens."
    assert heatmap == heatmap_html(
        expected.attention[1], exploration.source_tokens, expected.tokens, caption, coverage=True
    )
    assert "Pick an output token" in whatif_redecode(cache, folder, exploration, 1, None, 5, -1)[0]
    assert whatif_alternatives(cache, folder, None, 0, 1)[0]["choices"] == []
    assert "not an output position" in whatif_redecode(cache, folder, exploration, 1, 99, 5, -1)[0]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def test_cli_rejects_bad_models_with_exit_2(tmp_path, capsys):
    assert explorer.main(["--model", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: No model folder")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "marian"}))
    assert explorer.main(["--model", str(tmp_path)]) == 2
    assert "not a 'seq2seq_attn'" in capsys.readouterr().err
    good = save_tiny_model(tmp_path / "good")
    assert explorer.main(["--model", good, "--model", good, "--model", good]) == 2
    assert "at most 2" in capsys.readouterr().err
    assert explorer.main(["--model", good, "--port", "70000"]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        explorer.main(["--help"])
    assert exit_info.value.code == 0
    assert "seq2seq-attn explore --model outputs/demo" in capsys.readouterr().out


def test_package_names_load_their_modules_lazily():
    """Every name the package lists comes from the submodule that defines it, loaded on first access."""
    for name in explorer.__all__:
        value = getattr(explorer, name)
        assert value.__module__.startswith("hf_seq2seq_attn.explorer."), name
    assert explorer.TOP_K == 5 and explorer.whatif.TOP_K == 5
    with pytest.raises(AttributeError, match="no_such_name"):
        explorer.no_such_name  # noqa: B018


# --------------------------------------------------------------------------------------------
# Space
# --------------------------------------------------------------------------------------------
BUILD_SPACES = """
import json, runpy, sys
import gradio as gr
from hf_seq2seq_attn.explorer import explore, load_model
report = {}
for folder in sys.argv[1:]:
    namespace = runpy.run_path(folder + "/app.py")  # __name__ != "__main__": builds, does not launch
    demo = namespace["demo"]
    assert isinstance(demo, gr.Blocks), type(demo)
    page = " ".join(str(block.value) for block in demo.blocks.values() if isinstance(block, gr.Markdown))
    report[folder] = {"models": namespace["MODELS"], "load_error": "Could not load the model" in page}
model, tokenizer = load_model(sys.argv[1] + "/model")
report["tokens"] = explore(model, tokenizer, "hola mundo", max_new_tokens=3).hypotheses[0].tokens
print(json.dumps(report))
"""


def test_write_space_runs_the_app_offline(tmp_path):
    """Both kinds of Space (a copied folder, a Hub id) build their page in a fresh offline process."""
    pytest.importorskip("gradio")
    folder = save_tiny_model(tmp_path / "model_src")
    (tmp_path / "model_src" / "training_args.bin").write_bytes(b"secret")
    space, hub_space = tmp_path / "space", tmp_path / "hub_space"
    written = write_space(folder, str(space))
    assert {
        "app.py",
        "requirements.txt",
        "README.md",
        "model/model.safetensors",
        "model/tokenizer.json",
        "hf_seq2seq_attn/explorer/__init__.py",
        "hf_seq2seq_attn/explorer/app.py",
        "hf_seq2seq_attn/explorer/whatif.py",
        "hf_seq2seq_attn/core/modeling_seq2seq_attn.py",
    } <= set(written)
    assert not any(name.startswith("hf_seq2seq_attn/benchmark/") for name in written)
    assert "from hf_seq2seq_attn.explorer.app import build_app, launch_app" in (space / "app.py").read_text()
    assert not (space / "model" / "training_args.bin").exists()
    requirements = (space / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("gradio") for line in requirements)
    assert any(line.startswith("transformers") for line in requirements)
    assert not any("hf_seq2seq_attn" in line for line in requirements), "the package ships inside the Space"
    assert "sdk: gradio" in (space / "README.md").read_text()
    write_space("nobody/not-cached-model", str(hub_space))
    assert "MODELS = ['nobody/not-cached-model']" in (hub_space / "app.py").read_text()

    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    result = subprocess.run(
        [sys.executable, "-c", BUILD_SPACES, str(space), str(hub_space)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report[str(space)] == {"models": ["model"], "load_error": False}
    # an uncached Hub id offline: the page still builds and says why the model is missing
    assert report[str(hub_space)] == {"models": ["nobody/not-cached-model"], "load_error": True}
    model, tokenizer = build_tiny_model()
    assert report["tokens"] == explore(model, tokenizer, "hola mundo", max_new_tokens=3).hypotheses[0].tokens


def test_push_space_uploads_the_written_folder(tmp_path, monkeypatch):
    """Only the network is replaced: the files handed to upload_folder are the real ones."""
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs)

    def upload_folder(self, folder_path, repo_id, **kwargs):
        calls["upload"] = (repo_id, kwargs, sorted(os.listdir(folder_path)))
        with open(os.path.join(folder_path, "app.py"), encoding="utf-8") as handle:
            calls["app"] = handle.read()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = explorer.push_space("someone/model", "someone/explorer")
    assert url == "https://huggingface.co/spaces/someone/explorer"
    assert calls["create"] == (
        "someone/explorer",
        {"repo_type": "space", "space_sdk": "gradio", "private": False, "exist_ok": True},
    )
    assert calls["upload"][0] == "someone/explorer" and calls["upload"][1]["repo_type"] == "space"
    assert calls["upload"][2] == ["README.md", "app.py", "hf_seq2seq_attn", "requirements.txt"]
    assert "MODELS = ['someone/model']" in calls["app"]


def test_exploration_dataclass_defaults():
    assert Exploration(source_ids=[2], source_tokens=["</s>"], hypotheses=[]).num_heads == 1


# ----- Nearest training sentences ([`hf_seq2seq_attn.explorer.neighbors`]) ---------------------------
NEIGHBOR_PAIRS = [
    ("el gato negro come", "the black cat eats"),
    ("hola mundo", "hello world"),
    ("buenos dias amigo", "good morning friend"),
    ("el perro come", "the dog eats"),
    ("gracias", "thanks"),
    ("el gato come hola", "the cat eats hello"),
]


def write_pairs(path: Path, pairs) -> str:
    """A JSON Lines training file of `pairs`, as the train command reads it."""
    path.write_text(
        "".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in pairs), encoding="utf-8"
    )
    return str(path)


class CountingEncoder:
    """Counts the calls of the model's real encoder (observation only: the encoder still runs)."""

    def __init__(self, model, monkeypatch):
        self.calls = 0
        encoder = model.get_encoder()
        original = encoder.forward

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(encoder, "forward", counted)


def test_neighbors_of_a_training_sentence_start_with_it(tmp_path, monkeypatch):
    """A sentence copied from the file comes first with similarity ~1; the similarities are the cosines
    of the mean-pooled encoder states (recomputed here one sentence at a time, without padding)."""
    from hf_seq2seq_attn.explorer import load_or_build_index, nearest

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = save_sharp_model(tmp_path / "model")
    model, tokenizer = explorer.load_model(folder)
    path = write_pairs(tmp_path / "train.jsonl", NEIGHBOR_PAIRS)
    index = load_or_build_index(folder, model, tokenizer, path, limit=100)
    assert index.sources == [s for s, _ in NEIGHBOR_PAIRS] and index.vectors.shape[0] == len(NEIGHBOR_PAIRS)
    with torch.no_grad():
        expected = []
        for source, _ in NEIGHBOR_PAIRS:
            ids = torch.tensor([tokenizer(source)["input_ids"]])
            states = model.get_encoder()(input_ids=ids).last_hidden_state[0]  # (S, K)
            expected.append(torch.nn.functional.normalize(states.mean(dim=0), dim=0))
    torch.testing.assert_close(index.vectors, torch.stack(expected), atol=1e-5, rtol=1e-5)
    for row, (source, target) in enumerate(NEIGHBOR_PAIRS):
        found = nearest(model, tokenizer, index, source, k=3)
        assert (found[0].source, found[0].target, found[0].row) == (source, target, row)
        assert found[0].similarity == pytest.approx(1.0, abs=1e-5)
        assert [n.similarity for n in found] == sorted((n.similarity for n in found), reverse=True)
        cosines = (torch.stack(expected) @ expected[row]).tolist()
        assert [n.similarity for n in found] == pytest.approx(sorted(cosines, reverse=True)[:3], abs=1e-5)


def test_neighbor_index_is_cached_beside_the_model_and_invalidated_by_a_changed_file(tmp_path, monkeypatch):
    from hf_seq2seq_attn.explorer import load_or_build_index

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = save_sharp_model(tmp_path / "model")
    model, tokenizer = explorer.load_model(folder)
    path = write_pairs(tmp_path / "train.jsonl", NEIGHBOR_PAIRS)
    counter = CountingEncoder(model, monkeypatch)
    first = load_or_build_index(folder, model, tokenizer, path, limit=4)
    assert counter.calls == 1 and len(first.sources) == 4  # 4 sentences: one batch
    assert Path(first.cache_file).parent == Path(folder) / "explorer_neighbors"
    assert sorted(p.suffix for p in Path(first.cache_file).parent.iterdir()) == [".json", ".safetensors"]
    again = load_or_build_index(folder, model, tokenizer, path, limit=4)
    assert counter.calls == 1  # loaded: the encoder did not run
    assert again.cache_file == first.cache_file and again.sources == first.sources
    torch.testing.assert_close(again.vectors, first.vectors)
    load_or_build_index(folder, model, tokenizer, path, limit=5)  # another N: another index
    assert counter.calls == 2
    write_pairs(tmp_path / "train.jsonl", NEIGHBOR_PAIRS[::-1])  # the file changes
    changed = load_or_build_index(folder, model, tokenizer, path, limit=4)
    assert counter.calls == 3 and changed.sources == [s for s, _ in NEIGHBOR_PAIRS[::-1][:4]]
    with torch.no_grad():
        model.get_encoder().embed_tokens.weight.add_(0.1)  # other weights
    load_or_build_index(folder, model, tokenizer, path, limit=4)
    assert counter.calls == 4
    assert not (tmp_path / "cache").exists()  # the model folder was writable


def test_neighbor_index_of_a_read_only_model_goes_to_the_user_cache(tmp_path, monkeypatch):
    from hf_seq2seq_attn.explorer import load_or_build_index
    from hf_seq2seq_attn.explorer.neighbors import cache_dirs

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = save_sharp_model(tmp_path / "model")
    model, tokenizer = explorer.load_model(folder)
    path = write_pairs(tmp_path / "train.jsonl", NEIGHBOR_PAIRS)
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # as for a folder of another user
    assert cache_dirs(folder) == [tmp_path / "cache" / "hf_seq2seq_attn" / "explorer_neighbors"]
    index = load_or_build_index(folder, model, tokenizer, path)
    assert Path(index.cache_file).parent == cache_dirs(folder)[0]
    assert not (Path(folder) / "explorer_neighbors").exists()


def test_sentence_vectors_do_not_depend_on_the_batch(tmp_path):
    """Sorting by length and padding within a batch changes nothing: batched == one at a time."""
    from hf_seq2seq_attn.explorer import sentence_vectors
    from hf_seq2seq_attn.explorer.neighbors import source_ids

    model, tokenizer = sharp_model()
    ids = source_ids(tokenizer, [s for s, _ in NEIGHBOR_PAIRS])
    batched = sentence_vectors(model, ids, batch_size=4)
    single = torch.cat([sentence_vectors(model, [row]) for row in ids])
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=1e-5)


def test_neighbors_handler_and_html(tmp_path, monkeypatch):
    from hf_seq2seq_attn.explorer import neighbors_view
    from hf_seq2seq_attn.explorer.neighbors import NeighborIndexes

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = save_sharp_model(tmp_path / "model")
    path = write_pairs(tmp_path / "train.jsonl", NEIGHBOR_PAIRS + [("<b>x</b>", "y & z")])
    cache = ModelCache()
    indexes = NeighborIndexes(cache, path, limit=100)
    model, tokenizer = cache.get(folder)
    exploration = explore(model, tokenizer, "el perro come", num_beams=3, max_new_tokens=6)
    page = neighbors_view(indexes, folder, exploration, 0)
    assert page.count('<li class="s2sa-neighbor"') == 5
    first = page.split('<li class="s2sa-neighbor"')[1]
    assert "el perro come" in first and "the dog eats" in first
    for index, hypothesis in enumerate(exploration.hypotheses):  # one list per output token of the pick
        page = neighbors_view(indexes, folder, exploration, index)
        assert page.count('<details class="s2sa-token"') == len(hypothesis.tokens)
        assert page.count('<li class="s2sa-token-neighbor"') == 3 * len(hypothesis.tokens)
        assert page.count("<mark>") == 3 * len(hypothesis.tokens)
    tagged = explore(model, tokenizer, "<b>x</b>", max_new_tokens=4)
    assert "&lt;b&gt;x&lt;/b&gt;" in neighbors_view(indexes, folder, tagged)
    assert "Translate a sentence" in neighbors_view(indexes, folder, None)
    assert "No neighbours" in neighbors_view(indexes, str(tmp_path / "missing"), exploration)


@torch.no_grad()
def reference_token_states(model, tokenizer, pairs):
    """Independent recomputation, one pair at a time with no padding: the unit read-out state of each target
    token (the vocabulary projection's input), keyed by (pair, position)."""
    states = {}
    for row, (source, target) in enumerate(pairs):
        target_ids = tokenizer(text_target=target)["input_ids"]
        out = model.model(
            input_ids=torch.tensor([tokenizer(source)["input_ids"]]),
            decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id, *target_ids[:-1]]]),
            use_cache=False,
        )
        for position, state in enumerate(out.last_hidden_state[0]):
            states[row, position] = torch.nn.functional.normalize(state, dim=0)
    return states


def test_token_states_are_the_decoder_read_out_of_each_target_token(tmp_path, monkeypatch):
    """The index holds one unit vector per target token of every pair, equal to the read-out state that
    predicts it (recomputed pair by pair); a training pair's own tokens are their own nearest neighbours."""
    from hf_seq2seq_attn.explorer import load_or_build_index, nearest_tokens
    from hf_seq2seq_attn.explorer.neighbors import source_ids, target_ids

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = save_sharp_model(tmp_path / "model")
    model, tokenizer = explorer.load_model(folder)
    path = write_pairs(tmp_path / "train.jsonl", NEIGHBOR_PAIRS)
    index = load_or_build_index(folder, model, tokenizer, path, limit=100)
    expected = reference_token_states(model, tokenizer, NEIGHBOR_PAIRS)
    tokens = index.tokens
    assert tokens is not None and tokens.projection is None and tokens.kept == 1.0  # E = 8: kept whole
    keys = list(zip(tokens.rows.tolist(), tokens.positions.tolist(), strict=True))
    assert keys == sorted(expected)  # every target token once, pair by pair
    # float16 storage: unit vectors rounded to ~5e-4 relative
    torch.testing.assert_close(
        tokens.vectors.float(), torch.stack([expected[key] for key in keys]), atol=2e-3, rtol=0
    )
    for row, (source, target) in enumerate(NEIGHBOR_PAIRS):
        ids, output = source_ids(tokenizer, [source])[0], target_ids(tokenizer, [target])[0]
        found = nearest_tokens(model, index, ids, output, k=2)
        assert len(found) == len(output)
        for position, neighbors in enumerate(found):
            assert (neighbors[0].row, neighbors[0].position, neighbors[0].target) == (row, position, target)
            assert neighbors[0].similarity == pytest.approx(1.0, abs=2e-3)
            assert neighbors[0].similarity >= neighbors[1].similarity


def test_wide_decoder_states_are_projected_onto_their_principal_directions(tmp_path, monkeypatch):
    """With states wider than TOKEN_DIMS the index stores their projection on the top eigenvectors of the
    states' second moment (orthonormal, fitted in float64), self-matches still come first, and the cache
    round trip keeps the projection."""
    from hf_seq2seq_attn.explorer import load_or_build_index, nearest_tokens
    from hf_seq2seq_attn.explorer import neighbors as module
    from hf_seq2seq_attn.explorer.neighbors import source_ids, target_ids

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(module, "TOKEN_DIMS", 4)  # E = 8
    folder = save_sharp_model(tmp_path / "model")
    model, tokenizer = explorer.load_model(folder)
    path = write_pairs(tmp_path / "train.jsonl", NEIGHBOR_PAIRS)
    index = load_or_build_index(folder, model, tokenizer, path, limit=100)
    tokens = index.tokens
    assert tokens is not None and tokens.projection is not None and tokens.vectors.shape[1] == 4
    projection = tokens.projection.double()
    torch.testing.assert_close(
        projection.T @ projection, torch.eye(4, dtype=torch.float64), atol=1e-6, rtol=0
    )
    unit = torch.stack(list(reference_token_states(model, tokenizer, NEIGHBOR_PAIRS).values())).double()
    values = torch.linalg.eigvalsh(unit.T @ unit)  # ascending
    assert tokens.kept == pytest.approx(float(values[-4:].sum() / values.sum()), abs=1e-6)
    energy = (unit @ projection).pow(2).sum() / unit.pow(2).sum()  # the top-4 subspace holds the most energy
    assert float(energy) == pytest.approx(tokens.kept, abs=1e-5)
    source, target = NEIGHBOR_PAIRS[0]
    output = target_ids(tokenizer, [target])[0]
    found = nearest_tokens(model, index, source_ids(tokenizer, [source])[0], output, k=1)
    assert [(n[0].row, n[0].position) for n in found] == [(0, p) for p in range(len(output))]
    again = load_or_build_index(folder, model, tokenizer, path, limit=100)
    assert again.tokens is not None and again.tokens.kept == tokens.kept
    # stored tensors read back: bit for bit, as weights are compared
    assert torch.equal(again.tokens.projection, tokens.projection)
    assert torch.equal(again.tokens.vectors, tokens.vectors)


def test_chunked_token_search_is_the_full_top_k(monkeypatch):
    from hf_seq2seq_attn.explorer import neighbors as module

    generator = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(
        torch.randn(1000, 6, generator=generator, dtype=torch.float64), dim=1
    )
    queries = torch.nn.functional.normalize(
        torch.randn(7, 6, generator=generator, dtype=torch.float64), dim=1
    )
    expected = (queries @ vectors.T).topk(5, dim=1)
    monkeypatch.setattr(module, "SEARCH_CHUNK", 64)  # 16 chunks, the last one short
    values, rows = module.top_tokens(vectors, queries.float(), 5)
    assert torch.equal(rows, expected.indices)
    torch.testing.assert_close(values.double(), expected.values, atol=1e-6, rtol=0)
    assert module.top_tokens(vectors[:3], queries.float(), 5)[1].shape == (7, 3)  # fewer rows than k


def test_cli_wires_neighbors(tmp_path, monkeypatch, capsys):
    """`seq2seq-attn explore --model M --neighbors FILE --neighbors_max N` hands both to `build_app`."""
    from hf_seq2seq_attn.explorer import app, cli

    folder = save_tiny_model(tmp_path / "model")
    path = write_pairs(tmp_path / "train.jsonl", NEIGHBOR_PAIRS)
    built = {}
    monkeypatch.setattr(app, "build_app", lambda models, **kwargs: built.update(kwargs, models=models))
    monkeypatch.setattr(app, "launch_app", lambda demo, **kwargs: None)
    assert cli.main(["--model", folder, "--neighbors", path, "--neighbors_max", "7"]) == 0
    assert built == {"models": [folder], "neighbors": path, "neighbors_max": 7}
    assert cli.build_parser().parse_args(["--model", folder]).neighbors_max == 30_000
    assert cli.main(["--model", folder, "--neighbors", str(tmp_path / "missing.jsonl")]) == 2
    assert "--neighbors: no such file" in capsys.readouterr().err
    assert cli.main(["--model", folder, "--neighbors", path, "--neighbors_max", "0"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"src": "a"}\n', encoding="utf-8")
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["--model", folder, "--neighbors", str(bad)]) == 2  # a DataError, told before serving
    assert "no column 'source'" in capsys.readouterr().err
