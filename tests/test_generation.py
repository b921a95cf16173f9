"""generate(): greedy == argmax loop, beam search(1) == greedy, cache on/off identical, batched == one-by-one."""

import pytest
import torch
from helpers import make_config, padded_batch
from transformers import GenerationConfig
from transformers.generation.configuration_utils import GenerationMode
from transformers.generation.utils import GenerateBeamEncoderDecoderOutput, GenerateEncoderDecoderOutput

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core.modeling_seq2seq_attn import CACHE_NAME


@pytest.fixture(
    params=[("gru", "bahdanau", False, 1), ("lstm", "luong", True, 4), ("gru", "luong", False, 2)]
)
def model(request):
    rnn_type, style, feeding, heads = request.param
    torch.manual_seed(1)
    config = make_config(
        rnn_type=rnn_type, decoder_style=style, input_feeding=feeding, num_attention_heads=heads
    )
    model = Seq2SeqAttnForConditionalGeneration(config).eval()
    # sharper distributions than at init, so greedy/beam paths differ and ties are unlikely
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)
    return model


def manual_greedy(model, source, steps):
    """Argmax loop that re-runs the whole prefix every step (no cache at all)."""
    config = model.config
    output = torch.tensor([[config.decoder_start_token_id]])
    for _ in range(steps):
        logits = model(input_ids=source, decoder_input_ids=output, use_cache=False).logits
        token = logits[:, -1].argmax(-1, keepdim=True)
        output = torch.cat([output, token], dim=1)
        if int(token) == config.eos_token_id:
            break
    return output


def test_greedy_generate_equals_manual_argmax_loop(model):
    for length in (5, 3):
        source = padded_batch([length])
        generated = model.generate(source, max_new_tokens=8, do_sample=False, num_beams=1)
        expected = manual_greedy(model, source, 8)
        assert torch.equal(generated, expected)


class BeamSearchConfig(GenerationConfig):
    """Routes `num_beams=1` to beam search: stock `generate()` would resolve it to greedy search."""

    def get_generation_mode(self, assistant_model=None):
        return GenerationMode.BEAM_SEARCH


def test_one_beam_search_equals_greedy(model):
    source = padded_batch([5, 3, 4])
    greedy = model.generate(source, max_new_tokens=8, return_dict_in_generate=True)
    config = BeamSearchConfig(
        **{
            **model.generation_config.to_dict(),
            "num_beams": 1,
            "max_new_tokens": 8,
            "return_dict_in_generate": True,
        }
    )
    beam = model.generate(source, generation_config=config)
    assert isinstance(beam, GenerateBeamEncoderDecoderOutput)  # really ran beam search
    assert isinstance(greedy, GenerateEncoderDecoderOutput)
    assert torch.equal(greedy.sequences, beam.sequences)


def test_beam_search_same_with_and_without_cache(model):
    source = padded_batch([5, 3, 4])
    kwargs = dict(
        max_new_tokens=8,
        num_beams=4,
        num_return_sequences=2,
        return_dict_in_generate=True,
        output_scores=True,
    )
    cached = model.generate(source, use_cache=True, **kwargs)
    uncached = model.generate(source, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(cached.sequences_scores, uncached.sequences_scores)


def test_batched_generation_with_padding_equals_one_by_one(model):
    lengths = [6, 2, 4]
    source = padded_batch(lengths)
    for kwargs in (dict(), dict(num_beams=3, length_penalty=0.8)):
        batched = model.generate(source, max_new_tokens=7, min_new_tokens=7, **kwargs)
        for row, length in enumerate(lengths):
            single = model.generate(
                source[row : row + 1, :length], max_new_tokens=7, min_new_tokens=7, **kwargs
            )
            assert torch.equal(batched[row : row + 1, : single.shape[1]], single)


def test_generation_options_run_and_respect_constraints(model):
    source = padded_batch([5, 4])
    out = model.generate(
        source, do_sample=True, top_k=5, top_p=0.9, temperature=0.7, max_new_tokens=6, min_new_tokens=6
    )
    assert out.shape == (2, 7)
    out = model.generate(source, max_new_tokens=10, no_repeat_ngram_size=1, bad_words_ids=[[7]])
    for row in out[:, 1:]:
        tokens = [t for t in row.tolist() if t not in (0, 2)]
        assert 7 not in tokens
        assert len(tokens) == len(set(tokens))
    out = model.generate(source, max_new_tokens=5, min_new_tokens=5, num_beams=3, num_return_sequences=3)
    assert out.shape == (6, 6)


def test_generate_returns_scores_and_cross_attentions(model):
    source = padded_batch([5, 3])
    out = model.generate(
        source,
        max_new_tokens=4,
        min_new_tokens=4,
        return_dict_in_generate=True,
        output_scores=True,
        output_attentions=True,
    )
    heads = model.config.num_attention_heads
    assert len(out.scores) == 4 and out.scores[0].shape == (2, model.config.vocab_size)
    assert len(out.cross_attentions) == 4
    step = out.cross_attentions[1][0]
    assert step.shape == (2, heads, 1, 5)
    assert torch.all(step[1, :, :, 3:] == 0)  # padded keys of the shorter source


DECODING_MODES = {
    "greedy": dict(),
    "beam": dict(num_beams=3),
    "sampling": dict(do_sample=True, top_k=5),
}


@pytest.mark.parametrize("mode", DECODING_MODES)
def test_each_generated_token_costs_one_decoder_step(model, monkeypatch, mode):
    """The cache means every call after the first feeds exactly one new token to the decoder.

    The guard against transformers renaming the cache again: were `generate()` to pass the cache under a
    name `prepare_inputs_for_generation` does not read, each step would re-feed the whole prefix.
    """
    seen = []
    original = model.model.decoder.forward

    def spy(decoder_input_ids, cache):
        seen.append(decoder_input_ids.shape[1])
        return original(decoder_input_ids, cache)

    monkeypatch.setattr(model.model.decoder, "forward", spy)
    encoder_calls = []
    encoder = model.get_encoder()
    encoder.register_forward_hook(lambda *args: encoder_calls.append(1))
    model.generate(padded_batch([5, 3]), max_new_tokens=6, min_new_tokens=6, **DECODING_MODES[mode])
    assert seen == [1] * 6
    assert len(encoder_calls) == 1


def eos_prone(model, source, **kwargs):
    """Make EOS likely after a few tokens, so the batch's sequences end at different steps
    (three different ends, counting "not ended" as one, and at least two rows ending).

    A random, large EOS row of the (tied) output matrix makes the EOS logit depend on the decoder state;
    its bias is raised from "never" until the ends spread out. Deterministic for the fixture's seed.
    """
    eos = model.config.eos_token_id
    with torch.no_grad():
        model.lm_head.weight[eos] = (
            torch.randn(model.config.embedding_size, generator=torch.Generator().manual_seed(0)) * 6
        )
    for bias in torch.arange(-4.0, 8.0, 0.5):
        with torch.no_grad():
            model.lm_head.bias[eos] = bias
        out = model.generate(source, max_new_tokens=8, **kwargs)
        ends = [row.tolist().index(eos) if eos in row.tolist() else None for row in out]
        if len(set(ends)) >= 3 and ends.count(None) < len(ends) - 1:  # None: ran to max_new_tokens
            return out, ends
    raise AssertionError("no EOS bias gives sequences ending at different steps")


@pytest.mark.parametrize("kwargs", [dict(), dict(num_beams=3, length_penalty=0.6)], ids=["greedy", "beam"])
def test_batched_generation_with_sequences_ending_at_different_steps_equals_one_by_one(model, kwargs):
    lengths = [6, 2, 4, 5, 3]
    source = padded_batch(lengths)
    batched, _ = eos_prone(model, source, **kwargs)
    for row, length in enumerate(lengths):
        single = model.generate(source[row : row + 1, :length], max_new_tokens=8, **kwargs)
        assert torch.equal(batched[row : row + 1, : single.shape[1]], single)
        filler = torch.tensor([model.config.pad_token_id, model.config.eos_token_id])
        assert torch.isin(batched[row, single.shape[1] :], filler).all()  # only padding after its end


def test_generate_outputs_are_ordinary_tensors_usable_for_training(model):
    """Back-translation and RL loops train on generated ids: no inference tensors."""
    source = padded_batch([5, 3])
    generated = model.generate(source, max_new_tokens=5)
    assert not generated.is_inference()
    model.train()
    loss = model(input_ids=source, labels=generated[:, 1:]).loss
    loss.backward()
    assert model.lm_head.weight.grad is not None


def test_reorder_cache_selects_rows_of_every_tensor():
    from hf_seq2seq_attn.core.modeling_seq2seq_attn import Seq2SeqAttnCache

    keys = torch.randn(6, 1, 2, 3)
    values, mask = torch.randn(6, 1, 2, 5), torch.rand(6, 2) > 0.3
    hidden, cell, feed = torch.randn(2, 6, 4), torch.randn(2, 6, 4), torch.randn(6, 7)
    cache = Seq2SeqAttnCache(
        hidden=hidden, cell=cell, keys=keys, values=values, mask=mask, feed=feed, seen_tokens=3
    )
    order = torch.tensor([2, 2, 0, 1, 4, 5])
    cache.reorder_cache(order)
    assert torch.equal(cache.hidden, hidden[:, order]) and torch.equal(cache.cell, cell[:, order])
    assert torch.equal(cache.feed, feed[order]) and torch.equal(cache.keys, keys[order])
    assert torch.equal(cache.values, values[order]) and torch.equal(cache.mask, mask[order])
    assert cache.get_seq_length() == 3


def test_generation_steps_do_not_synchronise_with_the_host(model, monkeypatch):
    """No per-token `.item()`/`int(tensor)`/`torch.equal` in the model: count them during decoder steps."""
    source = padded_batch([5, 3])
    encoder_outputs = model.get_encoder()(source)
    cache = model.model.decoder.init_cache(encoder_outputs)
    calls = []
    for name in ("item", "__int__", "__bool__", "tolist"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name):
            calls.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, spy)
    monkeypatch.setattr(torch, "equal", lambda *args: calls.append("equal") or True)
    token = torch.full((2, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        for _ in range(3):
            out = model(
                encoder_outputs=encoder_outputs,
                decoder_input_ids=token,
                cache=cache,
                use_cache=True,
            )
            cache = out[CACHE_NAME]
            cache.reorder_cache(torch.tensor([1, 0]))
            token = out.logits[:, -1:].argmax(-1)
    assert calls == []
