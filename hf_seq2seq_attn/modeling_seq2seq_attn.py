"""Attention RNN encoder-decoder (Bahdanau et al. 2015; Luong et al. 2015) as a transformers model.

Shape legend used in comments and docstrings:
    B  batch                      S  source length            T  target length
    E  embedding size             H  decoder hidden size      L  decoder layers
    K  encoder output size (2 x encoder_hidden_size when bidirectional)
    A  attention width            N  attention heads          D  per-head width (A / N; A or K with one head)
    V  target vocabulary size     G  gate width of the RNN (3H GRU, 4H LSTM, H plain RNN)

Speed notes (why the code looks the way it does):
    * keys (and values) are projected once per source sequence and kept in the decoder cache;
    * the target-embedding part of the decoder's RNN input is projected for all steps in one matmul;
    * the read-out and vocabulary projection (and the loss) run once over all steps;
    * the Luong decoder without input feeding runs its RNN over the whole target in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils import ModelOutput, logging

from .configuration_seq2seq_attn import Seq2SeqAttnConfig

logger = logging.get_logger(__name__)

RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}
# Written into every saved config so each Auto class finds the remote code, whichever head was saved.
AUTO_MAP = {
    "AutoConfig": "configuration_seq2seq_attn.Seq2SeqAttnConfig",
    "AutoModel": "modeling_seq2seq_attn.Seq2SeqAttnModel",
    "AutoModelForSeq2SeqLM": "modeling_seq2seq_attn.Seq2SeqAttnForConditionalGeneration",
}


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------
class Seq2SeqAttnAttention(nn.Module):
    r"""Score function + softmax + weighted sum, single- or multi-head. Stateless between calls.

    With one head the keys and values are the raw encoder states `h` (K wide), and:
        additive    e = v^T tanh(W_q s + W_k h)          Bahdanau et al. 2015, eq. 6
        dot         e = s^T h                            Luong et al. 2015, eq. 8
        general     e = s^T W h                          Luong et al. 2015, eq. 8
        scaled_dot  e = s^T h / sqrt(D)                  Vaswani et al. 2017, eq. 1
    With N heads, `q_n = W_Q^n s`, `k_n = W_K^n h`, `v_n = W_V^n h` (D = A/N wide each), the same
    score is applied per head (`v_n^T tanh(q_n + k_n)`, `q_n^T k_n`, `q_n^T W_n k_n`, `/ sqrt(D)`),
    and the heads' contexts are concatenated and projected back to K by `W_O`.

    Keys are prepared once per source by [`project_keys`]; [`forward`] then costs O(S) per query.
    """

    def __init__(self, config: Seq2SeqAttnConfig):
        super().__init__()
        self.score_type = config.attention_type
        self.num_heads = heads = config.num_attention_heads
        query_size, key_size, width = config.decoder_hidden_size, config.encoder_output_size, config.attention_hidden_size
        self.query_proj: nn.Linear | None = None
        self.key_proj: nn.Linear | None = None
        self.value_proj: nn.Linear | None = None
        self.out_proj: nn.Linear | None = None
        self.energy: nn.Parameter | None = None  # v of the additive score, one row per head
        self.bilinear: nn.Parameter | None = None  # W_n of the multi-head general score
        if heads == 1:
            if self.score_type == "additive":
                self.query_proj = nn.Linear(query_size, width, bias=False)
                self.key_proj = nn.Linear(key_size, width)
                self.head_dim = width
            elif self.score_type == "general":
                self.key_proj = nn.Linear(key_size, query_size, bias=False)  # W h, precomputed per source
                self.head_dim = query_size
            else:
                self.head_dim = key_size  # dot / scaled_dot: query and key widths are equal (config-checked)
        else:
            self.head_dim = width // heads
            self.query_proj = nn.Linear(query_size, width)
            self.key_proj = nn.Linear(key_size, width)
            self.value_proj = nn.Linear(key_size, width)
            self.out_proj = nn.Linear(width, key_size)
            if self.score_type == "general":
                self.bilinear = nn.Parameter(torch.empty(heads, self.head_dim, self.head_dim))
        if self.score_type == "additive":
            self.energy = nn.Parameter(torch.empty(heads, self.head_dim))
        self.dropout = nn.Dropout(config.attention_dropout)

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
        if self.num_heads == 1:
            values = encoder_hidden_states.unsqueeze(1)  # (B, 1, S, K)
            keys = self.key_proj(encoder_hidden_states).unsqueeze(1) if self.key_proj is not None else values
            return keys, values
        keys = self._split_heads(self.key_proj(encoder_hidden_states))  # (B, N, S, D)
        values = self._split_heads(self.value_proj(encoder_hidden_states))  # (B, N, S, D)
        if self.bilinear is not None:
            keys = torch.einsum("bnsd,ned->bnse", keys, self.bilinear)  # W_n k_n, (B, N, S, D)
        return keys, values

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores.

        Args:
            query: `(B, T, H)` decoder states.
            keys: `(B, N, S, D)` from [`project_keys`].
        Returns:
            `(B, N, T, S)`.
        """
        if self.query_proj is not None:
            query = self.query_proj(query)  # (B, T, A)
        query = self._split_heads(query)  # (B, N, T, D)
        if self.score_type == "additive":
            features = torch.tanh(query.unsqueeze(3) + keys.unsqueeze(2))  # (B, N, T, S, D)
            return torch.einsum("bntsd,nd->bnts", features, self.energy)
        scores = query @ keys.transpose(-1, -2)  # (B, N, T, S)
        if self.score_type == "scaled_dot":
            scores = scores / math.sqrt(self.head_dim)
        return scores

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from `T` queries over `S` keys.

        Args:
            query: `(B, T, H)`.
            keys, values: from [`project_keys`].
            mask: `(B, S)` bool, True = real token. Padded keys get exactly zero weight.
        Returns:
            context `(B, T, K)` and weights `(B, N, T, S)` (rows sum to 1).
        """
        scores = self.score(query, keys).masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, N, T, S)
        context = self.dropout(weights) @ values  # (B, N, T, D or K)
        batch, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, length, -1)  # (B, T, N*D or K)
        if self.out_proj is not None:
            context = self.out_proj(context)  # (B, T, K)
        return context, weights


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------
@dataclass
class Seq2SeqAttnEncoderOutput(ModelOutput):
    """Encoder output. Every tensor is batch-first, so `generate()` can expand it for beams.

    Args:
        last_hidden_state: `(B, S, K)` encoder states (both directions concatenated).
        final_hidden_state: `(B, K)` last forward state and first backward state of the top layer.
        attention_mask: `(B, S)` bool source mask (True = real token) the decoder attends with.
        hidden_states: with `output_hidden_states`, `(embeddings (B, S, E), last_hidden_state)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    final_hidden_state: torch.FloatTensor | None = None
    attention_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def source_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int) -> torch.Tensor:
    """Validate the source batch and return its bool mask `(B, S)`.

    The mask falls back to `input_ids != pad_token_id` (generate() passes none for encoder-decoders).
    """
    if input_ids.dim() != 2 or input_ids.numel() == 0:
        raise ValueError(
            f"`input_ids` must be a non-empty (batch, length) tensor; got shape {tuple(input_ids.shape)}."
        )
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
        mask = source_mask(input_ids, attention_mask, self.config.pad_token_id)
        check_token_ids(input_ids, self.embed_tokens.num_embeddings, "input_ids")
        embeddings = self.dropout(self.embed_tokens(input_ids))  # (B, S, E)
        lengths = mask.sum(dim=1)
        total_length = input_ids.shape[1]
        if bool((lengths == total_length).all()):
            states, final = self.rnn(embeddings)  # (B, S, K): no padding, nothing to pack
        else:
            packed = pack_padded_sequence(embeddings, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_states, final = self.rnn(packed)
            states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=total_length)  # (B, S, K)
        final_h = final[0] if isinstance(final, tuple) else final  # (layers * dirs, B, K/dirs)
        summary = torch.cat([final_h[-2], final_h[-1]], dim=-1) if self.config.bidirectional else final_h[-1]
        return Seq2SeqAttnEncoderOutput(
            last_hidden_state=states,
            final_hidden_state=summary,  # (B, K)
            attention_mask=mask,
            hidden_states=(embeddings, states) if output_hidden_states else None,
        )


def check_token_ids(ids: torch.Tensor, vocab_size: int, name: str) -> None:
    """Raise a clear error for ids outside `[0, vocab_size)` (torch would fail deep inside `embedding`)."""
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(
            f"`{name}` contains token id {bad}, outside the model's vocabulary [0, {vocab_size}). "
            "Was the data tokenized with a different tokenizer than the one the model was built for?"
        )


# --------------------------------------------------------------------------------------------
# Decoder state (the recurrent "cache" generate() carries between steps)
# --------------------------------------------------------------------------------------------
class Seq2SeqAttnCache:
    """Everything the decoder needs to take the next step, O(1) in the generated length.

    Attributes:
        hidden: `(L, B, H)` decoder RNN states.
        cell: `(L, B, H)` LSTM cells, else None.
        keys, values: projected once per source, see [`Seq2SeqAttnAttention.project_keys`].
        mask: `(B, S)` bool source mask.
        feed: `(B, E)` previous attentional state (Luong input feeding), else None.
        seen_tokens: number of target tokens consumed so far.
        groups: `(B,)` labels shared by adjacent rows whose keys, values and mask are identical (the
            beams of one source); made by the first [`reorder_cache`], None before.
    """

    is_compileable = False

    def __init__(
        self,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        feed: torch.Tensor | None,
        seen_tokens: int = 0,
        groups: torch.Tensor | None = None,
    ):
        self.hidden, self.cell, self.feed = hidden, cell, feed
        self.keys, self.values, self.mask = keys, values, mask
        self.seen_tokens = seen_tokens
        self.groups = groups

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Select batch rows in place (beam search): RNN states are batch-second, the rest batch-first."""
        self.hidden = self.hidden.index_select(1, beam_idx)
        if self.cell is not None:
            self.cell = self.cell.index_select(1, beam_idx)
        if self.feed is not None:
            self.feed = self.feed.index_select(0, beam_idx)
        # Keys/values/mask are per source and beam search only shuffles the beams of one source, whose
        # rows are copies: copy them (B*S*(D+K) floats) only when a row takes a row with other contents.
        if self.groups is None:
            self.groups = equal_row_groups(self.keys, self.values, self.mask)
        if not torch.equal(self.groups.index_select(0, beam_idx), self.groups):
            self.keys = self.keys.index_select(0, beam_idx)
            self.values = self.values.index_select(0, beam_idx)
            self.mask = self.mask.index_select(0, beam_idx)
            self.groups = self.groups.index_select(0, beam_idx)

    @property
    def rnn_state(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.hidden if self.cell is None else (self.hidden, self.cell)


def equal_row_groups(*tensors: torch.Tensor) -> torch.Tensor:
    """`(B,)` labels, one per run of adjacent rows that are identical in every (batch-first) tensor."""
    same = torch.ones(tensors[0].shape[0] - 1, dtype=torch.bool, device=tensors[0].device)  # (B-1,)
    for tensor in tensors:
        same &= (tensor[1:] == tensor[:-1]).flatten(1).all(dim=1)
    return torch.cat([same.new_zeros(1), ~same]).long().cumsum(0)  # a new label where a row differs


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------
def rnn_cell(
    rnn_type: str, gates_x: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor | None, weight_hh, bias_hh
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of a PyTorch-compatible GRU / LSTM / tanh-RNN cell with the input part precomputed.

    Args:
        gates_x: `(B, G)` = `W_ih x + b_ih`, computed by the caller (for all steps at once where possible).
        hidden, cell: `(B, H)` previous states (`cell` only for LSTM).
    Returns:
        the new `(hidden, cell)`, each `(B, H)`.
    """
    gates_h = F.linear(hidden, weight_hh, bias_hh)  # (B, G)
    if rnn_type == "gru":  # gate order r, z, n as in torch.nn.GRU
        x_r, x_z, x_n = gates_x.chunk(3, dim=-1)
        h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
        reset = torch.sigmoid(x_r + h_r)
        update = torch.sigmoid(x_z + h_z)
        candidate = torch.tanh(x_n + reset * h_n)
        return candidate + update * (hidden - candidate), None
    if rnn_type == "lstm":  # gate order i, f, g, o as in torch.nn.LSTM
        i, f, g, o = (gates_x + gates_h).chunk(4, dim=-1)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(cell), cell
    return torch.tanh(gates_x + gates_h), None


class Seq2SeqAttnDecoder(nn.Module):
    """Attention RNN decoder in Bahdanau or Luong style; produces read-out features `(B, T, E)`."""

    def __init__(self, config: Seq2SeqAttnConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.style = config.decoder_style
        self.input_feeding = config.decoder_style == "luong" and config.input_feeding
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(config.embedding_dropout)
        self.readout_dropout = nn.Dropout(config.readout_dropout)
        self.attention = Seq2SeqAttnAttention(config)
        emb, hid, key = config.embedding_size, config.decoder_hidden_size, config.encoder_output_size
        if self.style == "bahdanau":
            rnn_input = emb + key  # [e_{t-1}; c_t]
            self.readout = nn.Linear(hid + key + emb, emb)  # reads [s_t; c_t; e_{t-1}]
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

    # ----- state -----
    def init_cache(self, encoder_outputs: Seq2SeqAttnEncoderOutput) -> Seq2SeqAttnCache:
        """Initial decoder state from the encoder: bridge, projected keys, zero input feed."""
        states, summary = encoder_outputs.last_hidden_state, encoder_outputs.final_hidden_state
        batch, layers, hid = states.shape[0], self.config.decoder_layers, self.config.decoder_hidden_size
        if self.bridge is not None:
            hidden = torch.tanh(self.bridge(summary)).view(batch, layers, hid).transpose(0, 1).contiguous()  # (L, B, H)
        else:
            hidden = states.new_zeros(layers, batch, hid)
        cell = torch.zeros_like(hidden) if self.config.rnn_type == "lstm" else None
        keys, values = self.attention.project_keys(states)
        feed = states.new_zeros(batch, self.config.embedding_size) if self.input_feeding else None
        return Seq2SeqAttnCache(hidden, cell, keys, values, encoder_outputs.attention_mask, feed)

    # ----- forward -----
    def forward(
        self, decoder_input_ids: torch.LongTensor, cache: Seq2SeqAttnCache
    ) -> tuple[torch.Tensor, Seq2SeqAttnCache, torch.Tensor]:
        """Run T decoder steps from `cache` (teacher forcing when T > 1, one generation step when T = 1).

        Args:
            decoder_input_ids: `(B, T)` previous target tokens (`decoder_start_token_id` first).
            cache: state after the tokens seen so far; not modified.
        Returns:
            read-out features `(B, T, E)`, the new cache, attention weights `(B, N, T, S)`.
        """
        embeddings = self.dropout(self.embed_tokens(decoder_input_ids))  # (B, T, E)
        if self.style == "luong" and not self.input_feeding:
            features, new_cache, weights = self._luong_parallel(embeddings, cache)
        else:
            features, new_cache, weights = self._stepwise(embeddings, cache)
        new_cache.seen_tokens = cache.seen_tokens + decoder_input_ids.shape[1]
        return self.readout_dropout(features), new_cache, weights

    def _luong_parallel(self, embeddings: torch.Tensor, cache: Seq2SeqAttnCache):
        """Luong without input feeding: the RNN does not depend on attention, so run it in one call."""
        states, final = self.rnn(embeddings, cache.rnn_state)  # (B, T, H)
        context, weights = self.attention(states, cache.keys, cache.values, cache.mask)  # (B, T, K)
        features = torch.tanh(self.readout(torch.cat([context, states], dim=-1)))  # (B, T, E)
        hidden, cell = final if isinstance(final, tuple) else (final, None)
        new_cache = Seq2SeqAttnCache(hidden, cell, cache.keys, cache.values, cache.mask, None, groups=cache.groups)
        return features, new_cache, weights

    def _stepwise(self, embeddings: torch.Tensor, cache: Seq2SeqAttnCache):
        """Bahdanau, or Luong with input feeding: attention and RNN interleave step by step."""
        rnn, rnn_type, emb = self.rnn, self.config.rnn_type, self.config.embedding_size
        layers = self.config.decoder_layers
        weight_ih0 = rnn.weight_ih_l0
        # The embedding part of layer 0's input projection, for every step in one matmul.
        gates_emb = F.linear(embeddings, weight_ih0[:, :emb], rnn.bias_ih_l0)  # (B, T, G)
        # unbind, not gates_emb[:, t]: each select's backward zero-fills and adds a full (B, T, G) grad.
        gates_emb_steps = gates_emb.unbind(1)  # T x (B, G)
        weight_ctx = weight_ih0[:, emb:]  # acts on c_t (Bahdanau) or ~h_{t-1} (input feeding)
        hidden = list(cache.hidden.unbind(0))  # L x (B, H)
        cell = list(cache.cell.unbind(0)) if cache.cell is not None else [None] * layers
        feed = cache.feed
        outputs, contexts, all_weights = [], [], []
        for t in range(embeddings.shape[1]):
            if self.style == "bahdanau":
                context, weights = self.attention(hidden[-1].unsqueeze(1), cache.keys, cache.values, cache.mask)
                gates_x = gates_emb_steps[t] + F.linear(context[:, 0], weight_ctx)  # (B, G)
            else:
                gates_x = gates_emb_steps[t] + F.linear(feed, weight_ctx)
            for layer in range(layers):
                if layer > 0:
                    below = F.dropout(hidden[layer - 1], self.config.rnn_dropout, self.training)
                    gates_x = F.linear(below, getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"bias_ih_l{layer}"))
                hidden[layer], cell[layer] = rnn_cell(
                    rnn_type,
                    gates_x,
                    hidden[layer],
                    cell[layer],
                    getattr(rnn, f"weight_hh_l{layer}"),
                    getattr(rnn, f"bias_hh_l{layer}"),
                )
            if self.style == "luong":
                context, weights = self.attention(hidden[-1].unsqueeze(1), cache.keys, cache.values, cache.mask)
                feed = torch.tanh(self.readout(torch.cat([context[:, 0], hidden[-1]], dim=-1)))  # (B, E)
                outputs.append(feed)
            else:
                outputs.append(hidden[-1])
                contexts.append(context)
            all_weights.append(weights)
        if self.style == "luong":
            features = torch.stack(outputs, dim=1)  # (B, T, E)
        else:
            states = torch.stack(outputs, dim=1)  # (B, T, H)
            context = torch.cat(contexts, dim=1)  # (B, T, K)
            features = torch.tanh(self.readout(torch.cat([states, context, embeddings], dim=-1)))  # (B, T, E)
        new_cache = Seq2SeqAttnCache(
            torch.stack(hidden),
            torch.stack(cell) if cache.cell is not None else None,
            cache.keys,
            cache.values,
            cache.mask,
            feed,
            groups=cache.groups,
        )
        return features, new_cache, torch.cat(all_weights, dim=2)  # weights (B, N, T, S)


# --------------------------------------------------------------------------------------------
# Pretrained model plumbing
# --------------------------------------------------------------------------------------------
class Seq2SeqAttnPreTrainedModel(PreTrainedModel):
    config_class = Seq2SeqAttnConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["Seq2SeqAttnEncoder", "Seq2SeqAttnDecoder"]

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
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
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
        """`PreTrainedModel.save_pretrained`, with `auto_map` naming both heads (the base names only `self`'s)."""
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

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
        elif isinstance(module, Seq2SeqAttnAttention):
            if module.energy is not None:
                init.uniform_(module.energy, -std, std)
            if module.bilinear is not None:
                init.xavier_uniform_(module.bilinear)


def _make_embeddings(config: Seq2SeqAttnConfig) -> tuple[nn.Embedding, nn.Embedding]:
    source = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
    if config.share_encoder_decoder_embeddings:
        return source, source
    target = nn.Embedding(config.target_vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
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


class Seq2SeqAttnModel(Seq2SeqAttnPreTrainedModel):
    """Encoder + attention decoder without the vocabulary head. `last_hidden_state` is the read-out `(B, T, E)`."""

    def __init__(self, config: Seq2SeqAttnConfig):
        super().__init__(config)
        source_embed, target_embed = _make_embeddings(config)
        self.encoder = Seq2SeqAttnEncoder(config, source_embed)
        self.decoder = Seq2SeqAttnDecoder(config, target_embed)
        self._tied_weights_keys = (
            {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"}
            if config.share_encoder_decoder_embeddings
            else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value
        if self.config.share_encoder_decoder_embeddings:
            self.decoder.embed_tokens = value

    def get_encoder(self, *args, **kwargs) -> Seq2SeqAttnEncoder:
        return self.encoder

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: Seq2SeqAttnEncoderOutput | tuple | None = None,
        past_key_values: Seq2SeqAttnCache | None = None,
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
            past_key_values: [`Seq2SeqAttnCache`] to continue from (generation); the decoder then
                consumes only the new tokens in `decoder_input_ids`.
            use_cache: return the decoder state after the last token as `past_key_values`.
            output_attentions: return `cross_attentions` as a 1-tuple of `(B, N, T, S)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        if decoder_input_ids is None:
            raise ValueError("`decoder_input_ids` (or `labels`, from which they are made) are required.")
        if decoder_input_ids.dim() != 2 or decoder_input_ids.numel() == 0:
            raise ValueError(
                f"`decoder_input_ids` must be a non-empty (batch, length) tensor; got {tuple(decoder_input_ids.shape)}."
            )
        check_token_ids(decoder_input_ids, self.decoder.embed_tokens.num_embeddings, "decoder_input_ids")
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("Pass `input_ids` (the source) or precomputed `encoder_outputs`.")
            encoder_outputs = self.encoder(
                input_ids, attention_mask, output_hidden_states=output_hidden_states, return_dict=True
            )
        else:
            encoder_outputs = _as_encoder_output(encoder_outputs, input_ids, self.config.pad_token_id)
        if encoder_outputs.last_hidden_state.shape[0] != decoder_input_ids.shape[0]:
            raise ValueError(
                f"Source batch ({encoder_outputs.last_hidden_state.shape[0]}) and target batch "
                f"({decoder_input_ids.shape[0]}) differ."
            )
        cache = past_key_values if past_key_values is not None else self.decoder.init_cache(encoder_outputs)
        features, new_cache, weights = self.decoder(decoder_input_ids, cache)
        output = Seq2SeqModelOutput(
            last_hidden_state=features,
            past_key_values=new_cache if use_cache else None,
            cross_attentions=(weights,) if output_attentions else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
        )
        return output if return_dict else output.to_tuple()


class Seq2SeqAttnForConditionalGeneration(Seq2SeqAttnPreTrainedModel, GenerationMixin):
    """[`Seq2SeqAttnModel`] plus the vocabulary projection, the loss, and `generate()`."""

    def __init__(self, config: Seq2SeqAttnConfig):
        super().__init__(config)
        self.model = Seq2SeqAttnModel(config)
        self.lm_head = nn.Linear(config.embedding_size, config.target_vocab_size)
        tied = {}
        if config.share_encoder_decoder_embeddings:
            tied["model.decoder.embed_tokens.weight"] = "model.encoder.embed_tokens.weight"
        if config.tie_word_embeddings:
            tied["lm_head.weight"] = (
                "model.encoder.embed_tokens.weight"
                if config.share_encoder_decoder_embeddings
                else "model.decoder.embed_tokens.weight"
            )
        self._tied_weights_keys = tied or None
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
        start, pad = self.config.decoder_start_token_id, self.config.pad_token_id
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
        past_key_values: Seq2SeqAttnCache | None = None,
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
            [`Seq2SeqLMOutput`] with `logits` `(B, T, V)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if labels is not None:
            check_labels(labels, self.config.target_vocab_size)
            if decoder_input_ids is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids,
            attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, V)
        loss = None
        if labels is not None:
            loss = sequence_loss(logits, labels, kwargs.get("num_items_in_batch"))
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
        )
        return output if return_dict else output.to_tuple()

    def prepare_inputs_for_generation(
        self,
        decoder_input_ids: torch.LongTensor,
        past_key_values: Seq2SeqAttnCache | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: Seq2SeqAttnEncoderOutput | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> dict:
        """With a cache only the newest token is fed: each generated token costs one decoder step."""
        if past_key_values is not None:
            decoder_input_ids = decoder_input_ids[:, -1:]
        inputs = {
            "decoder_input_ids": decoder_input_ids,
            "past_key_values": past_key_values,
            "attention_mask": attention_mask,
            "encoder_outputs": encoder_outputs,
            "use_cache": use_cache,
        }
        for key in ("output_attentions", "output_hidden_states"):
            if key in kwargs:
                inputs[key] = kwargs[key]
        return inputs

    @torch.inference_mode()
    def generate(self, *args, **kwargs):
        """`GenerationMixin.generate` under `torch.inference_mode` (no autograd bookkeeping at all).

        An empty batch or `max_new_tokens=0` is answered with a clear error or the start token alone,
        see the README's generation notes.
        """
        return super().generate(*args, **kwargs)


def check_labels(labels: torch.Tensor, vocab_size: int) -> None:
    """Labels must be token ids in the target vocabulary or -100 (ignored)."""
    valid = labels[labels != -100]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= vocab_size):
        bad = int(valid.min()) if int(valid.min()) < 0 else int(valid.max())
        raise ValueError(
            f"`labels` contains {bad}, outside the target vocabulary [0, {vocab_size}) and not -100 "
            "(the ignore index). Check that the target tokenizer matches the model."
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
    if num_items_in_batch is None:
        num_items_in_batch = (labels != -100).sum().clamp(min=1)
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


__all__ = [
    "Seq2SeqAttnAttention",
    "Seq2SeqAttnCache",
    "Seq2SeqAttnEncoder",
    "Seq2SeqAttnEncoderOutput",
    "Seq2SeqAttnDecoder",
    "Seq2SeqAttnPreTrainedModel",
    "Seq2SeqAttnModel",
    "Seq2SeqAttnForConditionalGeneration",
]
