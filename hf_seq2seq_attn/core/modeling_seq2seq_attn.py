"""Attention RNN encoder-decoder (Bahdanau et al. 2015; Luong et al. 2015) as a transformers model.

Shape legend used in comments and docstrings:
    B  batch                      S  source length            T  target length
    E  embedding size             H  decoder hidden size      L  decoder layers
    K  encoder output size (2 x encoder_hidden_size when bidirectional)
    A  attention width            N  attention heads          D  per-head width (A / N; A, H or K with one head)
    V  target vocabulary size     G  gate width of the RNN (3H GRU, 4H LSTM, H plain RNN)

Reading order (as in transformers' Marian): small helpers -> the attention wrapper (heads, mask,
softmax, context) and one small class per score function (`ATTENTION_SCORES`) -> encoder -> decoder
state (`Seq2SeqAttnCache`) -> decoder -> pretrained plumbing -> heads. Bottom-up throughout: every
function and class is defined before the code that uses it, and inside a class (after `__init__`)
each method comes before the methods that call it, so `forward` comes last.

The decoder has one *textbook step* per style, [`Seq2SeqAttnDecoder.bahdanau_step`] and
[`Seq2SeqAttnDecoder.luong_step`], written as the papers' equations; generation (one token per call)
runs them. Teacher-forced training (T > 1 tokens per call) runs one fast path per style, each
written line for line beside its step (`_fast_bahdanau`, `_fast_luong_input_feeding`,
`_fast_luong_parallel`), and proved equal to it by `tests/test_fast_paths.py`:
    * keys (and values) are projected once per source sequence and kept in the decoder state;
    * the target-embedding part of the RNN input is projected for all steps in one matmul;
    * Bahdanau, when the score projects its query (additive, or several heads): the query projection
      `W_q s_{t-1}` and the top RNN layer's `W_hh s_{t-1}` share one matmul;
    * the Bahdanau read-out and the vocabulary projection (and the loss) run once over all steps;
    * the Luong decoder without input feeding runs its RNN over the whole target in one call.
The default Bahdanau decoder (one layer, single-head additive score) goes one step further when training:
`_fused_bahdanau` runs `_fast_bahdanau`'s loop with a hand-written backward (`fused_recurrence.py`), and the
loss of a training step comes from `fused_loss.py` without materialising the logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils import ModelOutput, logging

# Relative imports as `from .x import`, not `from . import x`: transformers copies the files named that way
# beside this one when it saves the model code for `trust_remote_code` loading.
from .configuration_seq2seq_attn import Seq2SeqAttnConfig
from .fused_loss import fused_loss_applies, linear_cross_entropy
from .fused_recurrence import Workspace, fused_bahdanau, supports_fused_decoder
from .parallel_rnn import bidirectional_rnn, parallel_directions_apply

logger = logging.get_logger(__name__)

# transformers 5.24 renamed the generation cache from `past_key_values` to `cache`: `generate()` passes it to
# `prepare_inputs_for_generation` and reads it back from the model outputs under the new name, and the output
# classes hold it in a `cache` field (the old name still maps there, with a deprecation warning). Earlier 5.x
# releases use `past_key_values` throughout. This name and `take_cache` are the one place that knows.
CACHE_NAME = "cache" if "cache" in Seq2SeqLMOutput.__dataclass_fields__ else "past_key_values"


def take_cache(cache: object | None, kwargs: dict) -> object | None:
    """The decoder state passed as `cache=`, or under its pre-5.24 name `past_key_values=` (popped from `kwargs`)."""
    old = kwargs.pop("past_key_values", None)
    if old is not None and cache is not None:
        raise ValueError("Pass the decoder state once, as `cache` (or `past_key_values`), not both.")
    return cache if cache is not None else old


# Callables, not `type[nn.RNNBase]`: the base class's constructor takes the mode first, its subclasses do not.
RNN_CLASSES: dict[str, Callable[..., nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}
# Written into every saved config so each Auto class finds the remote code, whichever head was saved.
AUTO_MAP = {
    "AutoConfig": "configuration_seq2seq_attn.Seq2SeqAttnConfig",
    "AutoModel": "modeling_seq2seq_attn.Seq2SeqAttnModel",
    "AutoModelForSeq2SeqLM": "modeling_seq2seq_attn.Seq2SeqAttnForConditionalGeneration",
}


# --------------------------------------------------------------------------------------------
# Small helpers: input checks, the RNN cell arithmetic, readable views of RNN weights
# --------------------------------------------------------------------------------------------
def check_integer_ids(ids: torch.Tensor, name: str) -> None:
    """Token ids must be an integer tensor (float ids would fail deep inside `torch.embedding`)."""
    if (
        not isinstance(ids, torch.Tensor)
        or ids.dtype.is_floating_point
        or ids.dtype.is_complex
        or ids.dtype == torch.bool
    ):
        kind = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(
            f"`{name}` must be an integer tensor of token ids (torch.long); got {kind}. "
            "Pass the ids returned by the tokenizer, or convert with `.long()`."
        )


def check_id_batch(ids: torch.Tensor, name: str) -> None:
    """Token ids must be a non-empty `(B, L)` integer tensor."""
    check_integer_ids(ids, name)
    if ids.dim() != 2 or ids.numel() == 0:
        shape = tuple(ids.shape)
        raise ValueError(f"`{name}` must be a non-empty (batch, length) tensor; got shape {shape}.")


def check_token_ids(ids: torch.Tensor, vocab_size: int, name: str) -> None:
    """[`check_id_batch`], then a clear error for ids outside `[0, vocab_size)` (torch would fail deep inside
    `embedding`, ONNX Runtime inside `Gather`).

    Reads the ids' range on the host, so the PyTorch model calls it once per source and once per
    teacher-forced target, never per generated token. The ONNX Runtime model checks its inputs here too.
    """
    check_id_batch(ids, name)
    low, high = (int(value) for value in torch.aminmax(ids))
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(
            f"`{name}` contains token id {bad}, outside the model's vocabulary [0, {vocab_size}). "
            "Was the data tokenized with a different tokenizer than the one the model was built for?"
        )


def cell_update(
    rnn_type: str,
    gates_x: torch.Tensor,
    gates_h: torch.Tensor,
    hidden: torch.Tensor,
    cell: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gate arithmetic of PyTorch's GRU / LSTM / tanh-RNN cells, given both projections.

    The caller makes the projections, so it can compute them where they are cheapest (the input part
    of all steps at once, the recurrent part fused with another matmul of the same vector).

    Args:
        gates_x: `(B, G)` = `W_ih x_t + b_ih`.
        gates_h: `(B, G)` = `W_hh h_{t-1} + b_hh`.
        hidden, cell: `(B, H)` previous states (`cell` only for LSTM).
    Returns:
        the new `(hidden, cell)`, each `(B, H)` (`cell` None unless LSTM).
    """
    if rnn_type == "gru":  # gate order r, z, n as in torch.nn.GRU
        x_r, x_z, x_n = gates_x.chunk(3, dim=-1)
        h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
        reset = torch.sigmoid(x_r + h_r)
        update = torch.sigmoid(x_z + h_z)
        candidate = torch.tanh(x_n + reset * h_n)
        return candidate + update * (hidden - candidate), None  # (1 - z) n + z h
    if rnn_type == "lstm":  # gate order i, f, g, o as in torch.nn.LSTM
        assert cell is not None, "an LSTM step needs its cell state"
        i, f, g, o = (gates_x + gates_h).chunk(4, dim=-1)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(cell), cell
    return torch.tanh(gates_x + gates_h), None


class RNNLayer:
    """Layer `index` of a stacked `nn.GRU` / `nn.LSTM` / `nn.RNN`, with its weights by readable name.

    Holds no parameters of its own (the state-dict keys stay torch's `weight_ih_l{index}` ...); it
    looks them up on every access, so it follows `.to()`, `.double()` and weight loading.
    """

    def __init__(self, rnn: nn.RNNBase, index: int):
        self.rnn, self.index = rnn, index

    @property
    def weight_ih(self) -> torch.Tensor:
        """`(G, input width)` input-to-gates matrix."""
        return getattr(self.rnn, f"weight_ih_l{self.index}")

    @property
    def bias_ih(self) -> torch.Tensor:
        return getattr(self.rnn, f"bias_ih_l{self.index}")

    @property
    def weight_hh(self) -> torch.Tensor:
        """`(G, H)` recurrent matrix."""
        return getattr(self.rnn, f"weight_hh_l{self.index}")

    @property
    def bias_hh(self) -> torch.Tensor:
        return getattr(self.rnn, f"bias_hh_l{self.index}")


class FusedProjection(NamedTuple):
    """Two linear maps of the same vector stacked, so one matmul makes both: `[W_1; W_2] x + [b_1; b_2]`."""

    weight: torch.Tensor  # (G + A, H)
    bias: torch.Tensor  # (G + A,)
    sizes: list[int]  # [G, A]: where to split the product back into the two results


# --------------------------------------------------------------------------------------------
# Attention: the wrapper (heads, mask, softmax, context), then one class per score function
# --------------------------------------------------------------------------------------------
class Seq2SeqAttnAttention(nn.Module):
    r"""Attention over encoder states: project, score, mask, softmax, weighted sum. Stateless between calls.

    The score function `e = score(q, k)` is supplied by a subclass (see `ATTENTION_SCORES`); this class
    does everything around it, the same for every score:

        a_t = softmax_s(e_{ts})            masked: padded source positions get exactly zero weight
        c_t = sum_s a_{ts} v_s

    With one head, `q = s` (or `W_q s` where the score defines it), `k = h` (or `W h`) and `v = h`.
    With N heads, `q_n = W_Q^n s`, `k_n = W_K^n h`, `v_n = W_V^n h` (D = A / N wide each), every head
    scores with the same function, and the heads' contexts are concatenated and projected back to K
    by `W_O` (Vaswani et al. 2017, eq. 4-5).

    Keys are prepared once per source by [`project_keys`]; a query then costs O(S).
    """

    equation = ""  # the score, for `repr` and docs

    def __init__(self, config: Seq2SeqAttnConfig):
        super().__init__()
        self.num_heads = heads = config.num_attention_heads
        query_size, key_size, width = (
            config.decoder_hidden_size,
            config.encoder_output_size,
            config.resolved_attention_size,
        )
        self.query_proj: nn.Linear | None = None
        self.key_proj: nn.Linear | None = None
        self.value_proj: nn.Linear | None = None
        self.out_proj: nn.Linear | None = None
        if heads == 1:
            self.head_dim = self.single_head_projections(query_size, key_size, width)
        else:
            self.head_dim = width // heads
            self.query_proj = nn.Linear(query_size, width)  # W_Q, all heads stacked
            self.key_proj = nn.Linear(key_size, width)  # W_K
            self.value_proj = nn.Linear(key_size, width)  # W_V
            self.out_proj = nn.Linear(width, key_size)  # W_O
        self.dropout = nn.Dropout(config.attention_dropout)

    # ----- what each score class decides -----
    def single_head_projections(self, query_size: int, key_size: int, width: int) -> int:
        """Create the score's own projections for one head and return D (query/key width). Default: none."""
        return key_size

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """`(B, N, T, D)` queries x `(B, N, S, D)` keys -> `(B, N, T, S)` unnormalised scores."""
        raise NotImplementedError

    def prepare_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Per-source work on the keys `(B, N, S, D)` that the score can hoist out of the decoding loop."""
        return keys

    # ----- the same for every score -----
    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, N*D) -> (B, N, L, D)."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, -1).transpose(1, 2)

    def project_keys(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepare keys and values once per source.

        Args:
            encoder_hidden_states: `(B, S, K)`.
        Returns:
            keys `(B, N, S, D)` and values `(B, N, S, K)` with one head or `(B, N, S, D)` with several.
        """
        if self.value_proj is None:  # one head: the values are the encoder states themselves
            values = encoder_hidden_states.unsqueeze(1)  # (B, 1, S, K)
            keys = self.key_proj(encoder_hidden_states).unsqueeze(1) if self.key_proj is not None else values
        else:
            assert self.key_proj is not None, "several heads: __init__ made all four projections"
            keys = self._split_heads(self.key_proj(encoder_hidden_states))  # (B, N, S, D)
            values = self._split_heads(self.value_proj(encoder_hidden_states))  # (B, N, S, D)
        return self.prepare_keys(keys), values

    def project_query(self, query: torch.Tensor) -> torch.Tensor:
        """Decoder states `(B, T, H)` -> per-head queries `(B, N, T, D)`."""
        if self.query_proj is not None:
            query = self.query_proj(query)  # (B, T, A)
        return self._split_heads(query)  # (B, N, T, D)

    def attend(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax over the masked scores and the weighted sum, from already projected queries `(B, N, T, D)`."""
        scores = self.score(query, keys).masked_fill(~mask[:, None, None, :], float("-inf"))  # (B, N, T, S)
        # In float32 (or wider) whatever the compute dtype: bf16/fp16 sums over long sources lose the small weights.
        weights = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))
        weights = weights.to(values.dtype)  # (B, N, T, S)
        context = self.dropout(weights) @ values  # (B, N, T, D or K)
        batch, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, length, -1)  # (B, T, N*D or K)
        if self.out_proj is not None:
            context = self.out_proj(context)  # (B, T, K)
        return context, weights

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from `T` queries over `S` keys.

        Args:
            query: `(B, T, H)` decoder states.
            keys, values: from [`project_keys`].
            mask: `(B, S)` bool, True = real token. Padded keys get exactly zero weight.
        Returns:
            context `(B, T, K)` and weights `(B, N, T, S)` (rows sum to 1).
        """
        return self.attend(self.project_query(query), keys, values, mask)

    def extra_repr(self) -> str:
        return f"score={self.equation!r}, heads={self.num_heads}, head_dim={self.head_dim}"


class AdditiveAttention(Seq2SeqAttnAttention):
    r"""Additive ("concat") score, Bahdanau et al. 2015, eq. 6; Luong et al. 2015, eq. 8 "concat":

        e_{ts} = v^T tanh(W_q s_t + W_k h_s)

    `W_k h_s + b` is computed once per source. With N heads, `v_n^T tanh(q_n + k_n)` per head.
    """

    equation = "v^T tanh(W_q s + W_k h)"

    def __init__(self, config: Seq2SeqAttnConfig):
        super().__init__(config)
        self.energy = nn.Parameter(torch.empty(self.num_heads, self.head_dim))  # v, one row per head

    def single_head_projections(self, query_size: int, key_size: int, width: int) -> int:
        self.query_proj = nn.Linear(query_size, width, bias=False)  # W_q
        self.key_proj = nn.Linear(key_size, width)  # W_k (+ the score's bias)
        return width

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        # In place: the (B, N, T, S, D) sum is a temporary, and the largest tensor of a decoding step.
        features = torch.tanh_(query.unsqueeze(3) + keys.unsqueeze(2))  # (B, N, T, S, D)
        return torch.einsum("bntsd,nd->bnts", features, self.energy)  # (B, N, T, S)


class DotAttention(Seq2SeqAttnAttention):
    r"""Dot score, Luong et al. 2015, eq. 8: `e_{ts} = s_t^T h_s` (one head needs H == K)."""

    equation = "s^T h"

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return query @ keys.transpose(-1, -2)  # (B, N, T, S)


class ScaledDotAttention(Seq2SeqAttnAttention):
    r"""Scaled dot score, Vaswani et al. 2017, eq. 1: `e_{ts} = s_t^T h_s / sqrt(D)`."""

    equation = "s^T h / sqrt(D)"

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return query @ keys.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, N, T, S)


class GeneralAttention(Seq2SeqAttnAttention):
    r"""General (bilinear) score, Luong et al. 2015, eq. 8: `e_{ts} = s_t^T W h_s`.

    `W h_s` does not depend on the query, so it is computed once per source: with one head it is the
    key projection itself (`key_proj`, no bias); with N heads `W_n` (`bilinear`) acts on each head's
    projected keys, `q_n^T W_n k_n`.
    """

    equation = "s^T W h"

    def __init__(self, config: Seq2SeqAttnConfig):
        super().__init__(config)
        self.bilinear: nn.Parameter | None = None
        if self.num_heads > 1:
            self.bilinear = nn.Parameter(torch.empty(self.num_heads, self.head_dim, self.head_dim))  # W_n

    def single_head_projections(self, query_size: int, key_size: int, width: int) -> int:
        self.key_proj = nn.Linear(key_size, query_size, bias=False)  # W h, precomputed per source
        return query_size

    def prepare_keys(self, keys: torch.Tensor) -> torch.Tensor:
        if self.bilinear is None:
            return keys
        return torch.einsum("bnsd,ned->bnse", keys, self.bilinear)  # W_n k_n, (B, N, S, D)

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return query @ keys.transpose(-1, -2)  # s^T (W h), (B, N, T, S)


ATTENTION_SCORES: dict[str, type[Seq2SeqAttnAttention]] = {
    "additive": AdditiveAttention,
    "dot": DotAttention,
    "general": GeneralAttention,
    "scaled_dot": ScaledDotAttention,
}


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------
@dataclass
class Seq2SeqAttnEncoderOutput(ModelOutput):
    """Encoder output. Every tensor is batch-first, so `generate()` can expand it for beams.

    Args:
        last_hidden_state: `(B, S, K)` encoder states (both directions concatenated).
        final_hidden_state: `(B, K)` top layer's last forward state and first backward state (bidirectional),
            or its last state.
        attention_mask: `(B, S)` bool source mask (True = real token) the decoder attends with.
        hidden_states: with `output_hidden_states`, `(embeddings (B, S, E), last_hidden_state)`.
    """

    # Plain `torch.Tensor`: what the encoder (and the ONNX Runtime model) return; torch ops never
    # produce the legacy `FloatTensor` / `BoolTensor` classes.
    last_hidden_state: torch.Tensor | None = None
    final_hidden_state: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


def source_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int
) -> torch.Tensor:
    """Validate the source batch and return its bool mask `(B, S)`.

    The mask falls back to `input_ids != pad_token_id` (generate() passes none for encoder-decoders).
    The ONNX Runtime model checks its sources here too (the token-id range is [`check_token_ids`]'s).
    """
    check_id_batch(input_ids, "input_ids")
    if attention_mask is None:
        mask = input_ids != pad_token_id
    else:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"`attention_mask` has shape {tuple(attention_mask.shape)} but `input_ids` has "
                f"{tuple(input_ids.shape)}; pass the mask returned by the tokenizer with the same ids."
            )
        mask = attention_mask.bool()
    lengths = mask.sum(dim=1)
    if bool((lengths == 0).any()):
        rows = (lengths == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"Source sequence(s) {rows[:10]} are all padding. Every source needs at least one token "
            "(the tokenizer appends </s>, so encode even empty strings with it)."
        )
    positions = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(mask, positions[None, :] < lengths[:, None]):
        raise ValueError(
            "The source mask must be right-padded (ones then zeros in every row). Tokenize with "
            "`padding_side='right'`."
        )
    return mask


class Seq2SeqAttnEncoder(nn.Module):
    """Embedding -> dropout -> (bidirectional) packed RNN."""

    main_input_name = "input_ids"

    def __init__(self, config: Seq2SeqAttnConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(config.embedding_dropout)
        self.rnn = RNN_CLASSES[config.rnn_type](
            config.embedding_size,
            config.encoder_hidden_size,
            num_layers=config.encoder_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.rnn_dropout if config.encoder_layers > 1 else 0.0,
        )

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqAttnEncoderOutput:
        """Encode a right-padded source batch.

        Args:
            input_ids: `(B, S)` token ids.
            attention_mask: `(B, S)`, 1 = real token; defaults to `input_ids != pad_token_id`.
        Returns:
            [`Seq2SeqAttnEncoderOutput`] (`output_attentions` is accepted for API compatibility; an RNN
            encoder has no self-attention).
        """
        mask = source_mask(input_ids, attention_mask, self.config.resolved_pad_token_id)
        check_token_ids(input_ids, self.embed_tokens.num_embeddings, "input_ids")
        embeddings = self.dropout(self.embed_tokens(input_ids))  # (B, S, E)
        lengths = mask.sum(dim=1)
        total_length = input_ids.shape[1]
        padded = not bool((lengths == total_length).all())
        if parallel_directions_apply(self.rnn, embeddings):
            states, final = bidirectional_rnn(self.rnn, embeddings, lengths if padded else None)  # (B, S, K)
        elif not padded:
            states, final = self.rnn(embeddings)  # (B, S, K): no padding, nothing to pack
        else:
            packed = pack_padded_sequence(embeddings, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_states, final = self.rnn(packed)
            states, _ = pad_packed_sequence(
                packed_states, batch_first=True, total_length=total_length
            )  # (B, S, K)
        final_h = final[0] if isinstance(final, tuple) else final  # (layers * dirs, B, K/dirs)
        summary = torch.cat([final_h[-2], final_h[-1]], dim=-1) if self.config.bidirectional else final_h[-1]
        return Seq2SeqAttnEncoderOutput(
            last_hidden_state=states,
            final_hidden_state=summary,  # (B, K)
            attention_mask=mask,
            hidden_states=(embeddings, states) if output_hidden_states else None,
        )


# --------------------------------------------------------------------------------------------
# Decoder state (the recurrent "cache" generate() carries between steps)
# --------------------------------------------------------------------------------------------
class Seq2SeqAttnCache:
    """Everything the decoder needs to take the next step, O(1) in the generated length.

    Made by [`Seq2SeqAttnDecoder.init_cache`]; each decoder call returns a new one made by
    [`advance`] (the old one is not modified, except by beam search's in-place [`reorder_cache`]).

    Attributes:
        hidden: `(L, B, H)` decoder RNN states.
        cell: `(L, B, H)` LSTM cells, else None.
        keys, values: projected once per source, see [`Seq2SeqAttnAttention.project_keys`].
        mask: `(B, S)` bool source mask.
        feed: `(B, E)` previous attentional state (Luong input feeding), else None.
        seen_tokens: number of target tokens consumed so far.
    """

    is_compileable = False

    def __init__(
        self,
        *,
        hidden: torch.Tensor,
        cell: torch.Tensor | None = None,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        feed: torch.Tensor | None = None,
        seen_tokens: int = 0,
    ):
        self.hidden, self.cell, self.feed = hidden, cell, feed
        self.keys, self.values, self.mask = keys, values, mask
        self.seen_tokens = seen_tokens

    def advance(
        self, *, hidden: torch.Tensor, cell: torch.Tensor | None, feed: torch.Tensor | None, steps: int
    ) -> Seq2SeqAttnCache:
        """The state after `steps` more target tokens: new RNN state and feed, same source."""
        return Seq2SeqAttnCache(
            hidden=hidden,
            cell=cell,
            keys=self.keys,
            values=self.values,
            mask=self.mask,
            feed=feed,
            seen_tokens=self.seen_tokens + steps,
        )

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Select batch rows in place (beam search): RNN states are batch-second, the rest batch-first.

        Keys, values and mask are copied too although beams of one source share them: measured at the
        default shape (beam 5, batch 16), skipping the copy saved nothing measurable, and detecting
        when it may be skipped cost a host synchronisation per step.
        """
        self.hidden = self.hidden.index_select(1, beam_idx)
        if self.cell is not None:
            self.cell = self.cell.index_select(1, beam_idx)
        if self.feed is not None:
            self.feed = self.feed.index_select(0, beam_idx)
        self.keys = self.keys.index_select(0, beam_idx)
        self.values = self.values.index_select(0, beam_idx)
        self.mask = self.mask.index_select(0, beam_idx)

    @property
    def rnn_state(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The state in the form `nn.GRU` / `nn.LSTM` take it."""
        return self.hidden if self.cell is None else (self.hidden, self.cell)


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------
class Seq2SeqAttnDecoder(nn.Module):
    """Attention RNN decoder in Bahdanau or Luong style; produces read-out features `(B, T, E)`.

    Parameters by paper name: `embed_tokens` e(.), `rnn` f (an `nn.GRU`/`nn.LSTM`/`nn.RNN`, one
    [`RNNLayer`] view per layer in `rnn_layers`), `attention` (with its score), `readout` W_o
    (Bahdanau) or W_c (Luong), `bridge` W_init.
    """

    def __init__(self, config: Seq2SeqAttnConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.style = config.decoder_style
        self.input_feeding = config.decoder_style == "luong" and config.input_feeding
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(config.embedding_dropout)
        self.readout_dropout = nn.Dropout(config.readout_dropout)
        self.attention = ATTENTION_SCORES[config.attention_type](config)
        emb, hid, key = config.embedding_size, config.decoder_hidden_size, config.encoder_output_size
        if self.style == "bahdanau":
            rnn_input = emb + key  # [e_{t-1}; c_t]
            self.readout = nn.Linear(hid + key + emb, emb)  # W_o reads [s_t; c_t; e_{t-1}]
        else:
            rnn_input = emb + (emb if self.input_feeding else 0)  # [e_{t-1}; ~h_{t-1}]
            self.readout = nn.Linear(key + hid, emb)  # W_c [c_t; s_t] (Luong eq. 5)
        self.rnn = RNN_CLASSES[config.rnn_type](
            rnn_input,
            hid,
            num_layers=config.decoder_layers,
            batch_first=True,
            dropout=config.rnn_dropout if config.decoder_layers > 1 else 0.0,
        )
        self.bridge = nn.Linear(key, config.decoder_layers * hid) if config.bridge == "linear" else None
        # the training step's reusable buffer for `_fused_bahdanau` (not a parameter, not saved)
        self.workspace: Workspace | None = Workspace()

    @property
    def rnn_layers(self) -> list[RNNLayer]:
        """One readable view per stacked RNN layer (bottom first)."""
        return [RNNLayer(self.rnn, index) for index in range(self.config.decoder_layers)]

    # ----- state -----
    def init_cache(self, encoder_outputs: Seq2SeqAttnEncoderOutput) -> Seq2SeqAttnCache:
        """Initial decoder state from the encoder: bridge `s_0 = tanh(W_init [h_fwd; h_bwd])`, keys, zero feed."""
        states, summary = encoder_outputs.last_hidden_state, encoder_outputs.final_hidden_state
        mask = encoder_outputs.attention_mask
        assert states is not None and mask is not None, "encoder outputs carry states and their mask"
        batch, layers, hid = states.shape[0], self.config.decoder_layers, self.config.decoder_hidden_size
        if self.bridge is not None:
            assert summary is not None, "the linear bridge starts from the encoder's final state"
            hidden = (
                torch.tanh(self.bridge(summary)).view(batch, layers, hid).transpose(0, 1).contiguous()
            )  # (L, B, H)
        else:
            hidden = states.new_zeros(layers, batch, hid)  # (L, B, H)
        keys, values = self.attention.project_keys(states)
        return Seq2SeqAttnCache(
            hidden=hidden,
            cell=torch.zeros_like(hidden) if self.config.rnn_type == "lstm" else None,
            keys=keys,
            values=values,
            mask=mask,
            feed=states.new_zeros(batch, self.config.embedding_size) if self.input_feeding else None,
        )

    # ----- the stacked RNN, one step: the textbook steps and the fast paths all run this loop -----
    def layers_step(
        self,
        layers: list[RNNLayer],
        gates_x: torch.Tensor,
        hidden: torch.Tensor | list[torch.Tensor],
        cell: torch.Tensor | list[torch.Tensor] | None,
        top_gates_h: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """One step of the stacked layers, from the bottom layer's input projection; dropout between layers.

        Args:
            layers: [`rnn_layers`], taken by the caller (the fast paths take it once, not once per step).
            gates_x: `(B, G)` = `W_ih x_t + b_ih` of the bottom layer.
            hidden, cell: the previous states, `(L, B, H)` or one `(B, H)` per layer (`cell` LSTM only).
            top_gates_h: `(B, G)` = `W_hh s_{t-1} + b_hh` of the top layer when the caller computed it
                (fused with the Bahdanau query projection); None to compute it here.
        Returns:
            the new hidden and cell states, one `(B, H)` per layer (`cell` None unless LSTM).
        """
        rnn_type, top = self.config.rnn_type, layers[-1]
        new_hidden: list[torch.Tensor] = []
        new_cell: list[torch.Tensor] = []
        for layer in layers:
            if layer.index > 0:
                below = F.dropout(new_hidden[-1], self.config.rnn_dropout, self.training)
                gates_x = F.linear(below, layer.weight_ih, layer.bias_ih)  # (B, G)
            if layer is top and top_gates_h is not None:
                gates_h = top_gates_h
            else:
                gates_h = F.linear(hidden[layer.index], layer.weight_hh, layer.bias_hh)  # (B, G)
            layer_cell = cell[layer.index] if cell is not None else None
            h, c = cell_update(rnn_type, gates_x, gates_h, hidden[layer.index], layer_cell)
            new_hidden.append(h)
            if c is not None:  # LSTM only
                new_cell.append(c)
        return new_hidden, (new_cell if cell is not None else None)

    # ----- the textbook steps (generation runs these) -----
    def rnn_step(
        self, x: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`s_t = f(s_{t-1}, x_t)` through the stacked layers, with dropout between layers.

        Args:
            x: `(B, input width)`; hidden, cell: `(L, B, H)`.
        Returns:
            new hidden and cell, `(L, B, H)` each.
        """
        layers = self.rnn_layers
        gates_x = F.linear(x, layers[0].weight_ih, layers[0].bias_ih)  # (B, G)
        new_hidden, new_cell = self.layers_step(layers, gates_x, hidden, cell)
        return torch.stack(new_hidden), (torch.stack(new_cell) if new_cell is not None else None)

    def bahdanau_step(
        self, embedded: torch.Tensor, state: Seq2SeqAttnCache
    ) -> tuple[torch.Tensor, Seq2SeqAttnCache, torch.Tensor]:
        """One step of Bahdanau et al. 2015 (eqs. 4-6), with a tanh read-out where appendix A.2.2 has maxout.

        The read-out takes the inputs of eq. 4, `g(y_{t-1}, s_t, c_t)`, through one `tanh` layer of width E
        instead of the appendix's maxout (the max over pairs of twice as many pre-activations): half the
        read-out weights, and the form of Luong's attentional state `tanh(W_c [c_t; s_t])`, so both styles
        end in a `tanh` layer of width E before the (tieable) vocabulary projection.

        Args:
            embedded: `(B, E)` e(y_{t-1}), the previous target token's embedding.
            state: the decoder state after step t-1.
        Returns:
            read-out `(B, E)`, the state after step t, attention weights `(B, N, 1, S)`.
        """
        s_prev = state.hidden[-1]  # (B, H) s_{t-1}, top layer
        # c_t = sum_s a_{ts} h_s,  a_t = softmax(score(s_{t-1}, h))
        context, weights = self.attention(s_prev.unsqueeze(1), state.keys, state.values, state.mask)
        context = context.squeeze(1)  # (B, K)
        # s_t = f(s_{t-1}, [e(y_{t-1}); c_t])
        hidden, cell = self.rnn_step(
            torch.cat([embedded, context], dim=-1), state.hidden, state.cell
        )  # (L, B, H)
        # t_t = tanh(W_o [s_t; c_t; e(y_{t-1})])
        readout = torch.tanh(self.readout(torch.cat([hidden[-1], context, embedded], dim=-1)))  # (B, E)
        return readout, state.advance(hidden=hidden, cell=cell, feed=None, steps=1), weights

    def luong_step(
        self, embedded: torch.Tensor, state: Seq2SeqAttnCache
    ) -> tuple[torch.Tensor, Seq2SeqAttnCache, torch.Tensor]:
        """One step of Luong et al. 2015 (eqs. 5-8; input feeding of section 3.3 when configured).

        Args:
            embedded: `(B, E)` e(y_{t-1}).
            state: the decoder state after step t-1 (`feed` = ~h_{t-1} with input feeding).
        Returns:
            attentional state ~h_t `(B, E)`, the state after step t, attention weights `(B, N, 1, S)`.
        """
        # s_t = f(s_{t-1}, [e(y_{t-1}); ~h_{t-1}])   (input feeding)   or   f(s_{t-1}, e(y_{t-1}))
        x = torch.cat([embedded, state.feed], dim=-1) if state.feed is not None else embedded
        hidden, cell = self.rnn_step(x, state.hidden, state.cell)  # (L, B, H)
        s_t = hidden[-1]  # (B, H)
        # c_t = sum_s a_{ts} h_s,  a_t = softmax(score(s_t, h))
        context, weights = self.attention(s_t.unsqueeze(1), state.keys, state.values, state.mask)
        # ~h_t = tanh(W_c [c_t; s_t])
        attentional = torch.tanh(self.readout(torch.cat([context.squeeze(1), s_t], dim=-1)))  # (B, E)
        feed = attentional if self.input_feeding else None
        return attentional, state.advance(hidden=hidden, cell=cell, feed=feed, steps=1), weights

    def step_by_step(
        self, embeddings: torch.Tensor, cache: Seq2SeqAttnCache
    ) -> tuple[torch.Tensor, Seq2SeqAttnCache, torch.Tensor]:
        """Run the textbook step once per target position: the reference the fast paths must equal.

        Args:
            embeddings: `(B, T, E)` (after embedding dropout).
        Returns:
            features `(B, T, E)`, the state after the last step, weights `(B, N, T, S)`.
        """
        step = self.bahdanau_step if self.style == "bahdanau" else self.luong_step
        outputs, all_weights = [], []
        for embedded in embeddings.unbind(1):
            output, cache, weights = step(embedded, cache)
            outputs.append(output)
            all_weights.append(weights)
        return torch.stack(outputs, dim=1), cache, torch.cat(all_weights, dim=2)

    # ----- fast paths for teacher forcing: each is a textbook step above, with work hoisted out of its loop -----
    def _embedding_gates(
        self, embeddings: torch.Tensor, bottom: RNNLayer
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The bottom layer's input projection split by columns: `W_ih [e; x] = W_ih[:, :E] e + W_ih[:, E:] x`.

        Returns:
            `W_ih[:, :E] e(y_{t-1}) + b_ih` for all T steps, made in one matmul, time-major `(T, B, G)`: a
            loop over it reads contiguous `(B, G)` steps, and the gradient comes back in the layout it is
            made in. (Loop over it, which unbinds, rather than index `[t]`: each select's backward would
            zero-fill and add a full `(T, B, G)` gradient.) And `W_ih[:, E:]`, `(G, K or E)`, for the part
            that is known only inside the loop (c_t in Bahdanau style, ~h_{t-1} with input feeding).
        """
        emb = self.config.embedding_size
        gates_emb = F.linear(
            embeddings.transpose(0, 1), bottom.weight_ih[:, :emb], bottom.bias_ih
        )  # (T, B, G)
        return gates_emb, bottom.weight_ih[:, emb:]

    def _fused_query_weights(self, top: RNNLayer) -> FusedProjection | None:
        """`[W_hh; W_q] s + [b_hh; b_q]`: the top layer's recurrent matmul and the Bahdanau query projection
        read the same `s_{t-1}`, so one matmul can make both. None when the score does not project its query
        (one head of "dot", "scaled_dot" or "general")."""
        query_proj = self.attention.query_proj
        if query_proj is None:
            return None
        query_bias = query_proj.bias
        if query_bias is None:  # the single-head additive score has no query bias
            query_bias = top.bias_hh.new_zeros(query_proj.out_features)
        weight = torch.cat([top.weight_hh, query_proj.weight])  # (G + A, H)
        bias = torch.cat([top.bias_hh, query_bias])  # (G + A,)
        return FusedProjection(weight, bias, [top.weight_hh.shape[0], query_proj.out_features])

    def _fast_bahdanau(
        self, embeddings: torch.Tensor, cache: Seq2SeqAttnCache
    ) -> tuple[torch.Tensor, Seq2SeqAttnCache, torch.Tensor]:
        """[`bahdanau_step`] over T target positions; the loop body reads as the step, line for line.

        Differences from the step, none of which changes the result:
            * `W_ih [e(y_{t-1}); c_t]` is split by columns ([`_embedding_gates`]): the embedding part is made
              for all T in one matmul before the loop, `W_ih[:, E:] c_t` in it;
            * when the score projects its query, `W_q s_{t-1}` and the top layer's `W_hh s_{t-1}` are one
              matmul ([`_fused_query_weights`]), and [`layers_step`] is handed the latter;
            * the read-out `tanh(W_o [s_t; c_t; e(y_{t-1})])` runs once over all T, after the loop.
        """
        layers, attention = self.rnn_layers, self.attention
        gates_emb, weight_ctx = self._embedding_gates(embeddings, layers[0])
        fused = self._fused_query_weights(layers[-1])
        hidden = list(cache.hidden.unbind(0))  # L x (B, H)
        cell = list(cache.cell.unbind(0)) if cache.cell is not None else None
        states, contexts, all_weights = [], [], []
        for gates_emb_t in gates_emb:
            s_prev = hidden[-1]  # (B, H) s_{t-1}, top layer
            # c_t = sum_s a_{ts} h_s,  a_t = softmax(score(s_{t-1}, h))
            if fused is None:
                query, top_gates_h = attention.project_query(s_prev.unsqueeze(1)), None  # (B, N, 1, D)
            else:
                # split, not two slices: its backward is one cat instead of two zero-filled copies
                top_gates_h, query = F.linear(s_prev, fused.weight, fused.bias).split(fused.sizes, dim=1)
                query = attention._split_heads(query.unsqueeze(1))  # (B, N, 1, D)
            context, weights = attention.attend(query, cache.keys, cache.values, cache.mask)
            context = context.squeeze(1)  # (B, K)
            # s_t = f(s_{t-1}, [e(y_{t-1}); c_t])
            gates_x = gates_emb_t + F.linear(context, weight_ctx)  # (B, G)
            hidden, cell = self.layers_step(layers, gates_x, hidden, cell, top_gates_h)
            states.append(hidden[-1])
            contexts.append(context)
            all_weights.append(weights)
        # t_t = tanh(W_o [s_t; c_t; e(y_{t-1})]), all T at once
        s_all = torch.stack(states, dim=1)  # (B, T, H)
        c_all = torch.stack(contexts, dim=1)  # (B, T, K)
        features = torch.tanh(self.readout(torch.cat([s_all, c_all, embeddings], dim=-1)))  # (B, T, E)
        new_cache = cache.advance(
            hidden=torch.stack(hidden),
            cell=torch.stack(cell) if cell is not None else None,
            feed=None,
            steps=len(states),
        )
        return features, new_cache, torch.cat(all_weights, dim=2)  # weights (B, N, T, S)

    def _fused_bahdanau(
        self, embeddings: torch.Tensor, cache: Seq2SeqAttnCache
    ) -> tuple[torch.Tensor, Seq2SeqAttnCache, torch.Tensor]:
        """[`_fast_bahdanau`] with the hand-written backward of [`fused_recurrence.FusedBahdanau`] (one layer,
        single-head additive score: see `fused_recurrence.supports_fused_decoder`). Same inputs, outputs and gradients."""
        bottom, attention = self.rnn_layers[0], self.attention
        gates_emb, weight_ctx = self._embedding_gates(embeddings, bottom)  # (T, B, G), (G, K)
        fused = self._fused_query_weights(bottom)
        assert fused is not None and cache.keys.shape[1] == 1, "one head of the additive score"
        states, contexts, weights, last_cell = fused_bahdanau(
            self.config.rnn_type,
            gates_emb,
            cache.keys.squeeze(1),  # (B, S, A)
            cache.values.squeeze(1),  # (B, S, K)
            cache.mask,
            cache.hidden[0],
            cache.cell[0] if cache.cell is not None else None,
            fused.weight,
            fused.bias,
            weight_ctx,
            cast(nn.Parameter, attention.energy)[0],  # (A,) v
            self.workspace,
        )
        # t_t = tanh(W_o [s_t; c_t; e(y_{t-1})]), all T at once
        features = torch.tanh(self.readout(torch.cat([states, contexts, embeddings], dim=-1)))  # (B, T, E)
        new_cache = cache.advance(
            hidden=states[:, -1].unsqueeze(0),
            cell=last_cell.unsqueeze(0) if last_cell is not None else None,
            feed=None,
            steps=embeddings.shape[1],
        )
        return features, new_cache, weights.unsqueeze(1)  # weights (B, 1, T, S)

    def _fast_luong_input_feeding(
        self, embeddings: torch.Tensor, cache: Seq2SeqAttnCache
    ) -> tuple[torch.Tensor, Seq2SeqAttnCache, torch.Tensor]:
        """[`luong_step`] with input feeding over T target positions; the loop body reads as the step.

        The one difference, which does not change the result: `W_ih [e(y_{t-1}); ~h_{t-1}]` is split by
        columns ([`_embedding_gates`]): the embedding part is made for all T in one matmul before the loop,
        `W_ih[:, E:] ~h_{t-1}` in it. Attention and ~h_t stay in the loop: ~h_t is the next step's input.
        """
        layers = self.rnn_layers
        gates_emb, weight_feed = self._embedding_gates(embeddings, layers[0])
        hidden = list(cache.hidden.unbind(0))  # L x (B, H)
        cell = list(cache.cell.unbind(0)) if cache.cell is not None else None
        feed = cache.feed
        assert feed is not None, "with input feeding, init_cache starts ~h_0 at zeros"
        outputs, all_weights = [], []
        for gates_emb_t in gates_emb:
            # s_t = f(s_{t-1}, [e(y_{t-1}); ~h_{t-1}])
            gates_x = gates_emb_t + F.linear(feed, weight_feed)  # (B, G)
            hidden, cell = self.layers_step(layers, gates_x, hidden, cell)
            s_t = hidden[-1]  # (B, H)
            # c_t = sum_s a_{ts} h_s,  a_t = softmax(score(s_t, h))
            context, weights = self.attention(s_t.unsqueeze(1), cache.keys, cache.values, cache.mask)
            # ~h_t = tanh(W_c [c_t; s_t])
            feed = torch.tanh(self.readout(torch.cat([context.squeeze(1), s_t], dim=-1)))  # (B, E)
            outputs.append(feed)
            all_weights.append(weights)
        new_cache = cache.advance(
            hidden=torch.stack(hidden),
            cell=torch.stack(cell) if cell is not None else None,
            feed=feed,
            steps=len(outputs),
        )
        features = torch.stack(outputs, dim=1)  # (B, T, E)
        return features, new_cache, torch.cat(all_weights, dim=2)  # weights (B, N, T, S)

    def _fast_luong_parallel(
        self, embeddings: torch.Tensor, cache: Seq2SeqAttnCache
    ) -> tuple[torch.Tensor, Seq2SeqAttnCache, torch.Tensor]:
        """[`luong_step`] without input feeding, T steps at once.

        The RNN input `e(y_{t-1})` does not depend on attention, so torch's fused RNN runs all T steps
        in one call, and attention and `~h_t = tanh(W_c [c_t; s_t])` run once over all T queries.
        """
        states, final = self.rnn(embeddings, cache.rnn_state)  # (B, T, H) s_1..s_T
        context, weights = self.attention(states, cache.keys, cache.values, cache.mask)  # (B, T, K)
        features = torch.tanh(self.readout(torch.cat([context, states], dim=-1)))  # (B, T, E)
        hidden, cell = final if isinstance(final, tuple) else (final, None)
        return (
            features,
            cache.advance(hidden=hidden, cell=cell, feed=None, steps=embeddings.shape[1]),
            weights,
        )

    # ----- forward -----
    def forward(
        self, decoder_input_ids: torch.LongTensor, cache: Seq2SeqAttnCache
    ) -> tuple[torch.Tensor, Seq2SeqAttnCache, torch.Tensor]:
        """Run T decoder steps from `cache`: the textbook step when T = 1 (generation), a fast path for T > 1.

        Args:
            decoder_input_ids: `(B, T)` previous target tokens (`decoder_start_token_id` first).
            cache: state after the tokens seen so far; not modified.
        Returns:
            read-out features `(B, T, E)`, the new cache, attention weights `(B, N, T, S)`.
        """
        embeddings = self.dropout(self.embed_tokens(decoder_input_ids))  # (B, T, E)
        if decoder_input_ids.shape[1] == 1:
            features, new_cache, weights = self.step_by_step(embeddings, cache)
        elif supports_fused_decoder(self.config, self.training, embeddings.dtype):
            features, new_cache, weights = self._fused_bahdanau(embeddings, cache)
        elif self.style == "bahdanau":
            features, new_cache, weights = self._fast_bahdanau(embeddings, cache)
        elif self.input_feeding:
            features, new_cache, weights = self._fast_luong_input_feeding(embeddings, cache)
        else:
            features, new_cache, weights = self._fast_luong_parallel(embeddings, cache)
        return self.readout_dropout(features), new_cache, weights


# --------------------------------------------------------------------------------------------
# Pretrained model plumbing
# --------------------------------------------------------------------------------------------
class Seq2SeqAttnPreTrainedModel(PreTrainedModel):
    config: Seq2SeqAttnConfig  # narrower than the base's annotation, so mypy checks what the models read
    config_class = Seq2SeqAttnConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["Seq2SeqAttnEncoder", "Seq2SeqAttnDecoder"]
    # The decoder state cannot be rewound to an earlier token: generate() refuses assisted decoding.
    _is_stateful = True

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The decoder state is recurrent: it builds its own `Seq2SeqAttnCache` on the first step.
        return False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, made strict for checkpoints from strangers.

        * Only safetensors are read unless `use_safetensors=False` is passed (no pickle by default).
        * A weights file that cannot be parsed (truncated, tampered) raises `ValueError` naming the folder.
        * A checkpoint lacking any of the model's weights raises `ValueError` instead of silently
          leaving them randomly initialised.
        """
        kwargs.setdefault("use_safetensors", True)
        want_info = kwargs.pop("output_loading_info", False)
        try:
            # transformers annotates the return as the model alone; `output_loading_info=True` makes it a pair.
            model, info = cast(
                "tuple[Seq2SeqAttnPreTrainedModel, dict[str, list]]",
                super().from_pretrained(
                    pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
                ),
            )
        except SafetensorError as error:
            raise ValueError(
                f"The weights in {pretrained_model_name_or_path!s} cannot be read ({error}); the file is truncated "
                "or corrupted. Download or save the model again."
            ) from error
        if info.get("missing_keys"):
            raise ValueError(
                f"The checkpoint in {pretrained_model_name_or_path!s} lacks weights {sorted(info['missing_keys'])[:5]}; "
                "loading it would leave them random. Check the folder holds the full model saved with "
                "`save_pretrained`, and that config.json matches it."
            )
        return (model, info) if want_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus what makes the folder usable on its own.

        * `auto_map` names both heads (the base method names only `self`'s class);
        * a model that generates also gets the translation pipeline (its file and `custom_pipelines` in
          `config.json`), so `pipeline("translation", model=folder, trust_remote_code=True)` works on any
          folder it saves, not only on those the train command writes.
        """
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if self.can_generate() and kwargs.get("is_main_process", True):
            # A relative import, so that remote code copies the pipeline file along with this one.
            from .pipeline_seq2seq_attn import add_pipeline_to_folder

            add_pipeline_to_folder(save_directory)
        return result

    def resize_token_embeddings(
        self,
        new_num_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        mean_resizing: bool = True,
    ) -> nn.Embedding:
        """`PreTrainedModel.resize_token_embeddings` (e.g. after `tokenizer.add_tokens`), aware of two vocabularies.

        The base method resizes the encoder's embeddings and the vocabulary projection and updates `vocab_size`
        only, which would leave `decoder_vocab_size` (and, with separate embeddings, the decoder's table) behind:
        the saved folder would then not load. Here:

        * one vocabulary (shared embeddings, or source and target of equal size, as when one tokenizer serves
          both sides): the source and target embeddings and the projection `(V, E)` all take the new size,
          and `decoder_vocab_size` follows `vocab_size`;
        * two vocabularies of different sizes: only the source vocabulary (`vocab_size`) changes.

        New rows are initialised as transformers does (`mean_resizing`: from the old rows' mean and covariance).
        Ties (`share_encoder_decoder_embeddings`, `tie_word_embeddings`) are restored afterwards.

        Returns:
            The new source `nn.Embedding`.
        """
        config = self.config
        base = cast("Seq2SeqAttnModel", self.base_model)
        source = self._get_resized_embeddings(
            base.encoder.embed_tokens, new_num_tokens, pad_to_multiple_of, mean_resizing
        )
        if new_num_tokens is None and pad_to_multiple_of is None:
            return source
        size = source.num_embeddings
        one_vocabulary = (
            config.share_encoder_decoder_embeddings or config.decoder_vocab_size == config.vocab_size
        )
        base.encoder.embed_tokens = source
        if config.share_encoder_decoder_embeddings:
            base.decoder.embed_tokens = source
        elif one_vocabulary:
            base.decoder.embed_tokens = self._get_resized_embeddings(
                base.decoder.embed_tokens, size, mean_resizing=mean_resizing
            )
        if one_vocabulary:
            head = self.get_output_embeddings()
            if isinstance(head, nn.Linear):
                self.set_output_embeddings(self._get_resized_lm_head(head, size, mean_resizing=mean_resizing))
            config.decoder_vocab_size = size
        config.vocab_size = size
        self.tie_weights()
        return source

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        # Built in `__init__` from both embedding flags; the base method would drop the encoder/decoder
        # sharing whenever `tie_word_embeddings` is False.
        return dict(self._tied_weights_keys or {})

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialisation that trains: uniform embeddings, Xavier projections, orthogonal recurrences.

        The library default (normal(0, 0.02), nothing for RNNs) leaves the decoder nearly blind to
        the context at the start and slows learning badly.
        """
        std = self.config.init_std
        if isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -std, std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.RNNBase):
            gates = {"GRU": 3, "LSTM": 4}.get(module.mode, 1)
            for name, param in module.named_parameters():
                if getattr(param, "_is_hf_initialized", False):
                    continue
                if name.startswith("weight"):
                    for block in param.chunk(gates, dim=0):  # one matrix per gate
                        (nn.init.orthogonal_ if "_hh" in name else nn.init.xavier_uniform_)(block)
                else:
                    param.zero_()
                    if module.mode == "LSTM":  # forget-gate bias 1: remember by default
                        param[module.hidden_size : 2 * module.hidden_size].fill_(1.0)
        elif isinstance(module, AdditiveAttention):
            init.uniform_(module.energy, -std, std)
        elif isinstance(module, GeneralAttention) and module.bilinear is not None:
            init.xavier_uniform_(module.bilinear)


def _make_embeddings(config: Seq2SeqAttnConfig) -> tuple[nn.Embedding, nn.Embedding]:
    source = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
    if config.share_encoder_decoder_embeddings:
        return source, source
    target = nn.Embedding(
        config.resolved_decoder_vocab_size, config.embedding_size, padding_idx=config.pad_token_id
    )
    return source, target


def _as_encoder_output(encoder_outputs, input_ids, pad_token_id: int) -> Seq2SeqAttnEncoderOutput:
    """Accept encoder outputs as our dataclass or as a tuple `(states, final[, mask])`."""
    if isinstance(encoder_outputs, Seq2SeqAttnEncoderOutput):
        return encoder_outputs
    states, final = encoder_outputs[0], encoder_outputs[1]
    mask = encoder_outputs[2] if len(encoder_outputs) > 2 else None
    if mask is None:
        if input_ids is None:
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        else:
            mask = source_mask(input_ids, None, pad_token_id)
    return Seq2SeqAttnEncoderOutput(last_hidden_state=states, final_hidden_state=final, attention_mask=mask)


def _check_cache(cache: object) -> None:
    if cache is not None and not isinstance(cache, Seq2SeqAttnCache):
        raise ValueError(
            f"`cache` must be the model's own `Seq2SeqAttnCache` (returned as `cache` by a previous call, or "
            f"made by `model.model.decoder.init_cache`); got {type(cache).__name__}. A recurrent decoder keeps "
            "no per-token keys and values, so transformers' `Cache` classes cannot serve it: pass `cache=None` "
            "to start from the encoder."
        )


class Decoded(NamedTuple):
    """What [`Seq2SeqAttnModel.decode`] returns."""

    features: torch.Tensor  # (B, T, E) read-out
    cache: Seq2SeqAttnCache  # the state after the last target token
    weights: torch.Tensor  # (B, N, T, S) attention weights
    encoded: Seq2SeqAttnEncoderOutput  # the encoder pass (given or computed)


class Seq2SeqAttnModel(Seq2SeqAttnPreTrainedModel):
    """Encoder + attention decoder without the vocabulary head. `last_hidden_state` is the read-out `(B, T, E)`."""

    def __init__(self, config: Seq2SeqAttnConfig):
        super().__init__(config)
        source_embed, target_embed = _make_embeddings(config)
        self.encoder = Seq2SeqAttnEncoder(config, source_embed)
        self.decoder = Seq2SeqAttnDecoder(config, target_embed)
        # transformers annotates `_tied_weights_keys` as `dict[str, str]` but defaults it to None (= nothing tied).
        shared = {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"}
        self._tied_weights_keys = shared if config.share_encoder_decoder_embeddings else None  # type: ignore[assignment]
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    # Narrower than the base's `nn.Module`: the encoder and decoder read `num_embeddings` and `padding_idx`.
    def set_input_embeddings(self, value: nn.Embedding) -> None:  # type: ignore[override]
        self.encoder.embed_tokens = value
        if self.config.share_encoder_decoder_embeddings:
            self.decoder.embed_tokens = value

    def get_encoder(self, *args, **kwargs) -> Seq2SeqAttnEncoder:
        return self.encoder

    def decode(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        decoder_input_ids: torch.Tensor | None,
        encoder_outputs: Seq2SeqAttnEncoderOutput | tuple | None = None,
        cache: Seq2SeqAttnCache | None = None,
        output_hidden_states: bool | None = None,
    ) -> Decoded:
        """[`forward`]'s work, returned as a plain tuple: the vocabulary head calls this directly, so a
        generated token builds one `ModelOutput` (~50 us each on a CPU), not two. Arguments as [`forward`]."""
        _check_cache(cache)
        if decoder_input_ids is None:
            raise ValueError("`decoder_input_ids` (or `labels`, from which they are made) are required.")
        check_id_batch(decoder_input_ids, "decoder_input_ids")
        if decoder_input_ids.shape[1] > 1:  # teacher forcing; generation steps (T = 1) skip the host sync
            check_token_ids(decoder_input_ids, self.decoder.embed_tokens.num_embeddings, "decoder_input_ids")
        encoded: Seq2SeqAttnEncoderOutput
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("Pass `input_ids` (the source) or precomputed `encoder_outputs`.")
            encoded = self.encoder(
                input_ids, attention_mask, output_hidden_states=output_hidden_states, return_dict=True
            )
        else:
            encoded = _as_encoder_output(encoder_outputs, input_ids, self.config.resolved_pad_token_id)
        states = encoded.last_hidden_state
        assert states is not None, "encoder outputs always carry the encoder states"
        if states.shape[0] != decoder_input_ids.shape[0]:
            raise ValueError(
                f"Source batch ({states.shape[0]}) and target batch ({decoder_input_ids.shape[0]}) differ."
            )
        if cache is None:
            cache = self.decoder.init_cache(encoded)
        features, new_cache, weights = self.decoder(decoder_input_ids, cache)
        return Decoded(features, new_cache, weights, encoded)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: Seq2SeqAttnEncoderOutput | tuple | None = None,
        cache: Seq2SeqAttnCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput | tuple:
        r"""Encode (unless `encoder_outputs` or a cache is given) and run the decoder over `decoder_input_ids`.

        Args:
            input_ids: `(B, S)` right-padded source ids.
            attention_mask: `(B, S)` 1 = real token; defaults to `input_ids != pad_token_id`.
            decoder_input_ids: `(B, T)` target ids shifted right (start token first).
            decoder_attention_mask: `(B, T)`; accepted for API compatibility. The decoder is causal and
                padded target positions are excluded by `labels == -100`, so it is not needed.
            encoder_outputs: reuse an encoder pass ([`Seq2SeqAttnEncoderOutput`] or tuple).
            cache: [`Seq2SeqAttnCache`] to continue from (generation); the decoder then consumes only the
                new tokens in `decoder_input_ids`. Also accepted as `past_key_values` (its name before
                transformers 5.24).
            use_cache: return the decoder state after the last token (as `cache`; `past_key_values`
                before transformers 5.24).
            output_attentions: return `cross_attentions` as a 1-tuple of `(B, N, T, S)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        decoded = self.decode(
            input_ids,
            attention_mask,
            decoder_input_ids,
            encoder_outputs,
            cast("Seq2SeqAttnCache | None", take_cache(cache, kwargs)),
            output_hidden_states,
        )
        output = Seq2SeqModelOutput(
            # Typed as transformers' `EncoderDecoderCache`; a recurrent decoder carries its own state.
            **{CACHE_NAME: decoded.cache if use_cache else None},  # type: ignore[arg-type]
            last_hidden_state=decoded.features,
            cross_attentions=(decoded.weights,) if output_attentions else None,
            encoder_last_hidden_state=decoded.encoded.last_hidden_state,
            encoder_hidden_states=decoded.encoded.hidden_states,
        )
        return output if return_dict else output.to_tuple()


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------
def transition_scores(
    sequences: torch.Tensor,
    scores: tuple[torch.Tensor, ...],
    beam_indices: torch.Tensor | None,
    normalize: bool,
) -> torch.Tensor:
    """The score of each generated token under the beam that produced it: `compute_transition_scores`,
    reading the vocabulary size from the scores themselves.

    `GenerationMixin.compute_transition_scores` reshapes the scores by `config.vocab_size`, which is the
    *source* vocabulary of this model; with `decoder_vocab_size != vocab_size` it fails (or, when the sizes
    happen to divide, gathers the wrong entries). Both models' `compute_transition_scores` call this.

    Args:
        sequences: `(R, 1 + T)` returned ids, decoder start token first.
        scores: per step `(B * beams, V)` scores (V: the decoder vocabulary).
        beam_indices: `(R, T')` the beam each token came from, -1 after a hypothesis ended; None for greedy.
        normalize: apply `log_softmax` (raw logits, greedy) or not (beam search scores are log-probabilities).

    Returns:
        `(R, T)`, 0 where a hypothesis had already ended.
    """
    stacked = torch.stack(scores, dim=1)  # (B * beams, steps, V)
    if normalize:
        stacked = torch.log_softmax(stacked.float(), dim=-1)
    if beam_indices is None:  # greedy: row r made every token of sequence r
        beam_indices = torch.arange(sequences.shape[0], device=sequences.device)[:, None]
        beam_indices = beam_indices.expand(-1, len(scores))  # (R, steps)
    ended = beam_indices < 0
    length = int((~ended).sum(dim=1).max())
    beam_indices, ended = beam_indices[:, :length], ended[:, :length]  # (R, T)
    tokens = sequences[:, sequences.shape[1] - length :]  # (R, T)
    steps = torch.arange(length, device=sequences.device)[None, :].expand_as(tokens)  # (R, T)
    chosen = stacked[beam_indices.clamp(min=0), steps, tokens]  # (R, T)
    return chosen.masked_fill(ended, 0.0)


def check_labels(labels: torch.Tensor, vocab_size: int) -> None:
    """Labels must be token ids in the target vocabulary or -100 (ignored)."""
    check_integer_ids(labels, "labels")
    valid = labels[labels != -100]
    if valid.numel():
        low, high = (int(value) for value in torch.aminmax(valid))
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"`labels` contains {low if low < 0 else high}, outside the target vocabulary [0, {vocab_size}) "
                "and not -100 (the ignore index). Check that the target tokenizer matches the model."
            )


def sequence_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Token-level cross-entropy over all steps at once.

    Args:
        logits: `(B, T, V)`; labels: `(B, T)` with -100 ignored.
        num_items_in_batch: total target tokens in the (accumulated) batch; None = this batch's count.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision sums badly
    total = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
    return per_token(total, labels, num_items_in_batch)


def per_token(
    total: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """A summed token loss divided by `num_items_in_batch`, or by this batch's labelled tokens when None."""
    if num_items_in_batch is None:
        num_items_in_batch = (labels != -100).sum().clamp(min=1)
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


class Seq2SeqAttnGenerationMixin(GenerationMixin):
    """`generate()` over a recurrent decoder state: what the PyTorch and the ONNX Runtime models share."""

    # Not the base signature: an encoder-decoder's first argument is the decoder ids, and the cache is the
    # recurrent decoder state. `generate()` passes the ids positionally and the rest by keyword.
    def prepare_inputs_for_generation(  # type: ignore[override]
        self,
        decoder_input_ids: torch.Tensor,
        cache: object | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: object | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> dict:
        """Once a cache exists only the newest token `(B, 1)` is fed, so each generated token costs one decoder
        step. `generate()` passes the cache as `cache` (transformers >= 5.24) or `past_key_values` (earlier).
        """
        cache = take_cache(cache, kwargs)
        if cache is not None:
            decoder_input_ids = decoder_input_ids[:, -1:]
        inputs = {
            "decoder_input_ids": decoder_input_ids,
            "cache": cache,
            "attention_mask": attention_mask,
            "encoder_outputs": encoder_outputs,
            "use_cache": use_cache,
        }
        for key in ("output_attentions", "output_hidden_states"):
            if key in kwargs:
                inputs[key] = kwargs[key]
        return inputs

    def compute_transition_scores(  # type: ignore[override]
        self,
        sequences: torch.Tensor,
        scores: tuple[torch.Tensor, ...],
        beam_indices: torch.Tensor | None = None,
        normalize_logits: bool = False,
    ) -> torch.Tensor:
        """`GenerationMixin.compute_transition_scores` over the target vocabulary ([`transition_scores`])."""
        return transition_scores(sequences, scores, beam_indices, normalize_logits)


class Seq2SeqAttnForConditionalGeneration(Seq2SeqAttnPreTrainedModel, Seq2SeqAttnGenerationMixin):
    """[`Seq2SeqAttnModel`] plus the vocabulary projection, the loss, and `generate()`.

    Attributes:
        fused_loss: when True (default), a training-mode call with `labels` and gradients computes the
            vocabulary projection and the loss chunk by chunk with their gradient ([`fused_loss`]) and
            returns `logits=None`; set it False to get the logits there too (the step is then slower).
    """

    fused_loss: bool = True

    def __init__(self, config: Seq2SeqAttnConfig):
        super().__init__(config)
        self.model = Seq2SeqAttnModel(config)
        self.lm_head = nn.Linear(config.embedding_size, config.resolved_decoder_vocab_size)
        tied = {}
        if config.share_encoder_decoder_embeddings:
            tied["model.decoder.embed_tokens.weight"] = "model.encoder.embed_tokens.weight"
        if config.tie_word_embeddings:
            tied["lm_head.weight"] = (
                "model.encoder.embed_tokens.weight"
                if config.share_encoder_decoder_embeddings
                else "model.decoder.embed_tokens.weight"
            )
        # transformers annotates `_tied_weights_keys` as `dict[str, str]` but defaults it to None (= nothing tied).
        self._tied_weights_keys = tied or None  # type: ignore[assignment]
        self.post_init()

    def get_encoder(self, *args, **kwargs) -> Seq2SeqAttnEncoder:
        return self.model.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Shift labels right, start with `decoder_start_token_id`, and replace -100 by padding."""
        start, pad = self.config.resolved_decoder_start_token_id, self.config.resolved_pad_token_id
        shifted = labels.new_full(labels.shape, pad)
        shifted[:, 1:] = labels[:, :-1]
        shifted[:, 0] = start
        return shifted.masked_fill(shifted == -100, pad)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: Seq2SeqAttnEncoderOutput | tuple | None = None,
        cache: Seq2SeqAttnCache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput | tuple:
        r"""Arguments as [`Seq2SeqAttnModel.forward`], plus:

        Args:
            labels: `(B, T)` target ids ending in `</s>`, `-100` where padded. Gives the summed token
                cross-entropy divided by the number of target tokens, or by `num_items_in_batch` when
                `Trainer` passes it (so gradient accumulation averages over the whole effective batch).
        Returns:
            [`Seq2SeqLMOutput`] with `logits` `(B, T, V)`; None in a training step with `labels` (see the
            class's `fused_loss`), which never materialises them.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if labels is not None:
            check_labels(labels, self.config.resolved_decoder_vocab_size)
            if decoder_input_ids is None:
                # `LongTensor` (transformers' convention for ids) is a legacy class torch ops never return.
                decoder_input_ids = cast(torch.LongTensor, self.prepare_decoder_input_ids_from_labels(labels))
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        decoded = self.model.decode(
            input_ids,
            attention_mask,
            decoder_input_ids,
            encoder_outputs,
            cast("Seq2SeqAttnCache | None", take_cache(cache, kwargs)),
            output_hidden_states,
        )
        logits, loss = None, None
        if labels is not None and self.fused_loss and fused_loss_applies(self.training, decoded.features):
            total = linear_cross_entropy(
                decoded.features.flatten(0, 1), self.lm_head.weight, self.lm_head.bias, labels.flatten()
            )
            loss = per_token(total, labels, kwargs.get("num_items_in_batch"))
        else:
            logits = self.lm_head(decoded.features)  # (B, T, V)
            if labels is not None:
                loss = sequence_loss(logits, labels, kwargs.get("num_items_in_batch"))
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **{CACHE_NAME: decoded.cache if use_cache else None},  # type: ignore[arg-type]
            cross_attentions=(decoded.weights,) if output_attentions else None,
            encoder_last_hidden_state=decoded.encoded.last_hidden_state,
            encoder_hidden_states=decoded.encoded.hidden_states,
        )
        return output if return_dict else output.to_tuple()

    # Takes the base's other arguments through `**kwargs` (it only checks the cache options, then
    # forwards everything), so mypy sees a narrower signature than `GenerationMixin.generate`.
    def generate(self, inputs: torch.Tensor | None = None, generation_config=None, **kwargs):  # type: ignore[override]
        """`GenerationMixin.generate` (under `torch.no_grad()`, so its outputs are ordinary tensors).

        Refuses up front what a recurrent decoder state cannot serve: a `cache_implementation`
        (transformers' static/offloaded/quantized caches store per-token keys and values) and a foreign
        `cache` (or `past_key_values`). Assisted decoding and prompt lookup are refused by `generate()` itself
        because the model is stateful (its state cannot be rewound to drop rejected draft tokens).
        """
        implementation = kwargs.get("cache_implementation")
        if implementation is None and generation_config is not None:
            implementation = getattr(generation_config, "cache_implementation", None)
        if implementation is None and generation_config is None and self.generation_config is not None:
            implementation = self.generation_config.cache_implementation
        if implementation is not None:
            raise ValueError(
                f"`cache_implementation={implementation!r}` is not supported: this recurrent model carries its own "
                "fixed-size decoder state (`Seq2SeqAttnCache`) instead of per-token keys and values. Leave "
                "`cache_implementation` unset."
            )
        _check_cache(kwargs.get("cache", kwargs.get("past_key_values")))
        # transformers types the mixin's `self` as its `GenerativePreTrainedModel` protocol, which no
        # `PreTrainedModel` satisfies for mypy (read-only `device` / `dtype` where it wants settable ones).
        return super().generate(inputs, generation_config, **kwargs)  # type: ignore[misc]


__all__ = [
    "ATTENTION_SCORES",
    "Seq2SeqAttnGenerationMixin",
    "transition_scores",
    "AdditiveAttention",
    "DotAttention",
    "GeneralAttention",
    "ScaledDotAttention",
    "Seq2SeqAttnAttention",
    "Seq2SeqAttnCache",
    "Seq2SeqAttnEncoder",
    "Seq2SeqAttnEncoderOutput",
    "Seq2SeqAttnDecoder",
    "Seq2SeqAttnPreTrainedModel",
    "Seq2SeqAttnModel",
    "Seq2SeqAttnForConditionalGeneration",
]
