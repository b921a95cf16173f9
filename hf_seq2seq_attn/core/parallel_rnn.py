"""A bidirectional encoder RNN whose two directions run at the same time, one per core, on CPU.

Why: `nn.GRU(bidirectional=True)` runs its directions one after the other, forward and backward, and each
of their steps is a `(B, E|H) x (., 3H)` matmul too small to keep two cores busy. The directions are
independent until the layer's output, so here each runs on its own thread with half the intra-op threads.
The backward needs the same care: the autograd engine walks a CPU graph on one thread, so the two
directions' graphs are kept apart inside [`TwoBranches`] and each is differentiated on its own thread.
Measured at the benchmark's shape (B 64, S 30, E 256, H 256, GRU, two threads), forward and backward:
91 instead of 105 ms (alternating, 30 calls each); the whole training step ~2% faster.

Scope (`parallel_directions_apply`): a bidirectional RNN without projections, batch and hidden size large
enough (`MIN_BATCH`, `MIN_HIDDEN`), on CPU with two or more intra-op threads, where a backward may follow,
outside `torch.compile`, jit tracing, ONNX export and autocast (`fused_recurrence.eager_float`). Layers are stacked on the calling thread, so the dropout between
them draws from the generator in the same order every run. `tests/test_parallel_rnn.py` checks outputs and
gradients against `nn.GRU` / `nn.LSTM` / `nn.RNN` in float64, with and without padding.

Shapes: B batch, S source length, E input size, H hidden size per direction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import torch
import torch.nn.functional as F
from torch import _VF, nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .fused_recurrence import eager_float

Tensors = tuple[torch.Tensor, ...]

# Below these sizes the two threads cost more than they save. At two threads (alternating calls on the 2-core
# Xeon, 2026-12-01), encoder forward and backward ran 0.63-0.86x as fast as `nn.GRU` with batch 64 and
# hidden 64 or 96, or batch 32 and hidden 128, and 1.0-1.2x with batch 64-128 and hidden 128-256; but in
# whole training steps only hidden 256 kept a gain (the benchmark's shape: 1.01-1.04x over four A/B runs),
# while the demo recipe's hidden 192 read 0.95-1.02x.
MIN_BATCH = 64
MIN_HIDDEN = 256

# One worker is enough: the calling thread runs the other branch. Made on first use, and again in a forked
# child (which inherits the pool object but not its thread).
_pool: tuple[int, ThreadPoolExecutor] | None = None


def parallel_directions_apply(rnn: nn.RNNBase, inputs: torch.Tensor) -> bool:
    """Whether [`bidirectional_rnn`] runs `rnn` on `inputs` `(B, S, E)` (see the module's scope)."""
    return (
        rnn.bidirectional
        and rnn.proj_size == 0
        and inputs.device.type == "cpu"
        and torch.get_num_threads() >= 2
        and inputs.shape[0] >= MIN_BATCH
        and rnn.hidden_size >= MIN_HIDDEN
        and torch.is_grad_enabled()
        and eager_float(inputs.dtype)
    )


def in_parallel(branch: Callable[[int], Any]) -> tuple[Any, Any]:
    """`(branch(0), branch(1))`, the second on the worker thread; each with half the intra-op threads.

    `torch.set_num_threads` sets the calling thread's OpenMP and MKL team size (and the default for threads
    not yet started), so each side sets its own, and the caller's is put back after both are done.
    """
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf_seq2seq_attn-rnn"))
    threads = torch.get_num_threads()
    half = max(1, threads // 2)

    def worker() -> Any:
        torch.set_num_threads(half)
        return branch(1)

    torch.set_num_threads(half)
    try:
        future = _pool[1].submit(worker)
        try:
            first = branch(0)
        finally:
            wait([future])  # the worker is done before the thread count is put back, whatever happened
        return first, future.result()
    finally:
        torch.set_num_threads(threads)


class TwoBranches(torch.autograd.Function):
    """Two independent differentiable computations, each forward and each backward on its own thread.

    Each branch runs on detached copies of its inputs under `enable_grad`, building a graph of its own;
    the backward differentiates the two graphs with `torch.autograd.grad` at the same time. Inputs passed
    to both branches (the layer input) get the sum of the two gradients from the engine. The branch graphs
    live as long as this node (so a second backward with `retain_graph=True` works); the encoder is the last
    thing a backward reaches, so keeping them to the end costs no peak memory.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, run: Callable[[int, Tensors], Tensors], split: int, *inputs: torch.Tensor
    ) -> Tensors:
        """`run(i, branch_inputs)` for i = 0, 1 on `inputs[:split]` and `inputs[split:]`; returns both
        branches' outputs, the first's then the second's."""
        leaves = (
            tuple(t.detach().requires_grad_(t.requires_grad) for t in inputs[:split]),
            tuple(t.detach().requires_grad_(t.requires_grad) for t in inputs[split:]),
        )

        def branch(i: int) -> Tensors:
            with torch.enable_grad():
                return run(i, leaves[i])

        outputs = in_parallel(branch)
        ctx.graphs = (leaves, outputs)
        ctx.counts = (len(outputs[0]), len(outputs[1]))
        return tuple(out.detach() for out in outputs[0] + outputs[1])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        leaves, outputs = ctx.graphs
        per_branch = (grads[: ctx.counts[0]], grads[ctx.counts[0] :])

        def branch(i: int) -> tuple[torch.Tensor | None, ...]:
            return _grad(outputs[i], per_branch[i], leaves[i])

        first, second = in_parallel(branch)
        return (None, None, *first, *second)


def _grad(
    outputs: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], leaves: Sequence[torch.Tensor]
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of `outputs` (weighted by `grads`) for each of `leaves`, None where a leaf needs none."""
    pairs = [(out, grad) for out, grad in zip(outputs, grads, strict=True) if out.requires_grad]
    wanted = [leaf for leaf in leaves if leaf.requires_grad]
    if not pairs or not wanted:
        return tuple(None for _ in leaves)
    found = iter(
        torch.autograd.grad(
            [out for out, _ in pairs],
            wanted,
            [grad for _, grad in pairs],
            retain_graph=True,
            allow_unused=True,
        )
    )
    return tuple(next(found) if leaf.requires_grad else None for leaf in leaves)


def reverse_within(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """`x` `(B, S, D)` with each row's first `lengths[b]` steps in reverse order and its padding in place
    (all of them reversed when `lengths` is None). Its own inverse."""
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device)
    last = lengths.to(x.device)[:, None] - 1
    index = torch.where(steps <= last, last - steps, steps)  # (B, S)
    return x.gather(1, index[:, :, None].expand_as(x))


_VF_RNN: dict[str, Callable[..., Any]] = {
    "GRU": _VF.gru,
    "LSTM": _VF.lstm,
    "RNN_TANH": _VF.rnn_tanh,
    "RNN_RELU": _VF.rnn_relu,
}


def one_direction(
    rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor | None, weights: Sequence[torch.Tensor]
) -> Tensors:
    """One layer of `rnn` run forward over `inputs` `(B, S, E)` (rows of `lengths` steps, None = all S) with
    `weights` (`W_ih, W_hh[, b_ih, b_hh]` of one direction). Returns `(states (B, S, H), h_n (B, H))`, and the
    LSTM's `c_n (B, H)` last; padded steps' states are zero, as `pad_packed_sequence` leaves them."""
    batch, total = inputs.shape[:2]
    zeros = inputs.new_zeros(1, batch, rnn.hidden_size)
    hx: Any = (zeros, zeros) if rnn.mode == "LSTM" else zeros
    run, flags = _VF_RNN[rnn.mode], (rnn.bias, 1, 0.0, rnn.training, False)
    if lengths is None:
        states, *final = run(inputs, hx, list(weights), *flags, True)  # batch first
        return (states, *(f[0] for f in final))
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    data, *final = run(packed.data, packed.batch_sizes, hx, list(weights), *flags)
    states, _ = pad_packed_sequence(
        PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
        batch_first=True,
        total_length=total,
    )
    assert packed.unsorted_indices is not None
    return (states, *(f[0].index_select(0, packed.unsorted_indices) for f in final))


def bidirectional_rnn(
    rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """What `rnn(inputs)` (bidirectional, batch first; packed by `lengths` unless None) returns, with each
    layer's two directions run in parallel under [`TwoBranches`].

    Args:
        inputs: `(B, S, E)`.
        lengths: `(B,)` real steps per row, or None when no row is padded.
    Returns:
        states `(B, S, 2H)` (zero at padded steps) and `h_n` `(layers * 2, B, H)`, or `(h_n, c_n)` for an
        LSTM.
    """
    names = rnn._flat_weights_names  # per layer: forward direction's weights, then the reverse's
    per_layer = len(names) // rnn.num_layers
    finals: list[torch.Tensor] = []
    layer_input = inputs
    for layer in range(rnn.num_layers):
        if layer > 0 and rnn.dropout > 0 and rnn.training:
            layer_input = F.dropout(layer_input, rnn.dropout, training=True)
        weights = [getattr(rnn, name) for name in names[layer * per_layer : (layer + 1) * per_layer]]
        half = per_layer // 2

        def run(direction: int, branch: Tensors) -> Tensors:
            x, *own = branch
            if direction == 0:
                return one_direction(rnn, x, lengths, own)
            states, *final = one_direction(rnn, reverse_within(x, lengths), lengths, own)
            return (reverse_within(states, lengths), *final)

        forward_out, backward_out = _split(
            TwoBranches.apply(run, 1 + half, layer_input, *weights[:half], layer_input, *weights[half:])
        )
        layer_input = torch.cat([forward_out[0], backward_out[0]], dim=-1)  # (B, S, 2H)
        finals += [torch.stack([f, b]) for f, b in zip(forward_out[1:], backward_out[1:], strict=True)]
    h_n = torch.cat(finals[0::2] if rnn.mode == "LSTM" else finals)  # (layers * 2, B, H)
    if rnn.mode == "LSTM":
        return layer_input, (h_n, torch.cat(finals[1::2]))
    return layer_input, h_n


def _split(outputs: Tensors) -> tuple[Tensors, Tensors]:
    """[`TwoBranches`]' outputs as the two directions' `(states, h_n[, c_n])`."""
    half = len(outputs) // 2
    return outputs[:half], outputs[half:]
