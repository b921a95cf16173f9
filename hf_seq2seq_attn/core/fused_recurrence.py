"""The Bahdanau decoder's teacher-forced recurrence with a hand-written backward pass, for training.

Why: under autograd, each of the T steps of `Seq2SeqAttnDecoder._fast_bahdanau` records ~40 graph nodes,
and their backward computes every weight gradient once per step: T small `(B, G) x (B, H)` matmuls per
weight, each followed by an in-place add into the gradient, plus the zero-filled gradients of the
splits and selects, and nine passes over the `(B, S, A)` additive-score tensor. Profiled at the
benchmark's default shape (B 64, T 30, S 30, H 512, one thread), that bookkeeping took as long as the
decoder's own matrix products.

Here the backward walks the steps once in reverse and keeps, per step, only what the next (earlier)
step needs: the gradient of `s_{t-1}` (and of the LSTM cell). The per-step gradients of the gates and of
the query are written into `(T, B, .)` buffers, and each weight gradient is then **one** matmul over all
`T x B` rows after the loop; so are the gradients of the values (the encoder states). The score's
backward takes four passes over `(B, S, A)` (see [`FusedBahdanau`]), and per-step scratch tensors reuse one
buffer each (a fresh multi-MB tensor is a cold one). Decoder forward and backward at the default shape:
~0.3 s instead of ~0.57 s on one thread.

Scope (`supports_fused_decoder`): the Bahdanau decoder with one RNN layer (GRU, LSTM or tanh RNN), a single-head
additive score, no attention dropout while training, float32/float64 outside autocast and outside
`torch.compile`. Anything else runs the autograd path (`_fast_bahdanau`). `tests/test_fused_recurrence.py`
proves outputs and every gradient equal to the textbook step's in float64.

Shapes as in `modeling_seq2seq_attn`; `*_tm` tensors are time-major, `(T, B, .)`, so a step's slice is
contiguous.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch.autograd.function import once_differentiable

if TYPE_CHECKING:  # a runtime import would be circular: the package's __init__ imports the model
    from .configuration_seq2seq_attn import Seq2SeqAttnConfig


_DTYPES = (torch.float32, torch.float64)


def eager_float(dtype: torch.dtype) -> bool:
    """Where the hand-written training paths (this module's and `fused_loss`'s) may run: float32/float64
    (half precision takes the autograd paths, which promote what sums badly), outside autocast,
    `torch.compile` (inductor fuses the autograd paths itself, and would not trace these loops), jit
    tracing and ONNX export."""
    return (
        dtype in _DTYPES
        and not torch.is_autocast_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not torch.onnx.is_in_onnx_export()
    )


def supports_fused_decoder(config: Seq2SeqAttnConfig, training: bool, dtype: torch.dtype) -> bool:
    """Whether [`fused_bahdanau`] computes this decoder's teacher-forced pass: only where a backward may
    follow. Under `no_grad` (evaluation loss, the explorer's neighbour index) the autograd path is faster:
    it keeps nothing, where this one still writes the features it saves for a backward (measured at the
    benchmark's shape, one thread: 389 vs 320 ms for a forward)."""
    return (
        torch.is_grad_enabled()
        and config.decoder_style == "bahdanau"
        and config.decoder_layers == 1
        and config.attention_type == "additive"
        and config.num_attention_heads == 1
        and not (training and config.attention_dropout > 0)
        and eager_float(dtype)
    )


class CellTrace(NamedTuple):
    """What one RNN cell step keeps for its backward, each `(B, H)`; unused fields are None.

    GRU: `a, b, c` = the reset gate r, the update gate z and the candidate n, `d` = `W_hn s + b_hn`.
    LSTM: `a, b, c, d` = the input, forget and output gates and the cell candidate g.
    tanh RNN: `a` = the new state.
    """

    a: torch.Tensor
    b: torch.Tensor | None = None
    c: torch.Tensor | None = None
    d: torch.Tensor | None = None


def cell_forward(
    rnn_type: str,
    gates_x: torch.Tensor,
    gates_h: torch.Tensor,
    hidden: torch.Tensor,
    cell: torch.Tensor | None,
    out_hidden: torch.Tensor,
    out_cell: torch.Tensor | None,
) -> CellTrace:
    """`modeling_seq2seq_attn.cell_update`, writing the new state into `out_hidden` / `out_cell` (slices of the
    caller's buffers: no copy) and returning what [`cell_backward`] needs.

    Args:
        gates_x, gates_h: `(B, G)` input and recurrent projections (biases included).
        hidden, cell: `(B, H)` previous state (`cell` LSTM only).
        out_hidden, out_cell: `(B, H)` where the new state goes (`out_cell` LSTM only).
    Returns:
        the step's [`CellTrace`].
    """
    if rnn_type == "gru":
        x_r, x_z, x_n = gates_x.chunk(3, dim=-1)
        h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
        reset = torch.sigmoid(x_r + h_r)
        update = torch.sigmoid(x_z + h_z)
        candidate = torch.tanh(x_n + reset * h_n)
        torch.addcmul(candidate, update, hidden - candidate, out=out_hidden)  # (1 - z) n + z s
        return CellTrace(reset, update, candidate, h_n)
    if rnn_type == "lstm":
        assert cell is not None and out_cell is not None, "an LSTM step needs its cell state"
        i, f, g, o = (gates_x + gates_h).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        torch.addcmul(f * cell, i, g, out=out_cell)
        torch.mul(o, torch.tanh(out_cell), out=out_hidden)
        return CellTrace(i, f, o, g)
    torch.tanh(gates_x + gates_h, out=out_hidden)
    return CellTrace(out_hidden)


def cell_backward(
    rnn_type: str,
    trace: CellTrace,
    hidden: torch.Tensor,
    cell: torch.Tensor | None,
    new_cell: torch.Tensor | None,
    grad_hidden: torch.Tensor,
    grad_cell: torch.Tensor | None,
    out_x: torch.Tensor,
    out_h: torch.Tensor,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients of one [`cell_forward`] step, the gates' written straight into the caller's buffers
    (each gate's `(B, H)` block by `out=`: a `cat` into a buffer slice was a slow strided copy).

    Args:
        trace: the step's [`CellTrace`]; hidden, cell: its input state; new_cell: its output cell (LSTM).
        grad_hidden, grad_cell: `(B, H)` gradients of the new hidden and cell (cell LSTM only).
        out_x: `(B, G)` where the gradient of `gates_x` goes.
        out_h: `(B, G - shared)` where the gradient of the `gates_h` columns after the first
            [`shared_gate_columns`] goes (those equal `gates_x`'s: the caller reads them there).
    Returns:
        the gradients of the previous hidden and cell `(B, H)` through the cell's arithmetic alone, not
        through `W_hh` (None where there is no such path).
    """
    size = grad_hidden.shape[-1]

    def block(out: torch.Tensor, index: int) -> torch.Tensor:
        return out[:, index * size : (index + 1) * size]

    if rnn_type == "gru":
        reset, update, candidate, h_n = trace
        assert update is not None and candidate is not None and h_n is not None
        # s' = n + z (s - n),  n = tanh(x_n + r h_n),  r = sigma(x_r + h_r),  z = sigma(x_z + h_z)
        d_pre_n = torch.mul(grad_hidden * (1 - update), 1 - candidate * candidate, out=block(out_x, 2))
        torch.mul(d_pre_n * h_n, reset * (1 - reset), out=block(out_x, 0))
        torch.mul(grad_hidden * (hidden - candidate), update * (1 - update), out=block(out_x, 1))
        torch.mul(d_pre_n, reset, out=out_h)  # the candidate's block; r and z are shared
        return grad_hidden * update, None
    if rnn_type == "lstm":
        i, f, o, g = trace
        assert f is not None and o is not None and g is not None and cell is not None and new_cell is not None
        assert grad_cell is not None
        # c' = f c + i g,  h' = o tanh(c')
        tanh_cell = torch.tanh(new_cell)
        d_cell = grad_cell + grad_hidden * o * (1 - tanh_cell * tanh_cell)
        torch.mul(d_cell * g, i * (1 - i), out=block(out_x, 0))
        torch.mul(d_cell * cell, f * (1 - f), out=block(out_x, 1))
        torch.mul(d_cell * i, 1 - g * g, out=block(out_x, 2))
        torch.mul(grad_hidden * tanh_cell, o * (1 - o), out=block(out_x, 3))
        return None, d_cell * f
    new_hidden = trace.a
    torch.mul(grad_hidden, 1 - new_hidden * new_hidden, out=out_x)
    return None, None


def additive_scores(
    keys: torch.Tensor, query: torch.Tensor, energy: torch.Tensor, features: torch.Tensor
) -> torch.Tensor:
    """`e = v . tanh(k + q)`, keeping `u = tanh(k + q)` for the backward.

    Args:
        keys: `(B, S, A)`; query: `(B, A)`; energy: `(A,)` the score's v.
        features: `(B, S, A)` where `u` goes.
    Returns:
        the scores `(B, S)`.
    """
    u = torch.tanh_(torch.add(keys, query.unsqueeze(1), out=features))  # (B, S, A)
    # (B, S, A) x (A, 1), not `u @ energy`: an `mv` that torch's FLOP counter does not count
    return (u @ energy.unsqueeze(1)).squeeze(2)


def additive_scores_backward(
    features: torch.Tensor,
    grad_scores: torch.Tensor,
    grad_keys: torch.Tensor,
    grad_energy: torch.Tensor,
    slope: torch.Tensor,
    grad_query: torch.Tensor,
) -> torch.Tensor:
    """The backward of [`additive_scores`], with `g = dL/de` and `1 - u^2` made once:
    `dL/dq = v * sum_s g (1 - u^2)` (returned before its `v` factor), `dL/dk += g (1 - u^2)` (likewise,
    accumulated into `grad_keys`), `dL/dv += sum g u` (into `grad_energy`).

    Args:
        features: `(B, S, A)` the forward's `u`; grad_scores: `(B, S)`.
        grad_keys: `(B, S, A)`, grad_energy: `(A,)` accumulated in place.
        slope: `(B, S, A)` scratch for `1 - u^2`, the same buffer every step: a fresh tensor per step is a cold
            one (4 MB at the default shape), and writing it cost 2 ms a step instead of 0.4 on one thread.
        grad_query: `(B, A)` where the query's gradient goes.
    Returns:
        `grad_query`, `(B, A)`.
    """
    grad_energy.addmv_(features.flatten(0, 1).t(), grad_scores.flatten())
    torch.addcmul(features.new_ones(()), features, features, value=-1, out=slope)  # 1 - u^2
    torch.bmm(grad_scores.unsqueeze(1), slope, out=grad_query.unsqueeze(1))
    grad_keys.addcmul_(grad_scores.unsqueeze(2), slope)
    return grad_query


def shared_gate_columns(rnn_type: str, size: int) -> int:
    """How many leading columns of `gates_x` and `gates_h` get the same gradient (the gates' sums go
    through the nonlinearity together): GRU r and z, all of the LSTM's and the tanh RNN's. The
    backward keeps them once, so no per-step copy is made."""
    return {"gru": 2, "lstm": 4, "rnn": 1}[rnn_type] * size


class Workspace:
    """One reusable buffer for the `(T, B, S, A)` tanh features a training step keeps for its backward.

    Why: 118 MB at the benchmark's shape. Freshly allocated each step, the allocator returns it to the
    system after the backward and the next step page-faults it in again: that cost more than the forward's
    arithmetic on the measuring machine (decoder forward ~140 ms with the memory kept, ~210-270 without).
    Held by the decoder, lent to one forward at a time and given back by its backward; a forward that finds
    it lent (two forwards before a backward) allocates its own. `generation` counts the loans, so a second
    backward through a graph whose buffer was lent again since (`retain_graph=True`) raises instead of
    reading another step's features.
    """

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.lent = False
        self.generation = 0

    def take(self, shape: tuple[int, ...], like: torch.Tensor) -> tuple[torch.Tensor, int | None]:
        """A tensor of `shape` (dtype and device of `like`) and the loan's generation (None: not pooled)."""
        numel = math.prod(shape)
        if self.lent:
            return like.new_empty(shape), None
        buffer = self.buffer
        if (
            buffer is None
            or buffer.numel() < numel
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            self.buffer = buffer = None  # free the old one first: peak memory of one buffer, not two
            self.buffer = buffer = like.new_empty(numel)
        self.lent, self.generation = True, self.generation + 1
        return buffer[:numel].view(shape), self.generation

    def give_back(self, generation: int | None) -> None:
        if generation is not None and generation == self.generation:
            self.lent = False

    def check(self, generation: int | None) -> None:
        """Raise when the buffer of loan `generation` has been lent again since."""
        if generation is not None and generation != self.generation:
            raise RuntimeError(
                "This decoder graph's saved attention features were overwritten by a later training step "
                "(its buffer is reused between steps). Run the second backward (retain_graph=True) before the "
                "next forward, or set `model.model.decoder.workspace = None` to keep each step's own copy."
            )


class FusedBahdanau(torch.autograd.Function):
    """T steps of `Seq2SeqAttnDecoder.bahdanau_step` (one layer, single-head additive score), forward and backward.

    Per step t, from `s_{t-1}` (and the LSTM cell):
        [W_hh s + b_hh; q_t] = W_f s_{t-1} + b_f                 one matmul: W_f = [W_hh; W_q]
        a_t = softmax_s(v . tanh(k_s + q_t)),  masked;   c_t = sum_s a_{ts} h_s
        s_t = cell(gates_emb_t + W_c c_t, W_hh s_{t-1} + b_hh)   W_c = W_ih[:, E:]

    The backward of the score, with `u_t = tanh(k + q_t)` `(B, S, A)` and `g_t = dL/de_t` `(B, S)`:
        dL/dq_t = v * sum_s g_ts (1 - u_ts^2),   dL/dk = v * sum_t g_t (1 - u_t^2),   dL/dv = sum g_t u_t
    so per step one tensor `1 - u_t^2` is made, read by one batched product and one
    accumulation; `v` multiplies the sums, not every element. (Four passes over `(B, S, A)` instead of
    autograd's nine: 1.3 ms instead of 3.5 ms a step at the default shape, one thread.)
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        rnn_type: str,
        gates_emb_tm: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
        weight_f: torch.Tensor,
        bias_f: torch.Tensor,
        weight_c: torch.Tensor,
        energy: torch.Tensor,
        workspace: Workspace | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """
        Args:
            rnn_type: "gru", "lstm" or "rnn".
            gates_emb_tm: `(T, B, G)` = `W_ih[:, :E] e(y_{t-1}) + b_ih` for every step, time-major: each
                step reads a contiguous slice, and the gradient goes back in the layout it is made in (from
                `(B, T, G)`, autograd copied it twice, ~5 ms at the default shape).
            keys: `(B, S, A)` projected keys (with the score's bias); values: `(B, S, K)` encoder states.
            mask: `(B, S)` bool, True = real token.
            hidden, cell: `(B, H)` initial state (`cell` LSTM only).
            weight_f, bias_f: `(G + A, H)`, `(G + A,)`; weight_c: `(G, K)`; energy: `(A,)` the score's v.
            workspace: where the `(T, B, S, A)` features go ([`Workspace`]); None = a fresh tensor.
        Returns:
            states `(B, T, H)` s_1..s_T, contexts `(B, T, K)`, weights `(B, T, S)`, and the last cell
            `(B, H)` (LSTM; else None).
        """
        steps, batch, gates = gates_emb_tm.shape
        size = hidden.shape[-1]
        states_tm = hidden.new_empty(steps + 1, batch, size)  # s_0..s_T
        states_tm[0] = hidden
        cells_tm = None
        if cell is not None:
            cells_tm = hidden.new_empty(steps + 1, batch, size)
            cells_tm[0] = cell
        contexts_tm = hidden.new_empty(steps, batch, values.shape[-1])
        weights_tm = hidden.new_empty(steps, batch, keys.shape[1])
        # u_t = tanh(k + q_t) of every step: what autograd would keep too; recomputing it in the backward
        # costs an add and a tanh over (B, S, A) per step
        shape = (steps, *keys.shape)
        features, generation = (
            workspace.take(shape, keys) if workspace is not None else (keys.new_empty(shape), None)
        )
        traces: list[CellTrace] = []
        masked = ~mask
        for t in range(steps):
            s_prev = states_tm[t]
            gates_h, query = torch.addmm(bias_f, s_prev, weight_f.t()).split([gates, keys.shape[-1]], dim=1)
            scores = additive_scores(keys, query, energy, features[t]).masked_fill_(masked, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            weights_tm[t] = weights
            context = torch.bmm(weights.unsqueeze(1), values, out=contexts_tm[t].unsqueeze(1)).squeeze(1)
            gates_x = torch.addmm(gates_emb_tm[t], context, weight_c.t())  # (B, G)
            cell_in, cell_out = (cells_tm[t], cells_tm[t + 1]) if cells_tm is not None else (None, None)
            traces.append(
                cell_forward(rnn_type, gates_x, gates_h, s_prev, cell_in, states_tm[t + 1], cell_out)
            )
        ctx.rnn_type, ctx.traces, ctx.features = rnn_type, traces, features
        ctx.workspace, ctx.generation = workspace, generation
        ctx.save_for_backward(
            keys, values, states_tm, contexts_tm, weights_tm, cells_tm, weight_f, weight_c, energy
        )
        ctx.set_materialize_grads(False)
        last_cell = cells_tm[-1] if cells_tm is not None else None
        return (
            states_tm[1:].transpose(0, 1),
            contexts_tm.transpose(0, 1),
            weights_tm.transpose(0, 1),
            last_cell,
        )

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any,
        grad_states: torch.Tensor | None,
        grad_contexts: torch.Tensor | None,
        grad_weights: torch.Tensor | None,
        grad_last_cell: torch.Tensor | None,
    ) -> tuple[Any, ...]:
        keys, values, states_tm, contexts_tm, weights_tm, cells_tm, weight_f, weight_c, energy = (
            ctx.saved_tensors
        )
        rnn_type, traces, features = ctx.rnn_type, ctx.traces, ctx.features
        gates = weight_c.shape[0]  # G
        if ctx.workspace is not None:
            ctx.workspace.check(ctx.generation)
        steps, batch, size = states_tm.shape[0] - 1, states_tm.shape[1], states_tm.shape[2]
        # per-step gradients, kept for the weight gradients made after the loop in one matmul each. The
        # gradient of `[gates_h; q_t] = W_f s_{t-1} + b_f` is `[d gates_x[:, :shared]; d own]`: its first
        # `shared` columns are those of `gates_x` (`shared_gate_columns`), the rest `[d gates_h[:, shared:]; d q_t]`
        shared = shared_gate_columns(rnn_type, size)
        grad_gates_x_tm = states_tm.new_empty(steps, batch, gates)
        grad_own_tm = states_tm.new_empty(steps, batch, weight_f.shape[0] - shared)
        weight_shared, weight_own = weight_f[:shared], weight_f[shared:]  # (shared, H), (G + A - shared, H)
        grad_contexts_tm = states_tm.new_empty(steps, batch, values.shape[-1])
        grad_keys = torch.zeros_like(keys)  # sum_t g_t (1 - u_t^2); times v after the loop
        grad_energy = torch.zeros_like(energy)
        # (B, K, S) once: each step's `d a_t = h . d c_t` is then one row-vector product per sentence, not a
        # matrix-vector one (0.16 instead of 0.29 ms at the default shape, one thread)
        values_t = values.transpose(1, 2).contiguous()
        slope_buffer = torch.empty_like(keys)  # every step's `1 - u^2` (see `additive_scores_backward`)
        grad_query_buffer = keys.new_empty(batch, keys.shape[-1])
        grad_hidden = states_tm.new_zeros(batch, size)  # d s_t from the steps after t
        grad_cell = None  # d c_t (LSTM): the last cell's own gradient, or zeros
        if cells_tm is not None:
            grad_cell = grad_last_cell if grad_last_cell is not None else states_tm.new_zeros(batch, size)
        for t in reversed(range(steps)):
            if grad_states is not None:
                grad_hidden = grad_hidden + grad_states[:, t]
            cell_in, cell_out = (cells_tm[t], cells_tm[t + 1]) if cells_tm is not None else (None, None)
            grad_gates_x, grad_own = grad_gates_x_tm[t], grad_own_tm[t]  # (B, G), (B, G + A - shared)
            grad_prev, grad_cell = cell_backward(
                rnn_type,
                traces[t],
                states_tm[t],
                cell_in,
                cell_out,
                grad_hidden,
                grad_cell,
                grad_gates_x,
                grad_own[:, : gates - shared],
            )
            # c_t feeds the RNN input (W_c c_t) and the read-out
            if grad_contexts is not None:
                grad_context = torch.addmm(
                    grad_contexts[:, t], grad_gates_x, weight_c, out=grad_contexts_tm[t]
                )
            else:
                grad_context = torch.mm(grad_gates_x, weight_c, out=grad_contexts_tm[t])  # (B, K)
            weights = weights_tm[t]  # (B, S)
            grad_w = torch.bmm(grad_context.unsqueeze(1), values_t).squeeze(1)  # (B, S)
            if grad_weights is not None:
                grad_w = grad_w + grad_weights[:, t]
            grad_scores = weights * (grad_w - (weights * grad_w).sum(-1, keepdim=True))  # softmax backward
            # (B, S, A); not overwritten: a second backward (retain_graph=True) reads it again
            grad_query = additive_scores_backward(
                features[t], grad_scores, grad_keys, grad_energy, slope_buffer, grad_query_buffer
            )
            torch.mul(grad_query, energy, out=grad_own[:, gates - shared :])
            # d s_{t-1} = (cell path) + [d gates_x[:, :shared]; d own] W_f, by its two row blocks
            grad_shared = grad_gates_x[:, :shared]
            if grad_prev is None:
                grad_hidden = grad_shared @ weight_shared
            else:
                grad_hidden = torch.addmm(grad_prev, grad_shared, weight_shared)
            grad_hidden.addmm_(grad_own, weight_own)
        flat_own = grad_own_tm.flatten(0, 1)  # (T B, G + A - shared)
        flat_gates_x = grad_gates_x_tm.flatten(0, 1)
        flat_shared = flat_gates_x[:, :shared]
        flat_states = states_tm[:-1].flatten(0, 1)  # (T B, H) s_0..s_{T-1}
        grad_weight_f = torch.empty_like(weight_f)  # (G + A, H)
        torch.mm(flat_shared.t(), flat_states, out=grad_weight_f[:shared])
        torch.mm(flat_own.t(), flat_states, out=grad_weight_f[shared:])
        grad_weight_c = flat_gates_x.t() @ contexts_tm.flatten(0, 1)  # (G, K)
        # d h_s = sum_t a_{ts} d c_t, all steps at once: (B, S, T) x (B, T, K)
        grad_values = torch.bmm(weights_tm.permute(1, 2, 0), grad_contexts_tm.transpose(0, 1))
        if ctx.workspace is not None:
            ctx.workspace.give_back(ctx.generation)
        return (
            None,  # rnn_type
            grad_gates_x_tm,  # gates_emb_tm
            grad_keys.mul_(energy),
            grad_values,
            None,  # mask
            grad_hidden,
            grad_cell,
            grad_weight_f,
            torch.cat([flat_shared.sum(0), flat_own.sum(0)]),  # bias_f
            grad_weight_c,
            grad_energy,
            None,  # workspace
        )


def fused_bahdanau(
    rnn_type: str,
    gates_emb_tm: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    hidden: torch.Tensor,
    cell: torch.Tensor | None,
    weight_f: torch.Tensor,
    bias_f: torch.Tensor,
    weight_c: torch.Tensor,
    energy: torch.Tensor,
    workspace: Workspace | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """[`FusedBahdanau`] as a function (see its `forward` for the arguments and shapes)."""
    return FusedBahdanau.apply(  # type: ignore[no-any-return]
        rnn_type,
        gates_emb_tm,
        keys,
        values,
        mask,
        hidden,
        cell,
        weight_f,
        bias_f,
        weight_c,
        energy,
        workspace,
    )
