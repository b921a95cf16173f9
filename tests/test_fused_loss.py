"""The chunked vocabulary projection + cross-entropy (`core/fused_loss.py`) equals `F.cross_entropy(F.linear(...))`.

Compared in float64 against torch's own ops differentiated by autograd (1e-10: float64 reassociation moves
sums of a few hundred terms by ~1e-15), with ignored rows, a row count that is not a multiple of the chunk,
with and without a bias; then through the model, where a training step must give the loss and gradients
of the plain path (`fused_loss = False`), and return no logits.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import make_config, padded_batch

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core import fused_loss

TIGHT = {"rtol": 1e-10, "atol": 1e-10}


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_cross_entropy_equals_torch(monkeypatch, with_bias):
    monkeypatch.setattr(fused_loss, "CHUNK_ROWS", 4)  # several chunks, the last one short
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(11, 6, dtype=torch.float64, generator=generator)
    weight = torch.randn(9, 6, dtype=torch.float64, generator=generator)
    bias = torch.randn(9, dtype=torch.float64, generator=generator) if with_bias else None
    labels = torch.randint(0, 9, (11,), generator=generator)
    labels[[2, 7]] = -100
    results = []
    for compute in (
        lambda x, w, b: F.cross_entropy(F.linear(x, w, b), labels, ignore_index=-100, reduction="sum"),
        lambda x, w, b: fused_loss.linear_cross_entropy(x, w, b, labels),
    ):
        leaves = [t.clone().requires_grad_() if t is not None else None for t in (features, weight, bias)]
        loss = compute(*leaves)
        (3.0 * loss).backward()  # a non-unit upstream gradient
        results.append((loss.detach(), [t.grad for t in leaves if t is not None]))
    (loss_ref, grads_ref), (loss_fused, grads_fused) = results
    torch.testing.assert_close(loss_fused, loss_ref, **TIGHT)
    for ours, theirs in zip(grads_fused, grads_ref, strict=True):
        torch.testing.assert_close(ours, theirs, **TIGHT)
    assert torch.all(grads_fused[0][[2, 7]] == 0)  # ignored rows get no gradient


def training_step(model, fused: bool):
    model.fused_loss = fused
    model.zero_grad()
    generator = torch.Generator().manual_seed(0)
    source = padded_batch([6, 3, 5], generator=generator)
    labels = padded_batch([5, 3, 4], generator=generator)
    labels[labels == 0] = -100
    output = model(input_ids=source, labels=labels)
    output.loss.backward()
    return output, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("tied", [True, False])
def test_a_training_step_gives_the_plain_loss_and_gradients_without_logits(tied):
    torch.manual_seed(0)
    model = Seq2SeqAttnForConditionalGeneration(make_config(tie_word_embeddings=tied)).double().train()
    plain, plain_grads = training_step(model, fused=False)
    fused, fused_grads = training_step(model, fused=True)
    assert plain.logits is not None and fused.logits is None
    torch.testing.assert_close(fused.loss, plain.loss, **TIGHT)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, **TIGHT, msg=name)


def test_evaluation_and_no_grad_calls_still_return_logits():
    model = Seq2SeqAttnForConditionalGeneration(make_config()).train()
    batch = {"input_ids": padded_batch([4, 3]), "labels": padded_batch([3, 3])}
    with torch.no_grad():
        assert model(**batch).logits is not None
    model.eval()
    assert model(**batch).logits is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_loss.fused_loss_applies(True, torch.zeros(1))


def test_fifty_training_steps_follow_the_plain_paths():
    """The fused decoder and loss against autograd through `_fast_bahdanau` and `F.cross_entropy`, over 50
    steps of the optimizer `Trainer` uses by default: the same loss at every step (float64, so rounding
    cannot grow into a real difference over the steps)."""
    import hf_seq2seq_attn.core.modeling_seq2seq_attn as modeling

    generator = torch.Generator().manual_seed(0)
    source = padded_batch([7, 4, 6, 5], generator=generator)
    labels = padded_batch([6, 3, 5, 6], generator=generator)
    labels[labels == 0] = -100
    curves = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = Seq2SeqAttnForConditionalGeneration(make_config(embedding_dropout=0.0)).double().train()
        model.fused_loss = fused
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        decoder_supported = modeling.supports_fused_decoder
        losses = []
        try:
            if not fused:
                modeling.supports_fused_decoder = lambda *args: False
            for _ in range(50):
                optimizer.zero_grad()
                loss = model(input_ids=source, labels=labels).loss
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
        finally:
            modeling.supports_fused_decoder = decoder_supported
        curves.append(torch.tensor(losses, dtype=torch.float64))
    plain, fused = curves
    assert plain[-1] < 0.8 * plain[0]  # it learns, so the comparison covers a moving model
    torch.testing.assert_close(fused, plain, rtol=1e-9, atol=1e-9)
