"""Beam search inside ONNX Runtime: the exported decoder step wrapped in an ONNX `Loop`, as in
[`hf_seq2seq_attn.serving.onnx_loop`] for greedy search.

[`build_beam_graph`] composes one graph that runs the step graph on the B * K beams and then does, per
token and in the graph, what `GenerationMixin._beam_search` does in Python: top-k continuations, running
beams, the finished hypotheses, length penalty, early stopping (see its docstring for the inputs, the
outputs and why the tie order of `TopK` cannot change the result).
[`hf_seq2seq_attn.serving.loop_requests.beam_request`] says which `generate()` calls it serves exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .onnx_export import require
from .onnx_loop import renamed_value, step_nodes

# Outputs of the beam-search graph (see [`build_beam_graph`]).
BEAM_OUTPUTS = ("sequences", "sequences_scores", "beam_indices", "steps", "step_scores", "step_logits")
# Names inside the beam Loop body, and those computed before it.
_BEAM_BODY = "beam_loop/"
_BEAM = "beam/"
# `GenerationMixin._beam_search`'s mask: a score that must never be chosen. -1e9 is exact in float32.
_MASK = -1.0e9


def _in(name: str) -> str:
    return _BEAM_BODY + name


def _out(name: str) -> str:
    return _BEAM + name


def _n(op: str, inputs: list[str], outputs: str | list[str], **attributes: Any) -> Any:
    """One node; `outputs` may be a single name."""
    from onnx import helper

    return helper.make_node(op, inputs, [outputs] if isinstance(outputs, str) else outputs, **attributes)


def _any(value: str, output: str, axis: int | None = None, keepdims: bool = False) -> list:
    """`output = value.any(axis)` of a bool tensor (ReduceMax takes no bools before opset 20)."""
    from onnx import TensorProto

    reduce: dict[str, Any] = dict(keepdims=int(keepdims))
    if axis is not None:
        reduce["axes"] = [axis]
    return [
        _n("Cast", [value], output + "_int", to=TensorProto.INT64),
        _n("ReduceMax", [output + "_int"], output + "_max", **reduce),
        _n("Cast", [output + "_max"], output, to=TensorProto.BOOL),
    ]


def _all(value: str, output: str, axis: int | None = None) -> list:
    """`output = value.all(axis)` of a bool tensor; an axis is kept, as `torch.all(..., keepdims=True)`."""
    from onnx import TensorProto

    reduce: dict[str, Any] = dict(keepdims=0) if axis is None else dict(axes=[axis], keepdims=1)
    return [
        _n("Cast", [value], output + "_int", to=TensorProto.INT64),
        _n("ReduceMin", [output + "_int"], output + "_min", **reduce),
        _n("Cast", [output + "_min"], output, to=TensorProto.BOOL),
    ]


def _masked(value: str, condition: str, output: str) -> list:
    """`output = value + condition.to(float32) * -1e9`, the operations `_beam_search` adds its masks with
    (so the float32 sums are the same numbers, not just the same ranking)."""
    from onnx import TensorProto

    return [
        _n("Cast", [condition], output + "_float", to=TensorProto.FLOAT),
        _n("Mul", [output + "_float", _in("minus_1e9")], output + "_mask"),
        _n("Add", [value, output + "_mask"], output),
    ]


def _gather_beams(value: str, positions: str, output: str, shape: str) -> list:
    """`GenerationMixin._gather_beams`: `output[b, j, :] = value[b, positions[b, j], :]` for `(B, *, N)` ids."""
    return [
        _n("Unsqueeze", [positions, _in("axis_2")], output + "_positions"),
        _n("Expand", [output + "_positions", shape], output + "_index"),  # (B, J, N)
        _n("GatherElements", [value, output + "_index"], output, axis=1),
    ]


def _beam_log_prob_nodes() -> list:
    """`logits (BK, 1, V)` -> `processed (BK, V)`: log_softmax in float32, then the MinLength /
    MinNewTokensLength processors (eos ids get -inf while `iteration < min_new_tokens`); and the rows of them
    (and of the raw logits) kept as scan outputs: `score_rows` / `logit_rows` are BK or 0, so nothing is
    collected unless `output_scores` / `output_logits` asked for it."""
    from onnx import TensorProto

    i = _in
    return [
        _n("Squeeze", ["logits", i("axis_1")], i("flat_logits")),  # (BK, V)
        _n("Cast", [i("flat_logits")], i("logits_float"), to=TensorProto.FLOAT),  # `.to(torch.float32)`
        _n("LogSoftmax", [i("logits_float")], i("log_probs"), axis=-1),
        _n("Shape", ["logits"], i("vocab"), start=2),  # (1,) = [V]
        _n("Reshape", [i("vocab"), i("scalar_shape")], i("vocab_size")),
        _n("Range", [i("zero"), i("vocab_size"), i("one")], i("vocab_ids")),  # (V,)
        _n("Unsqueeze", [i("vocab_ids"), i("axis_1")], i("vocab_column")),  # (V, 1)
        _n("Equal", [i("vocab_column"), "eos_token_id"], i("eos_vocab_each")),  # (V, n_eos)
        *_any(i("eos_vocab_each"), i("eos_ids"), axis=1),  # (V,)
        _n("Less", [i("iteration"), "min_new_tokens"], i("eos_blocked")),  # ()
        _n("And", [i("eos_ids"), i("eos_blocked")], i("eos_masked")),  # (V,)
        _n("Where", [i("eos_masked"), i("minus_inf"), i("log_probs")], i("processed")),  # (BK, V)
        _n("Slice", [i("processed"), i("zero_1"), "score_rows", i("zero_1")], i("scores_scan")),
        _n("Slice", [i("logits_float"), i("zero_1"), "logit_rows", i("zero_1")], i("logits_scan")),
    ]


def _beam_candidate_nodes() -> list:
    """`_get_top_k_continuations`: the best `beams_to_keep` continuations of each source over all its beams.

    `processed (BK, V)` + running scores `(B, K)` -> `(B, K * V)`; TopK -> `topk_scores`, `token`,
    `source` (the beam each extends, `(B, 2K)`; 2K stands for beams_to_keep), `flat_source` (its row in BK);
    `topk_sequences` / `topk_indices` `(B, 2K, N)`: the source beam's ids and beam indices with column
    `iteration` set.
    """
    i = _in
    candidates = _out("candidates_shape")  # (3,) = [B, 2K, N]
    return [
        _n("Concat", [i("minus_one_1"), _out("k"), i("vocab")], i("bkv_shape"), axis=0),
        _n("Reshape", [i("processed"), i("bkv_shape")], i("log_probs_3d")),  # (B, K, V)
        _n("Unsqueeze", [i("running_scores"), i("axis_2")], i("running_3d")),  # (B, K, 1)
        _n("Add", [i("log_probs_3d"), i("running_3d")], i("accumulated_3d")),
        _n("Reshape", [i("accumulated_3d"), i("flat_beams_shape")], i("accumulated")),  # (B, K * V)
        _n("TopK", [i("accumulated"), _out("keep")], [i("topk_scores"), i("topk_ids")], axis=1),  # (B, 2K)
        _n("Div", [i("topk_ids"), i("vocab")], i("source")),  # non-negative: truncation is floor division
        _n("Mod", [i("topk_ids"), i("vocab")], i("token")),
        _n("Add", [i("source"), _out("offset")], i("flat_source")),  # b * K + beam
        *_gather_beams(i("running_sequences"), i("source"), i("gathered_sequences"), candidates),
        *_gather_beams(i("running_indices"), i("source"), i("gathered_indices"), candidates),
        _n("Equal", [_out("columns"), i("iteration")], i("at_column")),  # (N,)
        _n("Unsqueeze", [i("token"), i("axis_2")], i("token_3d")),  # (B, 2K, 1)
        _n("Unsqueeze", [i("flat_source"), i("axis_2")], i("flat_source_3d")),
        _n("Where", [i("at_column"), i("token_3d"), i("gathered_sequences")], i("topk_sequences")),
        _n("Where", [i("at_column"), i("flat_source_3d"), i("gathered_indices")], i("topk_indices")),
    ]


def _beam_running_nodes(recurrent_state_names: list[str]) -> list:
    """The stopping criteria (an eos id, or the length limit) and `_get_running_beams_for_next_iteration`:
    the best K continuations that did not stop run on; the recurrent state follows them (`reorder_cache`)."""
    i = _in
    nodes = [
        _n("Equal", [i("token_3d"), "eos_token_id"], i("is_eos_each")),  # (B, 2K, n_eos)
        *_any(i("is_eos_each"), i("is_eos"), axis=2),  # (B, 2K)
        # MaxLengthCriteria: the sequence (start token + iteration + 1 tokens) reaches 1 + max_new_tokens
        _n("Add", [i("iteration"), i("one")], i("steps_next")),
        _n("GreaterOrEqual", [i("steps_next"), "max_new_tokens"], i("at_max_length")),
        _n("Or", [i("is_eos"), i("at_max_length")], i("stops")),
        *_masked(i("topk_scores"), i("stops"), i("running_candidates")),
        _n("TopK", [i("running_candidates"), _out("k")], [i("running_scores_next"), i("chosen")], axis=1),
        *_gather_beams(i("topk_sequences"), i("chosen"), i("running_sequences_next"), _out("bkn_shape")),
        *_gather_beams(i("topk_indices"), i("chosen"), i("running_indices_next"), _out("bkn_shape")),
        _n("GatherElements", [i("flat_source"), i("chosen")], i("chosen_rows"), axis=1),  # (B, K)
        _n("Reshape", [i("chosen_rows"), i("minus_one_1")], i("beam_idx")),  # (BK,)
        _n("GatherElements", [i("token"), i("chosen")], i("chosen_tokens"), axis=1),
        _n("Reshape", [i("chosen_tokens"), i("column_shape")], i("ids_next")),  # (BK, 1)
    ]
    for name in recurrent_state_names:  # hidden and cell are (L, BK, H), feed (BK, E)
        axis = 0 if name == "feed" else 1
        nodes.append(_n("Gather", [f"next_{name}", i("beam_idx")], i(f"{name}_next"), axis=axis))
    return nodes


def _beam_finished_nodes() -> list:
    """`_update_finished_beams`, then `_check_early_stop_heuristic` and `_beam_search_has_unfinished_sequences`.

    Of the K + 2K finished and just-finished hypotheses per source, the best K by length-normalised score
    stay (`sequences`, `indices`, `beam_scores`, `finished`); then whether a running beam can still beat
    the worst of them (`heuristic_next (B, 1)`), and the loop condition.
    """
    i = _in
    return [
        _n("And", [i("stops"), _out("top_mask")], i("did_finish")),  # only the first K candidates count
        _n("Gather", ["length_divisors", i("iteration")], i("length_divisor")),  # (t + 1) ** length_penalty
        _n("Div", [i("topk_scores"), i("length_divisor")], i("normalized")),
        *_all(i("finished"), i("batch_full"), axis=1),  # (B, 1)
        _n("And", [i("batch_full"), "early_stopping"], i("closed")),
        *_masked(i("normalized"), i("closed"), i("normalized_1")),
        _n("Not", [i("heuristic")], i("cannot_improve")),
        *_masked(i("normalized_1"), i("cannot_improve"), i("normalized_2")),
        _n("Not", [i("did_finish")], i("running_on")),
        *_masked(i("normalized_2"), i("running_on"), i("normalized_3")),
        _n("Concat", [i("beam_scores"), i("normalized_3")], i("merged_scores"), axis=1),  # (B, 3K)
        _n("Concat", [i("sequences"), i("topk_sequences")], i("merged_sequences"), axis=1),
        _n("Concat", [i("indices"), i("topk_indices")], i("merged_indices"), axis=1),
        _n("Concat", [i("finished"), i("did_finish")], i("merged_finished"), axis=1),
        _n("TopK", [i("merged_scores"), _out("k")], [i("beam_scores_next"), i("kept")], axis=1),
        *_gather_beams(i("merged_sequences"), i("kept"), i("sequences_next"), _out("bkn_shape")),
        *_gather_beams(i("merged_indices"), i("kept"), i("indices_next"), _out("bkn_shape")),
        _n("GatherElements", [i("merged_finished"), i("kept")], i("finished_next"), axis=1),
        # _check_early_stop_heuristic: can the best running beam still beat the worst finished one?
        _n("Gather", ["heuristic_divisors", i("iteration")], i("heuristic_divisor")),
        _n("Slice", [i("running_scores_next"), i("zero_1"), i("one_1"), i("one_1")], i("best_running")),
        _n("Div", [i("best_running"), i("heuristic_divisor")], i("best_possible")),  # (B, 1)
        _n("ReduceMin", [i("beam_scores_next")], i("worst_finished_each"), axes=[1], keepdims=1),
        _n("Where", [i("finished_next"), i("worst_finished_each"), i("minus_1e9")], i("worst_finished")),
        _n("Greater", [i("best_possible"), i("worst_finished")], i("beats")),  # (B, K)
        *_any(i("beats"), i("improves"), axis=1, keepdims=True),  # (B, 1)
        _n("And", [i("heuristic"), i("improves")], i("heuristic_next")),
        # _beam_search_has_unfinished_sequences
        *_any(i("heuristic_next"), i("improvement_possible")),
        *_all(i("finished_next"), i("all_finished")),
        _n("And", [i("all_finished"), "early_stopping"], i("all_closed")),
        _n("Not", [i("all_closed")], i("open_beam")),
        *_all(i("stops"), i("all_stop")),
        _n("Not", [i("all_stop")], i("valid_continuations")),
        _n("And", [i("improvement_possible"), i("open_beam")], i("condition_partial")),
        _n("And", [i("condition_partial"), i("valid_continuations")], i("condition_next")),
    ]


# Loop-carried beam-search values after the recurrent state: (name, type, shape).
_BEAM_CARRIED: tuple[tuple[str, str, list[str | int]], ...] = (
    ("running_scores", "FLOAT", ["batch", "beams"]),
    ("running_sequences", "INT64", ["batch", "beams", "new_tokens"]),
    ("running_indices", "INT64", ["batch", "beams", "new_tokens"]),
    ("sequences", "INT64", ["batch", "beams", "new_tokens"]),
    ("indices", "INT64", ["batch", "beams", "new_tokens"]),
    ("beam_scores", "FLOAT", ["batch", "beams"]),
    ("finished", "BOOL", ["batch", "beams"]),
    ("heuristic", "BOOL", ["batch", 1]),
    ("steps", "INT64", []),
)


def _beam_body_constants() -> list:
    from onnx import TensorProto, helper

    i = _in
    return [
        helper.make_tensor(i("axis_1"), TensorProto.INT64, [1], [1]),
        helper.make_tensor(i("axis_2"), TensorProto.INT64, [1], [2]),
        helper.make_tensor(i("zero_1"), TensorProto.INT64, [1], [0]),
        helper.make_tensor(i("one_1"), TensorProto.INT64, [1], [1]),
        helper.make_tensor(i("minus_one_1"), TensorProto.INT64, [1], [-1]),
        helper.make_tensor(i("zero"), TensorProto.INT64, [], [0]),
        helper.make_tensor(i("one"), TensorProto.INT64, [], [1]),
        helper.make_tensor(i("scalar_shape"), TensorProto.INT64, [0], []),
        helper.make_tensor(i("column_shape"), TensorProto.INT64, [2], [-1, 1]),
        helper.make_tensor(i("flat_beams_shape"), TensorProto.INT64, [2], [0, -1]),
        helper.make_tensor(i("minus_1e9"), TensorProto.FLOAT, [], [_MASK]),
        helper.make_tensor(i("minus_inf"), TensorProto.FLOAT, [], [-np.inf]),
    ]


def _beam_body_graph(step_graph: Any, recurrent_state_names: list[str]) -> Any:
    """The beam Loop body: the step graph on the BK flat beams, then the beam bookkeeping above.

    Body inputs: iteration, condition, ids `(BK, 1)`, recurrent state, then [`_BEAM_CARRIED`]. Outputs:
    condition, the same values for the next iteration, and the scanned `scores (R, V)`, `logits (R', V)`.
    """
    from onnx import TensorProto, helper

    rename = {name: _in(name) for name in ("decoder_input_ids", *recurrent_state_names)}
    next_state = [f"next_{name}" for name in recurrent_state_names]
    nodes = [
        *step_nodes(step_graph, rename, {"logits", *next_state}),
        *_beam_log_prob_nodes(),
        *_beam_candidate_nodes(),
        *_beam_running_nodes(recurrent_state_names),
        *_beam_finished_nodes(),
    ]
    used = {name for node in nodes for name in node.input}
    initializers = [init for init in step_graph.initializer if init.name in used] + _beam_body_constants()
    step_inputs = {value.name: value for value in step_graph.input}
    step_outputs = {value.name: value for value in step_graph.output}

    def carried(suffix: str) -> list:
        return [
            helper.make_tensor_value_info(_in(name + suffix), getattr(TensorProto, kind), shape)
            for name, kind, shape in _BEAM_CARRIED
        ]

    inputs = [
        helper.make_tensor_value_info(_in("iteration"), TensorProto.INT64, []),
        helper.make_tensor_value_info(_in("condition"), TensorProto.BOOL, []),
        renamed_value(step_inputs["decoder_input_ids"], rename["decoder_input_ids"]),
        *(renamed_value(step_inputs[name], rename[name]) for name in recurrent_state_names),
        *carried(""),
    ]
    outputs = [
        helper.make_tensor_value_info(_in("condition_next"), TensorProto.BOOL, []),
        helper.make_tensor_value_info(_in("ids_next"), TensorProto.INT64, ["beam_rows", 1]),
        *(renamed_value(step_outputs[f"next_{name}"], _in(f"{name}_next")) for name in recurrent_state_names),
        *carried("_next"),
        helper.make_tensor_value_info(_in("scores_scan"), TensorProto.FLOAT, ["score_rows", "vocab"]),
        helper.make_tensor_value_info(_in("logits_scan"), TensorProto.FLOAT, ["logit_rows", "vocab"]),
    ]
    return helper.make_graph(nodes, "beam_step", inputs, outputs, initializer=initializers)


def _beam_setup_nodes() -> list:
    """Before the Loop: the sizes B, K, beams_to_keep, N and the initial beam-search values, as
    `_beam_search` makes them (running scores 0 for the first beam of each source and -1e9 for the others,
    so that the first step expands one beam; finished scores -1e9; ids `fill_token_id`, beam indices -1)."""
    o = _out
    return [
        _n("Reshape", ["num_beams", o("shape_1")], o("k")),  # (1,) = [K]
        _n("Reshape", ["max_new_tokens", o("shape_1")], o("n")),  # (1,) = [N]
        _n("Shape", ["decoder_input_ids"], o("bk"), start=0, end=1),  # (1,) = [B * K]
        _n("Div", [o("bk"), o("k")], o("b")),
        _n("Reshape", [o("b"), o("scalar_shape")], o("batch")),
        _n("Shape", ["eos_token_id"], o("eos_count")),
        _n("Add", [o("eos_count"), o("one_1")], o("eos_count_1")),
        _n("Max", [o("eos_count_1"), o("two_1")], o("keep_per_beam")),  # max(2, 1 + n_eos)
        _n("Mul", [o("keep_per_beam"), o("k")], o("keep")),  # beams_to_keep
        _n("Reshape", [o("keep"), o("scalar_shape")], o("keep_count")),
        _n("Concat", [o("b"), o("k")], o("bk_shape"), axis=0),
        _n("Concat", [o("b"), o("k"), o("n")], o("bkn_shape"), axis=0),
        _n("Concat", [o("b"), o("keep"), o("n")], o("candidates_shape"), axis=0),
        _n("Concat", [o("b"), o("one_1")], o("b1_shape"), axis=0),
        _n("Range", [o("zero"), "num_beams", o("one")], o("beams")),  # (K,)
        _n("Equal", [o("beams"), o("zero")], o("first_beam")),
        _n("Where", [o("first_beam"), o("zero_float"), o("minus_1e9")], o("first_scores")),
        _n("Expand", [o("first_scores"), o("bk_shape")], o("running_scores")),  # (B, K)
        _n("Expand", [o("minus_1e9"), o("bk_shape")], o("beam_scores")),
        _n("Expand", [o("false"), o("bk_shape")], o("finished")),
        _n("Expand", [o("true"), o("b1_shape")], o("heuristic")),  # (B, 1)
        _n("Expand", ["fill_token_id", o("bkn_shape")], o("sequences")),  # (B, K, N)
        _n("Expand", [o("minus_one"), o("bkn_shape")], o("indices")),
        _n("Range", [o("zero"), o("keep_count"), o("one")], o("candidates")),  # (2K,)
        _n("Less", [o("candidates"), "num_beams"], o("top_mask")),
        _n("Range", [o("zero"), o("batch"), o("one")], o("batch_ids")),  # (B,)
        _n("Mul", [o("batch_ids"), "num_beams"], o("batch_offset")),
        _n("Unsqueeze", [o("batch_offset"), o("one_1")], o("offset")),  # (B, 1)
        _n("Range", [o("zero"), "max_new_tokens", o("one")], o("columns")),  # (N,)
    ]


def _beam_output_nodes() -> list:
    """After the Loop, `_beam_search`'s "prepare outputs": the first `num_return_sequences` finished
    hypotheses of each source, cut after the longest of them (beam indices that are not -1), the start token
    first."""
    from onnx import TensorProto

    o = _out
    return [
        _n("Reshape", ["num_return_sequences", o("shape_1")], o("returned")),
        _n("Slice", [o("final_sequences"), o("zero_1"), o("returned"), o("one_1")], o("top_sequences")),
        _n("Slice", [o("final_indices"), o("zero_1"), o("returned"), o("one_1")], o("top_indices")),
        _n("Slice", [o("final_beam_scores"), o("zero_1"), o("returned"), o("one_1")], o("top_scores")),
        _n("Concat", [o("minus_one_1"), o("n")], o("flat_shape"), axis=0),
        _n("Reshape", [o("top_sequences"), o("flat_shape")], o("flat_sequences")),  # (B * R, N)
        _n("Reshape", [o("top_indices"), o("flat_shape")], o("flat_indices")),
        _n("Reshape", [o("top_scores"), o("minus_one_1")], "sequences_scores"),  # (B * R,)
        _n("Equal", [o("flat_indices"), o("minus_one")], o("unset")),
        _n("Not", [o("unset")], o("generated_each")),
        _n("Cast", [o("generated_each")], o("generated_int"), to=TensorProto.INT64),
        _n("ReduceSum", [o("generated_int"), o("one_1")], o("generated"), keepdims=0),  # (B * R,)
        _n("ReduceMax", [o("generated")], o("length"), keepdims=1),  # (1,)
        _n("Slice", [o("flat_sequences"), o("zero_1"), o("length"), o("one_1")], o("tokens")),
        _n("Slice", [o("flat_indices"), o("zero_1"), o("length"), o("one_1")], o("indices_cut")),
        _n("Cast", [o("indices_cut")], "beam_indices", to=TensorProto.INT32),  # as `_beam_search` keeps them
        _n("Shape", [o("flat_sequences")], o("rows"), start=0, end=1),
        _n("Slice", ["decoder_input_ids", o("zero_1"), o("rows"), o("zero_1")], o("starts")),  # (B * R, 1)
        _n("Concat", [o("starts"), o("tokens")], "sequences", axis=1),
    ]


def _beam_outer_constants() -> list:
    from onnx import TensorProto, helper

    o = _out
    return [
        helper.make_tensor(o("shape_1"), TensorProto.INT64, [1], [1]),
        helper.make_tensor(o("scalar_shape"), TensorProto.INT64, [0], []),
        helper.make_tensor(o("zero_1"), TensorProto.INT64, [1], [0]),
        helper.make_tensor(o("one_1"), TensorProto.INT64, [1], [1]),
        helper.make_tensor(o("two_1"), TensorProto.INT64, [1], [2]),
        helper.make_tensor(o("minus_one_1"), TensorProto.INT64, [1], [-1]),
        helper.make_tensor(o("zero"), TensorProto.INT64, [], [0]),
        helper.make_tensor(o("one"), TensorProto.INT64, [], [1]),
        helper.make_tensor(o("minus_one"), TensorProto.INT64, [], [-1]),
        helper.make_tensor(o("zero_float"), TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor(o("minus_1e9"), TensorProto.FLOAT, [], [_MASK]),
        helper.make_tensor(o("false"), TensorProto.BOOL, [], [False]),
        helper.make_tensor(o("true"), TensorProto.BOOL, [], [True]),
    ]


def build_beam_graph(step_model: Any, recurrent_state_names: list[str]) -> Any:
    """The beam-search decode graph around the loaded step graph `step_model`: `GenerationMixin._beam_search`
    (transformers 5.18 to 5.24: the same vectorized algorithm) with no Python between tokens.

    Inputs (B sources, K beams, N = max_new_tokens, n_eos end ids; shapes as in `onnx_export.py`):

    - `decoder_input_ids (BK, 1)`, `mask (BK, S)` and the decoder state from `decoder_init.onnx`, all for the
      beam-expanded batch (row b * K + k is beam k of source b, as `generate()`'s `repeat_interleave`);
    - `num_beams ()`, `num_return_sequences ()`, `max_new_tokens ()`, `eos_token_id (n_eos,)`,
      `fill_token_id ()` (what unfilled positions hold: `_beam_search`'s `pad_token_id or eos_token_id[0]`),
      `min_new_tokens ()` (steps in which the eos ids get -inf: MinLength / MinNewTokensLength), all int64;
    - `length_divisors (N,)`, `heuristic_divisors (N,)` float32: at iteration t, the length penalty's
      `(t + 1) ** length_penalty` and the early-stop heuristic's `best_hypothetical_length ** length_penalty`,
      computed in Python as `_beam_search` does (then rounded to float32, as torch divides by them);
    - `early_stopping ()` bool (`early_stopping is True`); `score_rows (1,)`, `logit_rows (1,)` int64: BK to
      collect the per-step scores / logits, 0 not to.

    Outputs: `sequences (B * R, 1 + T')` int64, `sequences_scores (B * R,)` float32, `beam_indices
    (B * R, T')` int32 (R = num_return_sequences, T' the longest returned hypothesis), `steps ()` (iterations
    run, T), `step_scores (T, BK or 0, V)`, `step_logits (T, BK or 0, V)`, and `next_hidden`, [`next_cell`],
    [`next_feed`] `(.., BK, ..)`: the running beams' state after the last step (what `generate()` returns
    as its cache).

    The body, per iteration t: the step graph on the BK beams; log_softmax in float32 (+ the min-length
    mask); + the running scores; TopK over `(B, K * V)` keeping `beams_to_keep = max(2, 1 + n_eos) * K`;
    beam index = id // V, token = id % V; the running beams for the next step are the best K that did not
    stop (stopped ones get -1e9), and the recurrent state is gathered along its batch axis by their rows;
    the finished set keeps the best K of itself and the stopped candidates among the first K, scored
    `score / (t + 1) ** length_penalty` with -1e9 masks exactly as `_update_finished_beams` adds them; then
    the early-stop heuristic and `_beam_search_has_unfinished_sequences` give the loop condition.

    Tie order. ONNX TopK puts equal values lowest index first; `torch.topk` on the CPU leaves their order
    unspecified (and does not keep index order), so the ids must not depend on it. Exact ties appear only
    among masked values: `-1e9 + s` rounds to -1e9 (float32 spacing there is 64), so the first step's
    placeholder beams (running score -1e9), stopped candidates and not-yet-finished slots tie with each
    other. [`beam_request`] serves only vocabularies with at least `beams_to_keep` ids besides the eos ids:
    then the first step's TopK takes only real continuations of beam 0, and every later one has K * V real
    candidates, of which at most n_eos * K stop, so the running beams are never chosen among ties. The
    finished set may hold tied placeholders, but they have the same value (so the same heuristic), and every
    way the loop ends leaves K real hypotheses (finite, far above -1e9) on top, which are what is returned.
    Only one thing depends on tie order: when the loop stops at the length limit, every candidate stopped and
    the running beams (hence the returned cache's state) are chosen among ties; the ids and scores are not.
    Real scores can tie too when logits do: int8 logits lie on a lattice (integer dot products times one
    scale), so tokens with equal biases (all zero, as a model is initialised) can score exactly the same. The
    Loop then keeps the lower index, `GenerationMixin` whichever `torch.topk` leaves first: both are beam
    search's result, but if the tie straddles the K-th place they continue different beams.
    """
    onnx = require("onnx")
    from onnx import TensorProto, helper

    step = step_model.graph
    next_state = [f"next_{name}" for name in recurrent_state_names]
    scalar_ids = ("num_beams", "num_return_sequences", "max_new_tokens", "fill_token_id", "min_new_tokens")
    inputs = [
        *step.input,  # decoder_input_ids, mask, every state field
        *(helper.make_tensor_value_info(name, TensorProto.INT64, []) for name in scalar_ids),
        helper.make_tensor_value_info("eos_token_id", TensorProto.INT64, ["eos"]),
        helper.make_tensor_value_info("length_divisors", TensorProto.FLOAT, ["new_tokens"]),
        helper.make_tensor_value_info("heuristic_divisors", TensorProto.FLOAT, ["new_tokens"]),
        helper.make_tensor_value_info("early_stopping", TensorProto.BOOL, []),
        helper.make_tensor_value_info("score_rows", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("logit_rows", TensorProto.INT64, [1]),
    ]
    o = _out
    carried = [name for name, _, _ in _BEAM_CARRIED]
    initial = {name: o(name) for name in carried}
    initial.update(running_sequences=o("sequences"), running_indices=o("indices"), steps=o("zero"))
    final = {name: o(f"final_{name}") for name in carried}
    final.update(steps="steps")
    loop = _n(
        "Loop",
        ["max_new_tokens", o("true"), "decoder_input_ids", *recurrent_state_names, *initial.values()],
        [o("last_ids"), *next_state, *final.values(), "step_scores", "step_logits"],
        body=_beam_body_graph(step, recurrent_state_names),
    )
    step_outputs = {value.name: value for value in step.output}
    outputs = [
        helper.make_tensor_value_info("sequences", TensorProto.INT64, ["rows", "length"]),
        helper.make_tensor_value_info("sequences_scores", TensorProto.FLOAT, ["rows"]),
        helper.make_tensor_value_info("beam_indices", TensorProto.INT32, ["rows", "generated"]),
        helper.make_tensor_value_info("steps", TensorProto.INT64, []),
        helper.make_tensor_value_info("step_scores", TensorProto.FLOAT, ["steps", "score_rows", "vocab"]),
        helper.make_tensor_value_info("step_logits", TensorProto.FLOAT, ["steps", "logit_rows", "vocab"]),
        *(step_outputs[name] for name in next_state),
    ]
    nodes = [*_beam_setup_nodes(), loop, *_beam_output_nodes()]
    graph = helper.make_graph(nodes, "beam_decoder", inputs, outputs, initializer=_beam_outer_constants())
    model = helper.make_model(
        graph, opset_imports=list(step_model.opset_import), ir_version=step_model.ir_version
    )
    onnx.checker.check_model(model)
    return model


__all__ = ["BEAM_OUTPUTS", "build_beam_graph"]
