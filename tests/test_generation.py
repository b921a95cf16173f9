"""generate(): greedy == argmax loop, beam(1) == greedy, cache on/off identical, batched == one-by-one."""

import pytest
import torch
from conftest import make_config, padded_batch

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration


@pytest.fixture(params=[("gru", "bahdanau", False, 1), ("lstm", "luong", True, 4), ("gru", "luong", False, 2)])
def model(request):
    rnn_type, style, feeding, heads = request.param
    torch.manual_seed(1)
    config = make_config(rnn_type=rnn_type, decoder_style=style, input_feeding=feeding, num_attention_heads=heads)
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


def test_one_beam_equals_greedy(model):
    source = padded_batch([5, 3, 4])
    greedy = model.generate(source, max_new_tokens=8)
    beam = model.generate(source, max_new_tokens=8, num_beams=1, early_stopping=True)
    assert torch.equal(greedy, beam)


def test_beam_search_same_with_and_without_cache(model):
    source = padded_batch([5, 3, 4])
    kwargs = dict(
        max_new_tokens=8, num_beams=4, num_return_sequences=2, return_dict_in_generate=True, output_scores=True
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
            single = model.generate(source[row : row + 1, :length], max_new_tokens=7, min_new_tokens=7, **kwargs)
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


def test_each_generated_token_costs_one_decoder_step(model, monkeypatch):
    """The cache means every call after the first feeds exactly one new token to the decoder."""
    seen = []
    original = model.model.decoder.forward

    def spy(decoder_input_ids, cache):
        seen.append(decoder_input_ids.shape[1])
        return original(decoder_input_ids, cache)

    monkeypatch.setattr(model.model.decoder, "forward", spy)
    encoder_calls = []
    encoder = model.get_encoder()
    encoder.register_forward_hook(lambda *args: encoder_calls.append(1))
    model.generate(padded_batch([5, 3]), max_new_tokens=6, min_new_tokens=6, num_beams=3)
    assert seen == [1] * 6
    assert len(encoder_calls) == 1


def test_reorder_cache_copies_keys_only_when_rows_of_different_sources_mix():
    from hf_seq2seq_attn.modeling_seq2seq_attn import Seq2SeqAttnCache

    keys = torch.arange(3.0).repeat_interleave(2)[:, None, None, None].expand(6, 1, 2, 3).contiguous()  # 3 sources x 2 beams
    mask = torch.ones(6, 2, dtype=torch.bool)
    cache = Seq2SeqAttnCache(torch.randn(1, 6, 4), None, keys, keys.clone(), mask, None)
    within = torch.tensor([1, 0, 2, 2, 5, 4])  # beams shuffled within each source
    cache.reorder_cache(within)
    assert cache.keys is keys  # nothing copied
    across = torch.tensor([2, 2, 0, 1, 4, 5])  # rows of source 1 replace those of source 0
    cache.reorder_cache(across)
    assert torch.equal(cache.keys, keys.index_select(0, across))
