"""The floor of batch-1 decoding: the least time one decoder step can take on this machine, by memory traffic
(the bytes it must read / the measured memory bandwidth) and by arithmetic (its FLOPs / the measured matmul
peak), and each measured batch-1 figure as a multiple of the larger of the two ("x the floor").

At batch 1 a step multiplies vectors by the decoder's weight matrices: two FLOPs per weight read, far too
few to keep the arithmetic units busy, so the memory floor is normally the larger. The bytes are counted
from the model's own parameters: everything one step reads in full (RNN cell, attention query and output
projections, `energy`, read-out, output projection over the target vocabulary), one row of the target
embedding, and the keys and values of one source (activations, fp32 in every graph). The int8 ONNX graphs
hold every weight matrix of the step as int8 (1 byte; the dynamic quantization of `MatMul` and `Gather`,
see `onnx_export`), biases and `energy` stay fp32 (4 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Absolute, not relative: see `workload.py`.
from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration

from .flops import ModelSizes, bench_matmul, decoder_step_flops
from .report import fmt
from .timing import time_once
from .workload import Bench

# Decoder parameters a step does not read: the embedding (one row is, counted apart), and what runs once
# per source (`init_cache`): the bridge and the key / value projections (`project_keys`, `prepare_keys`).
ONCE_PER_SOURCE = (
    "embed_tokens.",
    "bridge.",
    "attention.key_proj.",
    "attention.value_proj.",
    "attention.bilinear",
)
INT8_BYTES = 1
STREAM_ROUNDS = 5  # best of this many passes over the bandwidth array (at least `--repeats`)


@dataclass(frozen=True)
class StepCost:
    """What one batch-1 decoder step must read and compute, whatever the machine."""

    weight_bytes: int  # decoder weights read per step, as the PyTorch model / fp32 graph holds them
    int8_weight_bytes: int  # the same in the int8 ONNX graph
    cache_bytes: int  # keys + values of one source (fp32 activations in every graph)
    flops: int  # matmul FLOPs of the step (`flops.decoder_step_flops`)

    def bytes(self, int8: bool = False) -> int:
        """Bytes one step reads from memory at least."""
        return (self.int8_weight_bytes if int8 else self.weight_bytes) + self.cache_bytes


@dataclass(frozen=True)
class Peaks:
    """This machine's limits at the run's thread count."""

    gb_per_s: float  # memory read bandwidth (`bench_bandwidth`), 1e9 bytes/s
    gflop_per_s: float  # fp32 matmul peak (`flops.bench_matmul`), 1e9 FLOP/s


def step_parameters(model: Seq2SeqAttnForConditionalGeneration) -> list[tuple[torch.Tensor, bool]]:
    """Every parameter one decoder step reads in full, each with whether it is a weight matrix (a `MatMul`
    weight, int8 in the int8 graph): `nn.Linear` weights and the RNN's `weight_ih` / `weight_hh`."""
    decoder = model.model.decoder
    linears = [module for module in (*decoder.modules(), model.lm_head) if isinstance(module, nn.Linear)]
    matrices = {id(module.weight) for module in linears}
    matrices |= {id(p) for name, p in decoder.rnn.named_parameters() if name.startswith("weight_")}
    read = [p for name, p in decoder.named_parameters() if not name.startswith(ONCE_PER_SOURCE)]
    read += list(model.lm_head.parameters())  # tied or not, the step reads all of V x E
    return [(p, id(p) in matrices) for p in read]


def step_weight_bytes(model: Seq2SeqAttnForConditionalGeneration, int8: bool = False) -> int:
    """Bytes of decoder weights one batch-1 step reads: `step_parameters` and one target embedding row;
    with `int8`, 1 byte per element of the weight matrices and the embedding row (int8 ONNX graph)."""
    row = model.model.decoder.embed_tokens.weight
    total = row.shape[1] * (INT8_BYTES if int8 else row.element_size())
    for param, matrix in step_parameters(model):
        total += param.numel() * (INT8_BYTES if int8 and matrix else param.element_size())
    return total


def cache_bytes(model: Seq2SeqAttnForConditionalGeneration, src_len: int) -> int:
    """Bytes of the keys and values of one source of `src_len` positions that every step reads (fp32):
    keys `(N, S, D)`; values `(N, S, K)` with one head, `(N, S, D)` with several; counted once where the
    keys are the values (one-head dot scores on the raw encoder states)."""
    attention = model.model.decoder.attention
    keys = attention.num_heads * attention.head_dim * src_len
    values = src_len * (model.config.encoder_output_size if attention.value_proj is None else keys // src_len)
    shared = attention.value_proj is None and attention.key_proj is None
    return 4 * (values if shared else keys + values)


def step_cost(model: Seq2SeqAttnForConditionalGeneration, src_len: int) -> StepCost:
    """The memory traffic and FLOPs of one batch-1 decoder step against a source of `src_len` tokens."""
    return StepCost(
        weight_bytes=step_weight_bytes(model),
        int8_weight_bytes=step_weight_bytes(model, int8=True),
        cache_bytes=cache_bytes(model, src_len),
        flops=decoder_step_flops(ModelSizes.of(model.config), src_len),
    )


def last_level_cache_bytes() -> int:
    """Size in bytes of the CPU's largest cache as Linux reports it (`/sys`), 0 where unknown."""
    sizes = [0]
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
    return max(sizes)


def bench_bandwidth(bench: Bench) -> dict[str, Any]:
    """Memory read bandwidth in GB/s (1e9 bytes/s): the best of `STREAM_ROUNDS` (or `--repeats`) sums of an
    fp32 array of `workload.stream_mib` MiB, or `stream_over_cache` x the last-level cache if larger, so
    that it streams from memory. A read, as a decoder step reads its weights; run at the current threads."""
    work = bench.workload
    size = max(work.stream_mib * 2**20, work.stream_over_cache * last_level_cache_bytes())
    data = torch.ones(size // 4, dtype=torch.float32, device=bench.device)  # written once: pages mapped
    data.sum()  # warm-up: any one-time set-up of the kernel
    best = min(time_once(data.sum, bench.sync()) for _ in range(max(STREAM_ROUNDS, bench.repeats)))
    return {"GB/s": data.numel() * 4 / best / 1e9, "MiB": data.numel() * 4 / 2**20}


def measure_peaks(bench: Bench) -> Peaks:
    """Memory bandwidth and matmul peak, measured now (the run's `matmul` and `bandwidth` figures)."""
    return Peaks(bench_bandwidth(bench)["GB/s"], bench_matmul(bench)["GFLOP/s"])


def floor_metrics(ms_per_token: float, cost: StepCost, peaks: Peaks, int8: bool = False) -> dict[str, float]:
    """A measured batch-1 figure (ms per generated token) beside the two floors of one step (ms) and its
    multiple of the larger one (`x_floor`: 1 = at the machine's limit)."""
    memory_ms = 1e3 * cost.bytes(int8) / (peaks.gb_per_s * 1e9)
    arithmetic_ms = 1e3 * cost.flops / (peaks.gflop_per_s * 1e9)
    return {
        "ms/token": ms_per_token,
        "memory_floor_ms": memory_ms,
        "arith_floor_ms": arithmetic_ms,
        "x_floor": ms_per_token / max(memory_ms, arithmetic_ms),
    }


def cost_metrics(cost: StepCost, peaks: Peaks) -> dict[str, float]:
    """The inputs of the floors: MB read per step (fp32, int8), MFLOP per step, and the machine's peaks."""
    return {
        "fp32_MB": cost.bytes() / 1e6,
        "int8_MB": cost.bytes(int8=True) / 1e6,
        "MFLOP": cost.flops / 1e6,
        "GB/s": peaks.gb_per_s,
        "GFLOP/s": peaks.gflop_per_s,
    }


def floor_line(threads: int, arch: str, label: str, metrics: dict[str, float]) -> str:
    """One printed `floor` row, laid out like the `ratio` rows, figures as `key=value`."""
    values = "  ".join(f"{key}={fmt(value)}" for key, value in metrics.items())
    return f"floor    threads={threads}  {arch:<8} {label:<24} {values}"
