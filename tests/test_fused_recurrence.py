"""The Bahdanau decoder's hand-written backward (`core/fused_recurrence.py`) equals the textbook step's autograd.

`Seq2SeqAttnDecoder.forward` runs `_fused_bahdanau` for teacher forcing when `supports_fused_decoder` allows the
configuration (one layer, single-head additive score). Here it runs beside `step_by_step` (the readable
`bahdanau_step`, differentiated by autograd) on the same padded batch in float64, and every output and
every parameter's gradient must agree to 1e-10: the two are independent derivations (equations by hand
against autograd), and float64 reassociation moves results by ~1e-15 at these sizes. Probes weight the
features, the attention weights, the final hidden state and the LSTM's final cell, so each output's
gradient path is checked, not only the loss's.
"""

import itertools

import pytest
import torch
from helpers import make_config, padded_batch

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core import fused_recurrence
from hf_seq2seq_attn.core import modeling_seq2seq_attn as modeling

TIGHT = {"rtol": 1e-10, "atol": 1e-10}


def build(**overrides):
    torch.manual_seed(0)
    config = make_config(**overrides)
    model = Seq2SeqAttnForConditionalGeneration(config).double()
    source = padded_batch([6, 3, 5])  # rows 1 and 2 have padded keys
    target = padded_batch([5, 5, 5])
    return model, source, target


def outputs_and_grads(model, source, target, path: str):
    """Features, weights, final state and every parameter's gradient under random probes of all four outputs."""
    model.zero_grad()
    decoder = model.model.decoder
    cache = decoder.init_cache(model.get_encoder()(source))
    features, final, weights = getattr(decoder, path)(decoder.embed_tokens(target), cache)
    generator = torch.Generator().manual_seed(1)
    outputs = [features, weights, final.hidden] + ([final.cell] if final.cell is not None else [])
    # torch.randn with the shape, not randn_like: the fused outputs are strided views, and randn_like
    # would lay the same numbers out in their memory order, i.e. probe different elements.
    loss = sum((out * torch.randn(out.shape, generator=generator, dtype=out.dtype)).sum() for out in outputs)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return outputs, grads


@pytest.mark.parametrize(
    ("rnn_type", "bidirectional", "bridge"),
    list(itertools.product(["gru", "lstm", "rnn"], [True, False], ["linear", "zero"])),
)
def test_fused_recurrence_equals_the_textbook_step(rnn_type, bidirectional, bridge):
    model, source, target = build(rnn_type=rnn_type, bidirectional=bidirectional, bridge=bridge)
    assert fused_recurrence.supports_fused_decoder(model.config, True, torch.float64)
    reference, reference_grads = outputs_and_grads(model, source, target, "step_by_step")
    fused, fused_grads = outputs_and_grads(model, source, target, "_fused_bahdanau")
    for ours, theirs in zip(fused, reference, strict=True):
        torch.testing.assert_close(ours, theirs, **TIGHT)
    assert torch.all(fused[1][1, :, :, 3:] == 0)  # padded keys of the 3-token source get no weight
    assert fused_grads.keys() == reference_grads.keys() and len(reference_grads) > 10
    for name, grad in reference_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, **TIGHT, msg=name)


def test_training_runs_the_fused_recurrence_and_a_second_backward_agrees(monkeypatch):
    """`forward` dispatches to it for T > 1 with the default configuration, and `retain_graph` works: the
    backward does not consume what the forward saved."""
    model, source, target = build()
    model.train()
    calls = []
    monkeypatch.setattr(
        modeling, "fused_bahdanau", lambda *a: calls.append(1) or fused_recurrence.fused_bahdanau(*a)
    )
    loss = model(input_ids=source, labels=target).loss
    loss.backward(retain_graph=True)
    first = {name: p.grad.clone() for name, p in model.named_parameters()}
    loss.backward()
    assert calls == [1]
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 2 * first[name], **TIGHT, msg=name)


@pytest.mark.parametrize(
    "overrides",
    [
        {"decoder_style": "luong"},
        {"decoder_layers": 2},
        {"attention_type": "general"},
        {"num_attention_heads": 4},
        {"attention_dropout": 0.1},
    ],
)
def test_configurations_outside_its_scope_take_the_autograd_path(overrides):
    config = make_config(**overrides)
    assert not fused_recurrence.supports_fused_decoder(config, True, torch.float32)


def test_half_precision_autocast_and_no_grad_take_the_autograd_path():
    config = make_config()
    assert fused_recurrence.supports_fused_decoder(config, False, torch.float32)
    assert not fused_recurrence.supports_fused_decoder(config, True, torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_recurrence.supports_fused_decoder(config, True, torch.float32)
    # attention dropout only matters while training
    assert fused_recurrence.supports_fused_decoder(make_config(attention_dropout=0.1), False, torch.float32)
    with torch.no_grad():  # no backward to follow: the autograd path keeps nothing
        assert not fused_recurrence.supports_fused_decoder(config, False, torch.float32)


def test_the_workspace_is_lent_to_one_step_at_a_time():
    """Two forwards before their backwards (gradient accumulation by hand) each keep their own features; a
    second backward through a graph whose buffer a later step took raises instead of reading that step's."""
    model, source, target = build()
    model.train()
    generator = torch.Generator().manual_seed(5)
    other_source, other_target = (
        padded_batch([4, 6, 2], generator=generator),
        padded_batch([5, 5, 5], generator=generator),
    )
    model.fused_loss = False  # the plain loss path, so only the decoder's buffer is under test

    def grads_of(loss):
        model.zero_grad()
        loss.backward(retain_graph=True)
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    alone = grads_of(model(input_ids=source, labels=target).loss)
    first = model(input_ids=source, labels=target).loss
    second = model(input_ids=other_source, labels=other_target).loss  # the buffer is lent to `first`
    together = grads_of(first)
    for name, grad in alone.items():
        torch.testing.assert_close(together[name], grad, **TIGHT, msg=name)
    grads_of(second)
    model(input_ids=other_source, labels=other_target).loss.backward()  # takes the buffer `first` gave back
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        first.backward()
