"""Model equivalences: cached == teacher-forced, formulas, masking, generate, gradients."""

import itertools
import math

import pytest
import torch
from helpers import make_config, padded_batch

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core.modeling_seq2seq_attn import ATTENTION_SCORES, CACHE_NAME, cell_update

VARIANTS = list(
    itertools.product(
        ["gru", "lstm", "rnn"],
        ["additive", "dot", "general", "scaled_dot"],
        [1, 4],
        [("bahdanau", False), ("luong", False), ("luong", True)],
        [True, False],
    )
)


def build(**overrides) -> Seq2SeqAttnForConditionalGeneration:
    return Seq2SeqAttnForConditionalGeneration(make_config(**overrides))


def stepwise_logits(model, input_ids, decoder_input_ids, chunks=(1,)):
    """Decode with the cache, feeding `decoder_input_ids` in pieces of the given sizes (then 1 by 1)."""
    encoder_outputs = model.get_encoder()(input_ids)
    cache, logits, start = None, [], 0
    sizes = list(chunks) + [1] * decoder_input_ids.shape[1]
    for size in sizes:
        if start >= decoder_input_ids.shape[1]:
            break
        out = model(
            encoder_outputs=encoder_outputs,
            decoder_input_ids=decoder_input_ids[:, start : start + size],
            cache=cache,
            use_cache=True,
        )
        cache, start = out[CACHE_NAME], start + size
        logits.append(out.logits)
    return torch.cat(logits, dim=1)


@pytest.mark.parametrize(("rnn_type", "attention_type", "heads", "style", "bidirectional"), VARIANTS)
def test_every_variant_trains_and_cached_decoding_equals_teacher_forcing(
    rnn_type, attention_type, heads, style, bidirectional
):
    decoder_style, input_feeding = style
    model = build(
        rnn_type=rnn_type,
        attention_type=attention_type,
        num_attention_heads=heads,
        decoder_style=decoder_style,
        input_feeding=input_feeding,
        bidirectional=bidirectional,
        decoder_layers=2 if rnn_type == "lstm" else 1,
    )
    source = padded_batch([5, 3, 4])
    labels = padded_batch([4, 2, 3]).masked_fill(padded_batch([4, 2, 3]) == 0, -100)
    # one real optimisation step: the loss is finite and parameters move
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(input_ids=source, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))

    model = model.double().eval()
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)
    full = model(input_ids=source, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(
        stepwise_logits(model, source, decoder_input_ids), full, rtol=1e-10, atol=1e-10
    )
    torch.testing.assert_close(
        stepwise_logits(model, source, decoder_input_ids, (2,)), full, rtol=1e-10, atol=1e-10
    )


def test_padded_keys_get_exactly_zero_weight_and_rows_sum_to_one():
    model = build(num_attention_heads=4).eval()
    source = padded_batch([6, 2, 4])
    out = model(input_ids=source, decoder_input_ids=padded_batch([3, 3, 3]), output_attentions=True)
    weights = out.cross_attentions[0]  # (B, N, T, S)
    assert weights.shape == (3, 4, 3, 6)
    mask = (source != 0)[:, None, None, :].expand_as(weights)
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 3))


def test_extra_source_padding_does_not_change_outputs():
    model = build(rnn_type="lstm").eval()
    source = padded_batch([5, 3])
    wider = torch.cat([source, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    target = padded_batch([4, 4])
    a = model(input_ids=source, decoder_input_ids=target).logits
    b = model(input_ids=wider, decoder_input_ids=target).logits
    torch.testing.assert_close(a, b)


def test_batched_forward_equals_one_by_one():
    model = build().eval()
    source, target = padded_batch([6, 2, 4]), padded_batch([3, 3, 3])
    batched = model(input_ids=source, decoder_input_ids=target).logits
    for row in range(3):
        length = int((source[row] != 0).sum())
        single = model(
            input_ids=source[row : row + 1, :length], decoder_input_ids=target[row : row + 1]
        ).logits
        torch.testing.assert_close(batched[row : row + 1], single, rtol=1e-5, atol=1e-6)


# ----- score functions against their formulas ----------------------------------------------------
def attention_inputs(config, batch=2, steps=3, length=5):
    query = torch.randn(batch, steps, config.decoder_hidden_size, dtype=torch.float64)
    keys = torch.randn(batch, length, config.encoder_output_size, dtype=torch.float64)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 3:] = False
    return query, keys, mask


def softmax_masked(scores, mask):
    return torch.softmax(scores.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)


@pytest.mark.parametrize("attention_type", ["additive", "dot", "general", "scaled_dot"])
def test_single_head_score_matches_formula(attention_type):
    config = make_config(attention_type=attention_type)
    attention = ATTENTION_SCORES[attention_type](config).double()
    for p in attention.parameters():
        torch.nn.init.normal_(p)
    s, h, mask = attention_inputs(config)
    if attention_type == "additive":  # v^T tanh(W_q s + W_k h + b)
        wq, wk, b, v = (
            attention.query_proj.weight,
            attention.key_proj.weight,
            attention.key_proj.bias,
            attention.energy[0],
        )
        scores = torch.einsum(
            "a,btsa->bts",
            v,
            torch.tanh(
                torch.einsum("ah,bth->bta", wq, s)[:, :, None]
                + (torch.einsum("ak,bsk->bsa", wk, h) + b)[:, None]
            ),
        )
    elif attention_type == "dot":  # s^T h
        scores = torch.einsum("bth,bsh->bts", s, h)
    elif attention_type == "general":  # s^T W h
        scores = torch.einsum("bth,hk,bsk->bts", s, attention.key_proj.weight, h)
    else:  # s^T h / sqrt(d)
        scores = torch.einsum("bth,bsh->bts", s, h) / math.sqrt(h.shape[-1])
    expected_weights = softmax_masked(scores, mask)
    keys, values = attention.project_keys(h)
    context, weights = attention(s, keys, values, mask)
    torch.testing.assert_close(weights[:, 0], expected_weights)
    torch.testing.assert_close(context, torch.einsum("bts,bsk->btk", expected_weights, h))


@pytest.mark.parametrize("attention_type", ["additive", "general"])
def test_multi_head_score_matches_formula(attention_type):
    config = make_config(attention_type=attention_type, num_attention_heads=4)
    attention = ATTENTION_SCORES[attention_type](config).double()
    for p in attention.parameters():
        torch.nn.init.normal_(p, std=0.5)
    s, h, mask = attention_inputs(config)
    heads, d = 4, 4
    q = attention.query_proj(s).view(2, 3, heads, d)
    k = attention.key_proj(h).view(2, 5, heads, d)
    v = attention.value_proj(h).view(2, 5, heads, d)
    if attention_type == "additive":  # v_n^T tanh(q_n + k_n)
        scores = torch.einsum("nd,btsnd->bnts", attention.energy, torch.tanh(q[:, :, None] + k[:, None]))
    else:  # q_n^T W_n k_n
        scores = torch.einsum("btnd,nde,bsne->bnts", q, attention.bilinear, k)
    weights = torch.softmax(scores.masked_fill(~mask[:, None, None, :], float("-inf")), dim=-1)
    heads_context = torch.einsum("bnts,bsnd->btnd", weights, v).reshape(2, 3, heads * d)
    expected = attention.out_proj(heads_context)
    keys, values = attention.project_keys(h)
    context, got_weights = attention(s, keys, values, mask)
    torch.testing.assert_close(got_weights, weights)
    torch.testing.assert_close(context, expected)


def test_multi_head_scaled_dot_matches_torch_multihead_attention():
    config = make_config(attention_type="scaled_dot", num_attention_heads=4)  # H = K = A = 16
    attention = ATTENTION_SCORES["scaled_dot"](config).double().eval()
    for p in attention.parameters():
        torch.nn.init.normal_(p, std=0.3)
    mha = torch.nn.MultiheadAttention(16, 4, kdim=16, vdim=16, batch_first=True).double().eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(
            torch.cat([attention.query_proj.weight, attention.key_proj.weight, attention.value_proj.weight])
        )
        mha.in_proj_bias.copy_(
            torch.cat([attention.query_proj.bias, attention.key_proj.bias, attention.value_proj.bias])
        )
        mha.out_proj.weight.copy_(attention.out_proj.weight)
        mha.out_proj.bias.copy_(attention.out_proj.bias)
    s, h, mask = attention_inputs(config)
    expected, expected_weights = mha(s, h, h, key_padding_mask=~mask, average_attn_weights=False)
    keys, values = attention.project_keys(h)
    context, weights = attention(s, keys, values, mask)
    torch.testing.assert_close(context, expected)
    torch.testing.assert_close(weights, expected_weights)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm", "rnn"])
def test_cell_update_matches_torch_cell(rnn_type):
    cls = {"gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell, "rnn": torch.nn.RNNCell}[rnn_type]
    cell = cls(5, 7).double()
    x, h, c = (torch.randn(3, n, dtype=torch.float64) for n in (5, 7, 7))
    gates_x = torch.nn.functional.linear(x, cell.weight_ih, cell.bias_ih)
    gates_h = torch.nn.functional.linear(h, cell.weight_hh, cell.bias_hh)
    got_h, got_c = cell_update(rnn_type, gates_x, gates_h, h, c if rnn_type == "lstm" else None)
    expected = cell(x, (h, c)) if rnn_type == "lstm" else (cell(x, h), None)
    torch.testing.assert_close(got_h, expected[0])
    if rnn_type == "lstm":
        torch.testing.assert_close(got_c, expected[1])


def test_gradients_match_finite_differences():
    model = build(rnn_type="lstm", num_attention_heads=2, attention_type="general").double()
    source, labels = padded_batch([4, 3]), padded_batch([3, 2])
    labels = labels.masked_fill(labels == 0, -100)
    embeddings = model.model.encoder.embed_tokens.weight

    def loss_of(weight):
        with torch.no_grad():
            embeddings.copy_(weight)
        return model(input_ids=source, labels=labels).loss

    base = embeddings.detach().clone()
    model.zero_grad()
    loss_of(base).backward()
    analytic = embeddings.grad.clone()
    for index in [(5, 0), (7, 3), (int(source[0, 0]), 2)]:
        bumped_up, bumped_down = base.clone(), base.clone()
        bumped_up[index] += 1e-6
        bumped_down[index] -= 1e-6
        with torch.no_grad():
            numeric = (loss_of(bumped_up) - loss_of(bumped_down)) / 2e-6
        torch.testing.assert_close(analytic[index], numeric, rtol=1e-5, atol=1e-8)


def test_loss_honours_num_items_in_batch_for_gradient_accumulation():
    model = build().double()
    source, labels = padded_batch([5, 3, 4, 2]), padded_batch([4, 2, 3, 4])
    labels = labels.masked_fill(labels == 0, -100)
    model(input_ids=source, labels=labels).loss.backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total = int((labels != -100).sum())
    for part in (slice(0, 2), slice(2, 4)):
        model(input_ids=source[part], labels=labels[part], num_items_in_batch=total).loss.backward()
    for a, b in zip(full, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(a, b)


def test_tied_and_shared_embeddings():
    model = build(share_encoder_decoder_embeddings=True)
    shared = model.model.encoder.embed_tokens.weight
    assert model.model.decoder.embed_tokens.weight is shared
    assert model.lm_head.weight is shared
    untied = build(tie_word_embeddings=False)
    assert untied.lm_head.weight is not untied.model.decoder.embed_tokens.weight


def test_separate_target_vocabulary():
    model = build(decoder_vocab_size=11).eval()
    logits = model(
        input_ids=padded_batch([4, 3]), decoder_input_ids=padded_batch([3, 3], vocab_size=11)
    ).logits
    assert logits.shape == (2, 3, 11)


# ----- configuration paths without a test before (issue 8) ----------------------------------------
def test_zero_bridge_starts_the_decoder_from_zeros():
    model = build(bridge="zero", rnn_type="lstm", decoder_layers=2).eval()
    assert model.model.decoder.bridge is None
    assert not any("bridge" in name for name in model.state_dict())
    cache = model.model.decoder.init_cache(model.get_encoder()(padded_batch([4, 3])))
    assert torch.equal(cache.hidden, torch.zeros(2, 2, 16)) and torch.equal(cache.cell, torch.zeros(2, 2, 16))
    source, target = padded_batch([4, 3]), padded_batch([3, 3])
    full = model.double()(input_ids=source, decoder_input_ids=target).logits
    torch.testing.assert_close(stepwise_logits(model, source, target), full, rtol=1e-10, atol=1e-10)


def test_stacked_encoder_layers_feed_the_top_layer_to_the_decoder():
    model = build(encoder_layers=3, rnn_type="gru").double().eval()
    encoder = model.model.encoder
    assert encoder.rnn.num_layers == 3
    source = padded_batch([5, 3])
    out = encoder(source)
    # The top layer's states for the 3-token row equal an unpadded run of the whole stack on it alone.
    alone, final = encoder.rnn(encoder.embed_tokens(source[1:2, :3]))
    torch.testing.assert_close(out.last_hidden_state[1:2, :3], alone)
    torch.testing.assert_close(out.final_hidden_state[1], torch.cat([final[-2, 0], final[-1, 0]]))
    assert torch.all(out.last_hidden_state[1, 3:] == 0)
    target = padded_batch([3, 3])
    full = model(input_ids=source, decoder_input_ids=target).logits
    torch.testing.assert_close(stepwise_logits(model, source, target), full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(rnn_dropout=0.5, encoder_layers=2, decoder_layers=2),
        dict(rnn_dropout=0.5, encoder_layers=2, decoder_layers=2, decoder_style="luong", input_feeding=True),
        dict(rnn_dropout=0.5, encoder_layers=2, decoder_layers=2, decoder_style="luong"),
        dict(attention_dropout=0.5),
        dict(attention_dropout=0.5, num_attention_heads=4, decoder_style="luong"),
    ],
    ids=["rnn-bahdanau", "rnn-luong-feed", "rnn-luong", "attention", "attention-heads-luong"],
)
def test_dropout_is_active_in_training_and_off_in_eval(overrides):
    model = build(**overrides)
    source, target = padded_batch([6, 2, 4]), padded_batch([3, 3, 3])
    model.train()
    torch.manual_seed(1)
    a = model(input_ids=source, decoder_input_ids=target, output_attentions=True)
    torch.manual_seed(2)
    b = model(input_ids=source, decoder_input_ids=target, output_attentions=True)
    assert not torch.allclose(a.logits, b.logits)  # dropout draws differ
    for weights in (a.cross_attentions[0], b.cross_attentions[0]):  # masks hold under dropout
        mask = (source != 0)[:, None, None, :].expand_as(weights)
        assert torch.all(weights[~mask] == 0)
        torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    model.eval()
    torch.manual_seed(1)
    c = model(input_ids=source, decoder_input_ids=target).logits
    torch.manual_seed(2)
    d = model(input_ids=source, decoder_input_ids=target).logits
    assert torch.equal(c, d)
