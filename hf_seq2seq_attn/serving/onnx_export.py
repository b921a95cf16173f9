"""Export a Seq2SeqAttn model to ONNX graphs that ONNX Runtime runs with the same `generate()`.

Three graphs together compute exactly what the PyTorch model computes (shape legend as in
`modeling_seq2seq_attn.py`: B batch, S source length, K encoder output, L decoder layers, H decoder
hidden, E embedding, N heads, D per-head width, V target vocabulary):

- `encoder.onnx`: `input_ids (B, S)`, `attention_mask (B, S)` -> `last_hidden_state (B, S, K)`,
  `final_hidden_state (B, K)`. Traced from `model.model.encoder` itself with a right-padded batch of
  mixed lengths, so the packed RNN becomes the ONNX `GRU`/`LSTM`/`RNN` op fed with `sequence_lens`
  (the lengths from the mask): padded positions give zeros and the backward direction starts at the
  last real token, exactly as `pack_padded_sequence` does.
- `decoder_init.onnx`: the encoder outputs (and the source mask) -> the decoder's initial state
  `hidden (L, B, H)`, `cell (L, B, H)` (LSTM), `keys`, `values` (`(B, N, S, D)` projected once per
  source), `feed (B, E)` (Luong input feeding), from `model.model.decoder.init_cache`.
- `decoder_step.onnx`: one decoder step with the recurrent state in and out: `decoder_input_ids (B, 1)`,
  `hidden`, [`cell`], `keys`, `values`, `mask (B, S)` bool, [`feed`] -> `logits (B, 1, V)`,
  `next_hidden`, [`next_cell`], [`next_feed`], `attn_weights (B, N, 1, S)`. Traced from a wrapper that
  calls `model.model.decoder(ids, cache)` with T = 1 and then `model.lm_head`, so it follows the
  model's own code for every `rnn_type`, `attention_type`, head count and `decoder_style`.

Greedy and beam search need no fourth file: `onnx_loop.py` and `onnx_beam_loop.py` wrap `decoder_step.onnx`
in an ONNX `Loop` when the runtime model first decodes that way, so folders exported before they appeared
work unchanged.

Beside them: `config.json`, `generation_config.json`, the tokenizer files (when a tokenizer is given)
and `onnx_config.json`, which lists the graphs (`"fp32"` and, with `int8=True`, `"int8"`) and the
names of the decoder state tensors. `int8=True` also writes `encoder.int8.onnx`,
`decoder_init.int8.onnx` and `decoder_step.int8.onnx`: ONNX Runtime's dynamic quantization (weights
int8 per tensor, activations quantized on the fly) of every `MatMul`, `Gather` (embeddings) and
`LSTM`; `Gemm` nodes are first rewritten as `MatMul` + `Add`, which dynamic quantization handles.
ONNX Runtime has no int8 kernel for `GRU`/`RNN`: their weights are stored int8 (one scale per gate
row) and dequantized when the graph runs, so the file is small but that arithmetic stays fp32.

Why `torch.onnx.export(..., dynamo=False)` (the TorchScript tracer) and not `transformers.exporters`
(built on `torch.export`): the encoder's packed RNN (`pack_padded_sequence` with data-dependent
lengths) does not go through `torch.export`, while the tracer lowers it to the ONNX RNN ops with
`sequence_lens`, which is what makes padded batches exact; the decoder state is this package's own
`Seq2SeqAttnCache` (no pytree registration, batch-second RNN states) that the exporter's
`export_for_generation` cannot split into stages; and the exporter has no `generate()` wrapper for
the stages anyway. The tracer gives a stable graph for RNN cells written as matmuls, with dynamic
axes for batch and source length. The model's input checks (token-id range, right padding) become
constants in the trace, so the ONNX runtime model (`modeling_ort.py`) repeats them in NumPy.
"""

from __future__ import annotations

import json
import logging
import pathlib
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..core.modeling_seq2seq_attn import Seq2SeqAttnCache, Seq2SeqAttnEncoderOutput

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'hf_seq2seq_attn[onnx]'"
MANIFEST_NAME = "onnx_config.json"
MANIFEST_FORMAT = "hf_seq2seq_attn-onnx"
MANIFEST_VERSION = 1
# Every field of the manifest and its JSON type; the reader (`modeling_ort.read_manifest`) refuses
# others, so a field added here needs a new MANIFEST_VERSION.
MANIFEST_FIELDS: dict[str, type] = {
    "format": str,
    "format_version": int,
    "exporter": str,
    "opset": int,
    "torch_version": str,
    "state_names": list,
    "recurrent_state_names": list,
    "graphs": dict,
}
PRECISIONS = ("fp32", "int8")
GRAPH_NAMES = ("encoder", "decoder_init", "decoder_step")
# Optional state tensors, in the order the graphs take and return them (hidden always comes first).
STATE_FIELDS = ("hidden", "cell", "keys", "values", "feed")
# The state a decoder step changes (keys, values and the mask are fixed per source).
RECURRENT_FIELDS = ("hidden", "cell", "feed")
OPSET = 17


def require(module: str) -> Any:
    """Import an optional dependency or raise `ImportError` with a one-line install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{module} is not installed; {INSTALL_HINT}") from error


# --------------------------------------------------------------------------------------------
# Wrapper modules traced into the three graphs
# --------------------------------------------------------------------------------------------
class _EncoderGraph(nn.Module):
    """`model.model.encoder` with plain tensor outputs."""

    def __init__(self, model: Any):
        super().__init__()
        self.encoder: Any = model.model.encoder

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.encoder(input_ids, attention_mask)
        return output.last_hidden_state, output.final_hidden_state  # (B, S, K), (B, K)


class _InitGraph(nn.Module):
    """`model.model.decoder.init_cache` with the state fields as a tuple (names in `state_names`)."""

    def __init__(self, model: Any, state_names: Sequence[str]):
        super().__init__()
        self.decoder: Any = model.model.decoder
        self.state_names = tuple(state_names)

    def forward(
        self, last_hidden_state: torch.Tensor, final_hidden_state: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        encoder_outputs = Seq2SeqAttnEncoderOutput(
            last_hidden_state=last_hidden_state,  # type: ignore[arg-type]
            final_hidden_state=final_hidden_state,  # type: ignore[arg-type]
            attention_mask=attention_mask,  # type: ignore[arg-type]
        )
        cache = self.decoder.init_cache(encoder_outputs)
        # A fresh tensor per output: with one dot-product head the keys *are* the values, and one
        # graph value cannot be two graph outputs.
        return tuple(getattr(cache, name) * 1.0 for name in self.state_names)


class _StepGraph(nn.Module):
    """One decoder step: `model.model.decoder(ids, cache)` with T = 1, then `model.lm_head`."""

    def __init__(self, model: Any, state_names: Sequence[str]):
        super().__init__()
        self.decoder: Any = model.model.decoder
        self.lm_head: Any = model.lm_head
        self.state_names = tuple(state_names)

    def forward(self, decoder_input_ids: torch.Tensor, mask: torch.Tensor, *state: torch.Tensor):
        fields: dict[str, Any] = dict.fromkeys(("cell", "feed"))
        fields.update(zip(self.state_names, state, strict=True))
        cache = Seq2SeqAttnCache(**fields, mask=mask)
        features, new_cache, weights = self.decoder(decoder_input_ids, cache)  # (B, 1, E), (B, N, 1, S)
        logits = self.lm_head(features)  # (B, 1, V)
        recurrent = tuple(getattr(new_cache, name) for name in self.state_names if name in RECURRENT_FIELDS)
        return (logits, *recurrent, weights)


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------
def _example_source(config, batch: int = 2, length: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-padded batch of mixed lengths: tracing then records the packed (padded) RNN path."""
    low = min(4, config.vocab_size - 1)
    input_ids = torch.randint(
        low, config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0)
    )
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1:, length - 2 :] = 0  # later rows shorter than the first
    input_ids = input_ids.masked_fill(attention_mask == 0, config.pad_token_id)
    return input_ids, attention_mask


def _export(
    module: nn.Module, args: tuple, path: pathlib.Path, names: dict[str, list[str]], axes: dict
) -> None:
    with warnings.catch_warnings():
        # The tracer warns about every Python bool/int taken from a tensor (the input checks); each
        # is a validation that the runtime model repeats, or a size recorded through `dynamic_axes`.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=names["inputs"],
            output_names=names["outputs"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )


def _state_axes(name: str) -> dict[int, str]:
    if name in ("hidden", "cell"):
        return {1: "batch"}  # (L, B, H)
    if name in ("keys", "values"):
        return {0: "batch", 2: "source_length"}  # (B, N, S, D)
    return {0: "batch"}  # feed (B, E)


def _replace_nodes(graph, new_nodes: list) -> None:
    """Swap in the rewritten node list and drop initializers no node reads any more (e.g. the
    transposed-away Gemm weights, or fp32 weights now stored as int8)."""
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _gemm_to_matmul(model_proto) -> None:
    """Rewrite `Gemm(A, B[, C])` with a constant `B` as `MatMul(A, B') [+ C]` in place.

    ONNX Runtime's dynamic quantization has int8 kernels for `MatMul` but not for `Gemm`, which is
    what the exporter emits for every `nn.Linear` applied to a 2-D input (all per-step projections).
    """
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    initializers = {init.name: init for init in graph.initializer}
    new_nodes = []
    for node in graph.node:
        attrs = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        plain = (
            attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        )
        if node.op_type != "Gemm" or not plain or node.input[1] not in initializers:
            new_nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T.copy()
        weight_name = f"{node.input[1]}__matmul_{len(new_nodes)}"
        graph.initializer.append(numpy_helper.from_array(weight, weight_name))
        has_bias = len(node.input) > 2 and node.input[2] != ""
        product = f"{node.output[0]}__matmul" if has_bias else node.output[0]
        new_nodes.append(
            helper.make_node("MatMul", [node.input[0], weight_name], [product], name=f"{node.name}_MatMul")
        )
        if has_bias:
            new_nodes.append(
                helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add")
            )
    _replace_nodes(graph, new_nodes)
    onnx.checker.check_model(model_proto)


def _int8_rnn_weights(model_proto) -> None:
    """Store the `W`/`R` weights of `GRU`/`RNN` nodes as int8 + `DequantizeLinear`, in place.

    ONNX Runtime has no integer GRU/RNN kernel, so dynamic quantization leaves these fp32: here they are
    kept int8 on disk (symmetric, one scale per gate row) and dequantized to fp32 when the graph runs.
    The arithmetic stays fp32; only the stored weights are rounded.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    initializers = {init.name: init for init in graph.initializer}
    new_nodes: list = []
    for node in graph.node:
        if node.op_type in ("GRU", "RNN"):
            for position in (1, 2):  # W (D, G, I) and R (D, G, H)
                name = node.input[position]
                if name not in initializers:
                    continue
                weight = numpy_helper.to_array(initializers[name])
                scale = np.abs(weight).max(axis=(0, 2)) / 127.0  # (G,) one scale per gate row
                scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
                quantized = np.clip(np.round(weight / scale[None, :, None]), -127, 127).astype(np.int8)
                prefix = f"{name}__int8_{len(new_nodes)}"
                graph.initializer.extend(
                    [
                        numpy_helper.from_array(quantized, f"{prefix}_q"),
                        numpy_helper.from_array(scale, f"{prefix}_scale"),
                        numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{prefix}_zero"),
                    ]
                )
                new_nodes.append(
                    helper.make_node(
                        "DequantizeLinear",
                        [f"{prefix}_q", f"{prefix}_scale", f"{prefix}_zero"],
                        [f"{prefix}_fp32"],
                        name=f"{prefix}_DequantizeLinear",
                        axis=1,
                    )
                )
                node.input[position] = f"{prefix}_fp32"
        new_nodes.append(node)
    _replace_nodes(graph, new_nodes)


def quantize_graph(source: pathlib.Path, target: pathlib.Path) -> None:
    """Write `target`: `source` with int8 weights (ONNX Runtime dynamic quantization, plus int8 storage
    of GRU/RNN weights, see [`_int8_rnn_weights`])."""
    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    model_proto = onnx.load(str(source))
    _gemm_to_matmul(model_proto)
    _int8_rnn_weights(model_proto)
    previous = logging.root.manager.disable
    # The quantizer logs a "consider pre-processing" warning through the root logger for every graph
    # (shape inference pre-processing matters for static quantization of convolutions, not here).
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantization.quantize_dynamic(model_proto, str(target), weight_type=quantization.QuantType.QInt8)
    finally:
        logging.disable(previous)


def export_onnx(model, output_dir, tokenizer=None, int8: bool = False) -> pathlib.Path:
    """Export `model` to ONNX graphs (and its config, generation config and tokenizer) in `output_dir`.

    Args:
        model ([`Seq2SeqAttnForConditionalGeneration`]): the model; exported in eval mode (its mode is
            restored afterwards).
        output_dir (`str` or `os.PathLike`): created if needed; existing graph files are overwritten.
        tokenizer (*optional*): saved beside the graphs with `save_pretrained`, so the folder is
            self-contained for [`Seq2SeqAttnOnnxModel`] and the `translate` tools.
        int8 (`bool`, defaults to `False`): also write int8 graphs (`*.int8.onnx`), see the module docstring.

    Returns:
        `pathlib.Path` of `output_dir`.

    Raises:
        `ImportError`: `onnx` (or, with `int8`, `onnxruntime`) is not installed.
        `ValueError`: `model` is not a Seq2SeqAttn model with a vocabulary head.
    """
    require("onnx")
    if int8:
        require("onnxruntime")
    if not (hasattr(model, "model") and hasattr(model, "lm_head") and hasattr(model.model, "decoder")):
        raise ValueError(
            f"export_onnx needs a Seq2SeqAttnForConditionalGeneration; got {type(model).__name__}. "
            "Load one with `AutoModelForSeq2SeqLM.from_pretrained(folder)`."
        )
    output = pathlib.Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    config = model.config
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            manifest = _export_graphs(model, output)
    finally:
        model.train(was_training)
    if int8:
        manifest["graphs"]["int8"] = {}
        for name in GRAPH_NAMES:
            target = f"{name}.int8.onnx"
            quantize_graph(output / manifest["graphs"]["fp32"][name], output / target)
            manifest["graphs"]["int8"][name] = target
    (output / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    config.to_json_file(str(output / "config.json"))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(output))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(output))
    logger.info("Exported ONNX graphs%s to %s", " (fp32 and int8)" if int8 else "", output)
    return output


SOURCE_AXES = {0: "batch", 1: "source_length"}


def _export_graphs(model, output: pathlib.Path) -> dict:
    """Trace the three graphs into `output` and return the manifest describing them."""
    input_ids, attention_mask = _example_source(model.config)
    encoder_outputs = _export_encoder(model, input_ids, attention_mask, output)
    cache = model.model.decoder.init_cache(encoder_outputs)
    state_names = [name for name in STATE_FIELDS if getattr(cache, name) is not None]
    _export_init(model, encoder_outputs, state_names, output)
    recurrent = [name for name in state_names if name in RECURRENT_FIELDS]
    _export_step(model, cache, encoder_outputs.attention_mask, state_names, output)
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "exporter": "torch.onnx.export(dynamo=False)",
        "opset": OPSET,
        "torch_version": torch.__version__,
        "state_names": state_names,
        "recurrent_state_names": recurrent,
        "graphs": {"fp32": {name: f"{name}.onnx" for name in GRAPH_NAMES}},
    }


def _export_encoder(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, output: pathlib.Path):
    """`encoder.onnx`: source ids `(B, S)` -> states `(B, S, K)` and summary `(B, K)`; returns the traced outputs."""
    _export(
        _EncoderGraph(model),
        (input_ids, attention_mask),
        output / "encoder.onnx",
        {"inputs": ["input_ids", "attention_mask"], "outputs": ["last_hidden_state", "final_hidden_state"]},
        {
            "input_ids": SOURCE_AXES,
            "attention_mask": SOURCE_AXES,
            "last_hidden_state": SOURCE_AXES,
            "final_hidden_state": {0: "batch"},
        },
    )
    return model.model.encoder(input_ids, attention_mask)


def _export_init(model, encoder_outputs, state_names: list[str], output: pathlib.Path) -> None:
    """`decoder_init.onnx`: encoder outputs -> the initial decoder state (bridge, projected keys)."""
    _export(
        _InitGraph(model, state_names),
        (
            encoder_outputs.last_hidden_state,
            encoder_outputs.final_hidden_state,
            encoder_outputs.attention_mask,
        ),
        output / "decoder_init.onnx",
        {"inputs": ["last_hidden_state", "final_hidden_state", "attention_mask"], "outputs": state_names},
        {
            "last_hidden_state": SOURCE_AXES,
            "final_hidden_state": {0: "batch"},
            "attention_mask": SOURCE_AXES,
            **{name: _state_axes(name) for name in state_names},
        },
    )


def _export_step(model, cache, mask: torch.Tensor, state_names: list[str], output: pathlib.Path) -> None:
    """`decoder_step.onnx`: one token `(B, 1)` and the state -> logits `(B, V)`, next state, attention."""
    recurrent = [name for name in state_names if name in RECURRENT_FIELDS]
    start = torch.full((mask.shape[0], 1), model.config.decoder_start_token_id, dtype=torch.long)
    _export(
        _StepGraph(model, state_names),
        (start, mask, *(getattr(cache, name) for name in state_names)),
        output / "decoder_step.onnx",
        {
            "inputs": ["decoder_input_ids", "mask", *state_names],
            "outputs": ["logits", *(f"next_{name}" for name in recurrent), "attn_weights"],
        },
        {
            "decoder_input_ids": {0: "batch"},
            "mask": SOURCE_AXES,
            **{name: _state_axes(name) for name in state_names},
            "logits": {0: "batch"},
            **{f"next_{name}": _state_axes(name) for name in recurrent},
            "attn_weights": {0: "batch", 3: "source_length"},
        },
    )


# --------------------------------------------------------------------------------------------
# Command line: seq2seq-attn export
# --------------------------------------------------------------------------------------------
__all__ = ["export_onnx", "quantize_graph", "require"]
