"""Each teacher-forcing fast path equals the textbook decoder step it optimises, for every variant.

`Seq2SeqAttnDecoder.forward` runs one fast path per decoder style when given more than one token
(`_fast_bahdanau`; `_fast_luong_input_feeding`; `_fast_luong_parallel`, Luong without input feeding),
and the readable `bahdanau_step` / `luong_step` (through `step_by_step`) when generating. Here both
run on the same embeddings and state in float64; outputs, attention weights, the final state and the gradients of every
parameter must agree to 1e-10 (float64 reassociation differences are ~1e-15 at these sizes).
"""

import itertools

import pytest
import torch
from helpers import make_config, padded_batch

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration

TIGHT = {"rtol": 1e-10, "atol": 1e-10}

VARIANTS = list(
    itertools.product(
        ["gru", "lstm", "rnn"],
        ["additive", "dot", "general", "scaled_dot"],
        [1, 4],
        [("bahdanau", False), ("luong", False), ("luong", True)],
        [True, False],
    )
)


def build_decoder_inputs(decoder_layers: int, **overrides):
    torch.manual_seed(0)
    model = (
        Seq2SeqAttnForConditionalGeneration(make_config(decoder_layers=decoder_layers, **overrides))
        .double()
        .eval()
    )
    source = padded_batch([6, 3, 5])  # right-padded: rows 1 and 2 have padded keys
    encoder_outputs = model.get_encoder()(source)
    decoder = model.model.decoder
    embeddings = decoder.embed_tokens(padded_batch([4, 4, 4]))  # (B, T, E)
    return model, decoder, encoder_outputs, embeddings


# The fast path `forward` takes for each (decoder_style, input_feeding).
FAST_PATHS = {
    ("bahdanau", False): "_fast_bahdanau",
    ("luong", True): "_fast_luong_input_feeding",
    ("luong", False): "_fast_luong_parallel",
}


def run(path, decoder, encoder_outputs, embeddings):
    cache = decoder.init_cache(encoder_outputs)
    features, final, weights = path(embeddings, cache)
    return features, final, weights


# Two layers for every variant (dropout-free stacking, the top layer's fused W_hh); one layer, where the
# top layer is also the bottom one, for every rnn x score x style.
CASES = [(*variant, 2) for variant in VARIANTS] + [
    (*variant, 1) for variant in VARIANTS if variant[2] == 1 and variant[4]
]


@pytest.mark.parametrize(
    ("rnn_type", "attention_type", "heads", "style", "bidirectional", "decoder_layers"), CASES
)
def test_fast_path_equals_textbook_steps(
    rnn_type, attention_type, heads, style, bidirectional, decoder_layers
):
    decoder_style, input_feeding = style
    model, decoder, encoder_outputs, embeddings = build_decoder_inputs(
        decoder_layers,
        rnn_type=rnn_type,
        attention_type=attention_type,
        num_attention_heads=heads,
        decoder_style=decoder_style,
        input_feeding=input_feeding,
        bidirectional=bidirectional,
    )
    fast = getattr(decoder, FAST_PATHS[style])
    probe = torch.randn(
        embeddings.shape[0], embeddings.shape[1], model.config.embedding_size, dtype=torch.float64
    )
    results = []
    for path in (decoder.step_by_step, fast):
        model.zero_grad()
        features, final, weights = run(path, decoder, encoder_outputs, embeddings)
        (features * probe).sum().backward(retain_graph=True)
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results.append((features, final, weights, grads))
    (f_ref, c_ref, w_ref, g_ref), (f_fast, c_fast, w_fast, g_fast) = results
    torch.testing.assert_close(f_fast, f_ref, **TIGHT)
    torch.testing.assert_close(w_fast, w_ref, **TIGHT)
    assert torch.all(w_ref[1, :, :, 3:] == 0)  # padded keys of the 3-token source
    torch.testing.assert_close(c_fast.hidden, c_ref.hidden, **TIGHT)
    for name in ("cell", "feed"):
        a, b = getattr(c_fast, name), getattr(c_ref, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, **TIGHT)
    assert c_fast.seen_tokens == c_ref.seen_tokens == embeddings.shape[1]
    assert g_fast.keys() == g_ref.keys() and len(g_ref) > 5
    for name, grad in g_ref.items():
        torch.testing.assert_close(g_fast[name], grad, **TIGHT, msg=name)


@pytest.mark.parametrize("style", list(FAST_PATHS))
def test_forward_uses_the_textbook_step_for_one_token_and_a_fast_path_for_more(monkeypatch, style):
    decoder_style, input_feeding = style
    # general attention: outside the hand-written Bahdanau backward's scope (tests/test_fused_recurrence.py)
    model, decoder, encoder_outputs, _ = build_decoder_inputs(
        1, decoder_style=decoder_style, input_feeding=input_feeding, attention_type="general"
    )
    calls = []
    for name in ("step_by_step", *FAST_PATHS.values()):
        original = getattr(decoder, name)
        monkeypatch.setattr(decoder, name, lambda *args, _o=original, _n=name: calls.append(_n) or _o(*args))
    cache = decoder.init_cache(encoder_outputs)
    decoder(padded_batch([1, 1, 1]), cache)
    decoder(padded_batch([3, 3, 3]), cache)
    assert calls == ["step_by_step", FAST_PATHS[style]]
