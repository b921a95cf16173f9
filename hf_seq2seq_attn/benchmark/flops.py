"""FLOPs: the analytic count of a forward pass from the config (checked against torch's FlopCounterMode by
the tests), this machine's matmul peak, and the model FLOP utilisation (MFU) of training."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

# Absolute, not relative: see `workload.py`.
from hf_seq2seq_attn import Seq2SeqAttnConfig

from .workload import Arch, Bench

GATES = {"gru": 3, "lstm": 4, "rnn": 1}  # gate blocks per RNN cell: G = gates x hidden


@dataclass(frozen=True)
class ModelSizes:
    """The widths FLOPs depend on, in the modeling file's legend."""

    embedding: int  # E
    encoder_hidden: int  # per direction
    directions: int  # 2 when bidirectional
    encoder_layers: int
    key: int  # K = directions x encoder_hidden
    hidden: int  # H
    layers: int  # L, decoder layers
    attention: int  # A
    heads: int  # N
    vocab: int  # V, target vocabulary
    gates: int  # 3 GRU, 4 LSTM, 1 tanh RNN
    score: str  # attention_type
    style: str  # "bahdanau", "luong" or "luong+feeding"

    @classmethod
    def of(cls, config: Seq2SeqAttnConfig) -> ModelSizes:
        directions = 2 if config.bidirectional else 1
        feeding = config.decoder_style == "luong" and bool(getattr(config, "input_feeding", False))
        return cls(
            embedding=config.embedding_size,
            encoder_hidden=config.encoder_hidden_size,
            directions=directions,
            encoder_layers=config.encoder_layers,
            key=directions * config.encoder_hidden_size,
            hidden=config.decoder_hidden_size,
            layers=config.decoder_layers,
            attention=getattr(config, "attention_size", None) or config.decoder_hidden_size,
            heads=config.num_attention_heads,
            vocab=getattr(config, "decoder_vocab_size", None) or config.vocab_size,
            gates=GATES[config.rnn_type],
            score=config.attention_type,
            style="luong+feeding" if feeding else config.decoder_style,
        )


def rnn_flops(gates: int, hidden: int, inputs: int) -> int:
    """One RNN cell step for one sequence: input and recurrent projections `2 * G * (in + hidden)`."""
    return 2 * gates * hidden * (inputs + hidden)


def encoder_flops_per_token(sizes: ModelSizes) -> int:
    """Every encoder layer and direction, per source token."""
    total = 0
    for layer in range(sizes.encoder_layers):
        inputs = sizes.embedding if layer == 0 else sizes.key
        total += sizes.directions * rnn_flops(sizes.gates, sizes.encoder_hidden, inputs)
    return total


def key_flops_per_token(sizes: ModelSizes) -> int:
    """Projection of keys (and values) once per source token (`project_keys`)."""
    if sizes.heads == 1:
        return {"additive": 2 * sizes.key * sizes.attention, "general": 2 * sizes.key * sizes.hidden}.get(
            sizes.score, 0
        )  # dot / scaled_dot use the raw encoder states
    keys_and_values = 2 * 2 * sizes.key * sizes.attention
    head_dim = sizes.attention // sizes.heads
    bilinear = 2 * sizes.attention * head_dim if sizes.score == "general" else 0  # W_n k_n per head
    return keys_and_values + bilinear


def attention_flops_per_query(sizes: ModelSizes, src_len: int) -> int:
    """One decoder query against `src_len` prepared keys: query projection, scores, context, W_O."""
    if sizes.heads == 1:
        query = 2 * sizes.hidden * sizes.attention if sizes.score == "additive" else 0
        width = {"additive": sizes.attention, "general": sizes.hidden}.get(sizes.score, sizes.key)
        return query + 2 * src_len * width + 2 * src_len * sizes.key
    query, output = 2 * sizes.hidden * sizes.attention, 2 * sizes.attention * sizes.key
    return query + 2 * src_len * sizes.attention + 2 * src_len * sizes.attention + output


def decoder_step_flops(sizes: ModelSizes, src_len: int) -> int:
    """One target step: attention, decoder RNN (all layers), read-out and vocabulary projection."""
    emb, hid, key = sizes.embedding, sizes.hidden, sizes.key
    rnn_input = {"bahdanau": emb + key, "luong": emb, "luong+feeding": 2 * emb}[sizes.style]
    rnn = rnn_flops(sizes.gates, hid, rnn_input) + (sizes.layers - 1) * rnn_flops(sizes.gates, hid, hid)
    readout_input = hid + key + emb if sizes.style == "bahdanau" else key + hid
    return attention_flops_per_query(sizes, src_len) + rnn + 2 * readout_input * emb + 2 * emb * sizes.vocab


def forward_flops(
    config: Seq2SeqAttnConfig, batch: int, src_len: int, tgt_len: int, source_tokens: int | None = None
) -> int:
    """Matmul FLOPs (2 per multiply-add) of one teacher-forced forward pass, counted from the config.

    Valid for every `rnn_type`, `attention_type`, head count, `decoder_style` (with or without input
    feeding), bidirectional or not, any layer counts, either bridge, tied or untied embeddings (tying
    shares weights, not work). It counts what `torch.utils.flop_counter.FlopCounterMode` counts, so the
    two agree exactly (a test checks every variant): matrix products only (`mm`, `addmm`, `bmm`, the
    matmuls inside `einsum` and RNN cells), `2 * M * N * K` each. Not counted, as by FlopCounterMode:
    embeddings, gate nonlinearities, biases, tanh / softmax / masking of the attention, the loss.

    Counted, per the legend of the modeling file (G = gates x width, 3H for a GRU):
        encoder     per real source token, layer and direction: `2*G_e*(in + H_e)`
        keys        per source position: the key (and value) projections done once per source
        bridge      per sentence `2*K*L*H` (`bridge="linear"`)
        per target step: attention (query projection, scores `2*S*D` per head, context, W_O with
                    heads), decoder RNN over all layers, read-out, vocabulary projection `2*E*V`

    Args:
        batch, src_len, tgt_len: a batch of `batch` sources of `src_len` positions and targets of
            `tgt_len` tokens.
        source_tokens: real (unpadded) source tokens in a right-padded batch; the packed encoder RNN
            runs over those only, while the attention still spans all `src_len` positions. Default:
            `batch * src_len` (no padding).
    """
    sizes = ModelSizes.of(config)
    source_tokens = batch * src_len if source_tokens is None else source_tokens
    bridge = 2 * sizes.key * sizes.layers * sizes.hidden if config.bridge == "linear" else 0
    return (
        source_tokens * encoder_flops_per_token(sizes)
        + batch * src_len * key_flops_per_token(sizes)
        + batch * bridge
        + batch * tgt_len * decoder_step_flops(sizes, src_len)
    )


def train_flops_per_step(config: Seq2SeqAttnConfig, batch: int, src_len: int, tgt_len: int) -> int:
    """Model FLOPs of one training step: forward + backward, backward counted as 2x forward."""
    return 3 * forward_flops(config, batch, src_len, tgt_len)


def bench_matmul(bench: Bench) -> dict[str, Any]:
    """fp32 `torch.mm` GFLOP/s for each square size; `GFLOP/s` is the best median."""
    result = {}
    for size in bench.workload.matmul_sizes:
        a, b = torch.randn(size, size, device=bench.device), torch.randn(size, size, device=bench.device)
        result[f"n{size}"] = 2 * size**3 / bench.time(partial(torch.mm, a, b)) / 1e9
    return {"GFLOP/s": max(result.values()), **result}


def bench_mfu(bench: Bench, arch: Arch, train: dict[str, Any], matmul: dict[str, Any]) -> dict[str, Any]:
    """Achieved model FLOP/s in training (analytic FLOPs / measured step time) over the matmul peak."""
    work = bench.workload
    flops = train_flops_per_step(arch.config(), work.batch, work.src_len, work.tgt_len)
    achieved = flops / (train["step_ms"] / 1e3) / 1e9
    return {"MFU%": 100 * achieved / matmul["GFLOP/s"], "GFLOP/step": flops / 1e9, "GFLOP/s": achieved}
