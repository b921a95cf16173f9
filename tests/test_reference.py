"""An independent reference decoder, written from the papers' equations, against the model's logits.

Nothing of the package's decoder code is used here: the reference reads the trained parameters by their
state-dict names, runs the encoder one unpadded sentence at a time, steps `torch.nn.GRUCell` /
`LSTMCell` / `RNNCell` (weights copied from the model's `nn.GRU` etc.), and writes every score with
`einsum`:

    additive    e = v^T tanh(W_q s + W_k h + b)    Bahdanau et al. 2015, eq. 6
    dot         e = s^T h                          Luong et al. 2015, eq. 8
    general     e = s^T W h                        Luong et al. 2015, eq. 8
    scaled_dot  e = s^T h / sqrt(d)                Vaswani et al. 2017, eq. 1
    N heads     q_n = W_Q^n s, k_n = W_K^n h, v_n = W_V^n h; context = W_O [c_1; ...; c_N]

    Bahdanau    c_t = attend(s_{t-1}); s_t = f(s_{t-1}, [e_{t-1}; c_t]); o_t = tanh(W_o [s_t; c_t; e_{t-1}])
    Luong       s_t = f(s_{t-1}, [e_{t-1}; ~h_{t-1}] or e_{t-1}); c_t = attend(s_t); ~h_t = tanh(W_c [c_t; s_t])

All in float64 on a right-padded batch; the model's teacher-forced logits must match to 1e-9.
"""

import itertools
import math

import pytest
import torch
from helpers import make_config, padded_batch

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration

CELLS = {"gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell, "rnn": torch.nn.RNNCell}


def copied_cells(weights: dict, prefix: str, rnn_type: str, layers: int) -> list[torch.nn.Module]:
    """One torch cell per layer, with the weights of `{prefix}.weight_ih_l{layer}` etc."""
    cells = []
    for layer in range(layers):
        w_ih, w_hh = weights[f"{prefix}.weight_ih_l{layer}"], weights[f"{prefix}.weight_hh_l{layer}"]
        cell = CELLS[rnn_type](w_ih.shape[1], w_hh.shape[1]).double()
        with torch.no_grad():
            cell.weight_ih.copy_(w_ih)
            cell.weight_hh.copy_(w_hh)
            cell.bias_ih.copy_(weights[f"{prefix}.bias_ih_l{layer}"])
            cell.bias_hh.copy_(weights[f"{prefix}.bias_hh_l{layer}"])
        cells.append(cell)
    return cells


def encode(model, source):
    """Encoder states `(B, S, K)` (zeros at padding) and `[h_fwd_last; h_bwd_first]` `(B, K)`, row by row."""
    encoder = model.model.encoder
    states = torch.zeros(
        source.shape[0], source.shape[1], model.config.encoder_output_size, dtype=torch.float64
    )
    finals = []
    for row, ids in enumerate(source):
        ids = ids[ids != model.config.pad_token_id]
        out, final = encoder.rnn(encoder.embed_tokens(ids)[None])  # torch's own RNN on one unpadded sentence
        final = final[0] if isinstance(final, tuple) else final
        states[row, : len(ids)] = out[0]
        finals.append(torch.cat([final[-2, 0], final[-1, 0]]) if model.config.bidirectional else final[-1, 0])
    return states, torch.stack(finals)


def reference_attend(w: dict, config, query, states, mask):
    """Context `(B, K)` for decoder states `query (B, H)` over `states (B, S, K)`, from the formulas."""
    a, kind, heads = "model.decoder.attention", config.attention_type, config.num_attention_heads
    if heads == 1:
        if kind == "additive":
            hidden = torch.einsum("ah,bh->ba", w[f"{a}.query_proj.weight"], query)[:, None]
            hidden = (
                hidden
                + torch.einsum("ak,bsk->bsa", w[f"{a}.key_proj.weight"], states)
                + w[f"{a}.key_proj.bias"]
            )
            scores = torch.einsum("a,bsa->bs", w[f"{a}.energy"][0], torch.tanh(hidden))
        elif kind == "general":
            scores = torch.einsum("bh,hk,bsk->bs", query, w[f"{a}.key_proj.weight"], states)
        else:
            scores = torch.einsum("bk,bsk->bs", query, states)
            if kind == "scaled_dot":
                scores = scores / math.sqrt(states.shape[-1])
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.einsum("bs,bsk->bk", weights, states)
    d = config.attention_size // heads
    q = (torch.einsum("ah,bh->ba", w[f"{a}.query_proj.weight"], query) + w[f"{a}.query_proj.bias"]).view(
        -1, heads, d
    )
    k = torch.einsum("ak,bsk->bsa", w[f"{a}.key_proj.weight"], states) + w[f"{a}.key_proj.bias"]
    v = torch.einsum("ak,bsk->bsa", w[f"{a}.value_proj.weight"], states) + w[f"{a}.value_proj.bias"]
    k, v = k.view(*k.shape[:2], heads, d), v.view(*v.shape[:2], heads, d)
    if kind == "additive":
        scores = torch.einsum("nd,bsnd->bns", w[f"{a}.energy"], torch.tanh(q[:, None] + k))
    elif kind == "general":
        scores = torch.einsum("bnd,nde,bsne->bns", q, w[f"{a}.bilinear"], k)
    else:
        scores = torch.einsum("bnd,bsnd->bns", q, k)
        if kind == "scaled_dot":
            scores = scores / math.sqrt(d)
    weights = torch.softmax(scores.masked_fill(~mask[:, None], float("-inf")), dim=-1)
    heads_context = torch.einsum("bns,bsnd->bnd", weights, v).reshape(query.shape[0], heads * d)
    return torch.einsum("ka,ba->bk", w[f"{a}.out_proj.weight"], heads_context) + w[f"{a}.out_proj.bias"]


def reference_logits(model, source, decoder_input_ids, *, bahdanau_query="previous"):
    """Teacher-forced logits `(B, T, V)`. `bahdanau_query="new"` wires the Bahdanau query wrongly (s_t)."""
    config, w = model.config, dict(model.state_dict())
    layers = config.decoder_layers
    states, final = encode(model, source)
    mask = source != config.pad_token_id
    cells = copied_cells(w, "model.decoder.rnn", config.rnn_type, layers)
    s0 = torch.tanh(final @ w["model.decoder.bridge.weight"].T + w["model.decoder.bridge.bias"])  # (B, L*H)
    hidden = list(s0.view(source.shape[0], layers, -1).unbind(1))  # L x (B, H), layer-major as the bridge
    cell = [torch.zeros_like(h) for h in hidden]
    feed = torch.zeros(source.shape[0], config.embedding_size, dtype=torch.float64)
    embed = w["model.decoder.embed_tokens.weight"]
    w_out, b_out = w["model.decoder.readout.weight"], w["model.decoder.readout.bias"]

    def run_layers(x):
        for layer, torch_cell in enumerate(cells):
            if config.rnn_type == "lstm":
                hidden[layer], cell[layer] = torch_cell(x, (hidden[layer], cell[layer]))
            else:
                hidden[layer] = torch_cell(x, hidden[layer])
            x = hidden[layer]

    outputs = []
    for t in range(decoder_input_ids.shape[1]):
        e = embed[decoder_input_ids[:, t]]  # (B, E)
        if config.decoder_style == "bahdanau":
            context = (
                reference_attend(w, config, hidden[-1], states, mask)
                if bahdanau_query == "previous"
                else None
            )
            if context is None:  # deliberately wrong wiring: attend from a state computed without context
                run_layers(torch.cat([e, torch.zeros(e.shape[0], states.shape[-1], dtype=e.dtype)], dim=-1))
                context = reference_attend(w, config, hidden[-1], states, mask)
            else:
                run_layers(torch.cat([e, context], dim=-1))
            outputs.append(torch.tanh(torch.cat([hidden[-1], context, e], dim=-1) @ w_out.T + b_out))
        else:
            run_layers(torch.cat([e, feed], dim=-1) if config.input_feeding else e)
            context = reference_attend(w, config, hidden[-1], states, mask)
            feed = torch.tanh(torch.cat([context, hidden[-1]], dim=-1) @ w_out.T + b_out)
            outputs.append(feed)
    features = torch.stack(outputs, dim=1)  # (B, T, E)
    return features @ w["lm_head.weight"].T + w["lm_head.bias"]


def reference_model(**overrides):
    torch.manual_seed(0)
    model = Seq2SeqAttnForConditionalGeneration(make_config(decoder_layers=2, **overrides)).double().eval()
    for name, param in model.named_parameters():  # away from init symmetries (zero biases, unit forget gate)
        if "bias" in name or "energy" in name:
            torch.nn.init.normal_(param, std=0.3)
    return model


VARIANTS = list(
    itertools.product(
        ["gru", "lstm", "rnn"],
        ["additive", "dot", "general", "scaled_dot"],
        [1, 4],
        [("bahdanau", False), ("luong", False), ("luong", True)],
    )
)


@pytest.mark.parametrize(("rnn_type", "attention_type", "heads", "style"), VARIANTS)
def test_model_logits_equal_the_reference_decoder(rnn_type, attention_type, heads, style):
    decoder_style, input_feeding = style
    model = reference_model(
        rnn_type=rnn_type,
        attention_type=attention_type,
        num_attention_heads=heads,
        decoder_style=decoder_style,
        input_feeding=input_feeding,
    )
    source, target = padded_batch([6, 2, 4]), padded_batch([5, 5, 5])
    with torch.no_grad():
        got = model(input_ids=source, decoder_input_ids=target).logits
        expected = reference_logits(model, source, target)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_reference_catches_a_wrongly_wired_query():
    """The comparison is sharp enough to see Bahdanau attending from s_t instead of s_{t-1}."""
    model = reference_model()
    source, target = padded_batch([6, 2, 4]), padded_batch([5, 5, 5])
    with torch.no_grad():
        got = model(input_ids=source, decoder_input_ids=target).logits
        wrong = reference_logits(model, source, target, bahdanau_query="new")
    assert (got - wrong).abs().max() > 1e-3
