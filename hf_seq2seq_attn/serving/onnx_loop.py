"""Greedy decoding inside ONNX Runtime: the exported decoder step wrapped in an ONNX `Loop`.

[`build_greedy_graph`] composes, from `decoder_step.onnx` (or its int8 twin), one graph that decodes a
whole batch greedily with no Python between tokens: a `Loop` whose body is the step graph's nodes, followed
by `ArgMax` over the logits. What `GenerationMixin`'s greedy search does in Python per token, the body does
in the graph: a row that has emitted an end-of-sequence id is *finished* and gets the pad id from then on
(the pad id is still fed to the next step, as `generate()` feeds it, so an int8 graph's per-batch activation
scales see the same batch), and the loop stops once every row is finished or after `max_new_tokens` steps.

Inputs (shapes as in `onnx_export.py`: B batch, S source length, L layers, H hidden, E embedding, N heads,
D per-head width):

- `decoder_input_ids (B, 1)` int64: the decoder start token of each row;
- `mask (B, S)` bool and the decoder state from `decoder_init.onnx`: `hidden (L, B, H)`, [`cell`], `keys`,
  `values (B, N, S, D)`, [`feed (B, E)`]. The recurrent fields (manifest `recurrent_state_names`) are
  loop-carried; keys, values and the mask are read by the body from the outer scope;
- `max_new_tokens ()` int64 (the trip count), `eos_token_id (K,)` int64 (one or more end ids),
  `pad_token_id ()` int64.

Outputs: `sequences (B, 1 + T)` int64 (the start token, then T <= max_new_tokens tokens: exactly what
`generate()` returns) and `next_hidden`, [`next_cell`], [`next_feed`]: the recurrent state after the last
step (what `generate(return_dict_in_generate=True)` returns as its cache).

Beam search has its own Loop graph ([`hf_seq2seq_attn.serving.onnx_beam_loop`]), built from the same step
nodes ([`step_nodes`]); [`hf_seq2seq_attn.serving.loop_requests`] decides which `generate()` calls the two
Loops reproduce exactly.

Why the graphs are composed when a model first decodes that way and not written by `export_onnx`: they hold no
weights of their own (the step graph's are copied in memory, in well under a second), so files would double the
decoder's size on disk; and folders written before (or by a later version) keep their manifest as it is.
Each session holds another copy of the decoder weights in memory, so it is built only when first needed.
"""

from __future__ import annotations

from typing import Any

from .onnx_export import require

GREEDY_OUTPUT = "sequences"
# Names inside the Loop body; the prefix keeps them apart from the step graph's own value names.
_BODY = "greedy_loop/"


def _prune(nodes: list, outputs: set[str]) -> list:
    """The nodes that `outputs` depend on, in their order (drops e.g. the attention-weights output's reshape)."""
    needed = set(outputs)
    kept = []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    return kept[::-1]


def _body(name: str) -> str:
    return _BODY + name


def step_nodes(step_graph: Any, rename: dict[str, str], outputs: set[str]) -> list:
    """Copies of the step graph's nodes that `outputs` need, reading the renamed (loop-carried) inputs."""
    nodes = []
    for node in _prune(list(step_graph.node), outputs):
        copy = type(node)()
        copy.CopyFrom(node)
        for position, name in enumerate(copy.input):
            copy.input[position] = rename.get(name, name)
        nodes.append(copy)
    return nodes


def _choice_nodes() -> list:
    """`logits (B, 1, V)` -> the token `(B, 1)`, the rows finished after it `(B,)`, and the loop condition `()`.

    `GenerationMixin._sample`: argmax; a finished row takes the pad id; a row finishes once its token is one of
    the eos ids; decoding stops once no row is unfinished.
    """
    from onnx import TensorProto, helper

    b = _body
    return [
        helper.make_node("ArgMax", ["logits"], [b("argmax")], axis=2, keepdims=0),  # (B, 1)
        helper.make_node("Unsqueeze", [b("finished"), b("axis_1")], [b("finished_column")]),  # (B, 1)
        helper.make_node("Where", [b("finished_column"), "pad_token_id", b("argmax")], [b("token")]),
        helper.make_node("Equal", [b("token"), "eos_token_id"], [b("is_eos_each")]),  # (B, K)
        helper.make_node("Cast", [b("is_eos_each")], [b("is_eos_int")], to=TensorProto.INT64),
        helper.make_node("ReduceMax", [b("is_eos_int")], [b("is_eos_any")], axes=[1], keepdims=0),  # (B,)
        helper.make_node("Cast", [b("is_eos_any")], [b("is_eos")], to=TensorProto.BOOL),
        helper.make_node("Or", [b("finished"), b("is_eos")], [b("finished_next")]),
        helper.make_node("Not", [b("finished_next")], [b("unfinished")]),
        helper.make_node("Cast", [b("unfinished")], [b("unfinished_int")], to=TensorProto.INT64),
        helper.make_node("ReduceMax", [b("unfinished_int")], [b("any_unfinished")], keepdims=0),  # ()
        helper.make_node("Cast", [b("any_unfinished")], [b("condition_next")], to=TensorProto.BOOL),
        # A value cannot be both a loop-carried and a scan output.
        helper.make_node("Identity", [b("token")], [b("token_scan")]),
    ]


def renamed_value(value: Any, name: str) -> Any:
    """A copy of the `ValueInfoProto` `value` (type and shape) under `name`."""
    copy = type(value)()
    copy.CopyFrom(value)
    copy.name = name
    return copy


def _body_graph(step_graph: Any, recurrent_state_names: list[str]) -> Any:
    """The Loop body: the step graph's nodes on loop-carried ids and recurrent state, then [`_choice_nodes`].

    Body inputs: iteration, condition, ids `(B, 1)`, finished `(B,)`, recurrent state. Outputs: condition,
    ids `(B, 1)`, finished `(B,)`, next recurrent state, and the scanned token `(B, 1)`. The step graph's
    weights become the body's initializers; keys, values, mask, eos and pad ids come from the outer scope.
    """
    from onnx import TensorProto, helper

    rename = {name: _body(name) for name in ("decoder_input_ids", *recurrent_state_names)}
    next_state = [f"next_{name}" for name in recurrent_state_names]
    nodes = step_nodes(step_graph, rename, {"logits", *next_state}) + _choice_nodes()
    used = {name for node in nodes for name in node.input}
    initializers = [init for init in step_graph.initializer if init.name in used]
    initializers.append(helper.make_tensor(_body("axis_1"), TensorProto.INT64, [1], [1]))
    step_inputs = {value.name: value for value in step_graph.input}
    step_outputs = {value.name: value for value in step_graph.output}
    inputs = [
        helper.make_tensor_value_info(_body("iteration"), TensorProto.INT64, []),
        helper.make_tensor_value_info(_body("condition"), TensorProto.BOOL, []),
        renamed_value(step_inputs["decoder_input_ids"], rename["decoder_input_ids"]),
        helper.make_tensor_value_info(_body("finished"), TensorProto.BOOL, ["batch"]),
        *(renamed_value(step_inputs[name], rename[name]) for name in recurrent_state_names),
    ]
    outputs = [
        helper.make_tensor_value_info(_body("condition_next"), TensorProto.BOOL, []),
        helper.make_tensor_value_info(_body("token"), TensorProto.INT64, ["batch", 1]),
        helper.make_tensor_value_info(_body("finished_next"), TensorProto.BOOL, ["batch"]),
        *(step_outputs[name] for name in next_state),
        helper.make_tensor_value_info(_body("token_scan"), TensorProto.INT64, ["batch", 1]),
    ]
    return helper.make_graph(nodes, "greedy_step", inputs, outputs, initializer=initializers)


def build_greedy_graph(step_model: Any, recurrent_state_names: list[str]) -> Any:
    """The greedy decode graph (see the module docstring) around the loaded step graph `step_model`.

    Args:
        step_model (`onnx.ModelProto`): `decoder_step.onnx` or `decoder_step.int8.onnx`, not modified.
        recurrent_state_names (`list[str]`): the manifest's `recurrent_state_names` (hidden, [cell], [feed]).

    Returns:
        `onnx.ModelProto` with the step graph's opsets; checked with `onnx.checker`.
    """
    onnx = require("onnx")
    from onnx import TensorProto, helper

    step = step_model.graph
    next_state = [f"next_{name}" for name in recurrent_state_names]
    inputs = [
        *step.input,  # decoder_input_ids, mask, every state field
        helper.make_tensor_value_info("max_new_tokens", TensorProto.INT64, []),
        helper.make_tensor_value_info("eos_token_id", TensorProto.INT64, ["eos"]),
        helper.make_tensor_value_info("pad_token_id", TensorProto.INT64, []),
    ]
    constants = [
        helper.make_tensor("greedy/true", TensorProto.BOOL, [], [True]),
        helper.make_tensor("greedy/axis_2", TensorProto.INT64, [1], [2]),
    ]
    false = helper.make_tensor("false", TensorProto.BOOL, [1], [False])
    nodes = [
        helper.make_node("Shape", ["decoder_input_ids"], ["greedy/batch"], start=0, end=1),  # (1,) = [B]
        helper.make_node("ConstantOfShape", ["greedy/batch"], ["greedy/finished"], value=false),  # (B,)
        helper.make_node(
            "Loop",
            ["max_new_tokens", "greedy/true", "decoder_input_ids", "greedy/finished", *recurrent_state_names],
            ["greedy/last_ids", "greedy/last_finished", *next_state, "greedy/tokens"],  # tokens (T, B, 1)
            body=_body_graph(step, recurrent_state_names),
        ),
        helper.make_node("Squeeze", ["greedy/tokens", "greedy/axis_2"], ["greedy/tokens_tb"]),  # (T, B)
        helper.make_node("Transpose", ["greedy/tokens_tb"], ["greedy/tokens_bt"], perm=[1, 0]),  # (B, T)
        helper.make_node("Concat", ["decoder_input_ids", "greedy/tokens_bt"], [GREEDY_OUTPUT], axis=1),
    ]
    step_outputs = {value.name: value for value in step.output}
    outputs = [
        helper.make_tensor_value_info(GREEDY_OUTPUT, TensorProto.INT64, ["batch", "length"]),  # (B, 1 + T)
        *(step_outputs[name] for name in next_state),
    ]
    graph = helper.make_graph(nodes, "greedy_decoder", inputs, outputs, initializer=constants)
    model = helper.make_model(
        graph, opset_imports=list(step_model.opset_import), ir_version=step_model.ir_version
    )
    onnx.checker.check_model(model)
    return model


__all__ = ["GREEDY_OUTPUT", "build_greedy_graph", "renamed_value", "step_nodes"]
