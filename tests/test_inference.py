"""Inference helpers: loading, batched translation in input order, n-best and scores, attention maps."""

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_inference_model import SOURCES, build_tiny_model, save_tiny_model

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core.modeling_seq2seq_attn import CACHE_NAME
from hf_seq2seq_attn.tools.inference import Translation, attention_for, load_model_and_tokenizer, translate
from hf_seq2seq_attn.training.data import group_references

# Lengths differ, so sorting by length reorders them; "" exercises a source that is only </s>.
SENTENCES = ["el gato negro", "", "hola mundo", "gracias amigo hola mundo", "buenos"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def loaded(folder):
    return load_model_and_tokenizer(folder)


def test_load_returns_eval_model_and_tokenizer(loaded):
    model, tokenizer = loaded
    assert isinstance(model, Seq2SeqAttnForConditionalGeneration)
    assert not model.training
    assert tokenizer.pad_token_id == model.config.pad_token_id == 0
    assert len(tokenizer) == model.config.vocab_size


def test_load_errors_name_what_is_missing(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="No model folder"):
        load_model_and_tokenizer(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model_and_tokenizer(str(tmp_path))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(Path(folder, "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_model_and_tokenizer(str(no_weights))
    model, _ = build_tiny_model()
    no_tokenizer = tmp_path / "no_tokenizer"
    model.save_pretrained(no_tokenizer)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_model_and_tokenizer(str(no_tokenizer))
    with pytest.raises(ValueError, match="device"):
        load_model_and_tokenizer(folder, device="not-a-device")


def test_translate_keeps_input_order_across_sorted_batches(loaded):
    model, tokenizer = loaded
    # A fixed length limit: the default one follows each batch's longest source.
    batched = translate(model, tokenizer, SENTENCES, batch_size=2, num_beams=1, max_new_tokens=6)
    one_by_one = [
        translate(model, tokenizer, [sentence], num_beams=1, max_new_tokens=6)[0] for sentence in SENTENCES
    ]
    assert batched == one_by_one
    assert all(isinstance(result, Translation) for result in batched)
    assert all(isinstance(result.text, str) and result.texts == (result.text,) for result in batched)
    assert all(result.scores is None and result.score is None for result in batched)  # none asked for
    assert len({result.text for result in batched}) > 1  # otherwise a shuffled order could not be noticed


def test_translate_empty_list_and_bad_inputs(loaded):
    model, tokenizer = loaded
    assert translate(model, tokenizer, []) == []
    with pytest.raises(TypeError, match="list of strings"):
        translate(model, tokenizer, "hola mundo")
    with pytest.raises(ValueError, match="num_beams"):
        translate(model, tokenizer, SOURCES, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="do_sample"):
        translate(model, tokenizer, SOURCES, top_k=5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        translate(model, tokenizer, SOURCES, max_new_tokens=0)
    with pytest.raises(TypeError, match="output_logits"):
        translate(model, tokenizer, SOURCES, output_logits=True)
    with pytest.raises(TypeError, match="positional"):
        translate(model, tokenizer, SOURCES, 2)  # batch_size and the generate() options are keywords


def test_beam_nbest_shapes_and_descending_scores(loaded):
    model, tokenizer = loaded
    results = translate(
        model, tokenizer, SENTENCES, batch_size=2, num_beams=4, num_return_sequences=3, output_scores=True
    )
    assert len(results) == len(SENTENCES)
    for nbest in results:
        assert len(nbest.texts) == 3 and nbest.scores is not None and len(nbest.scores) == 3
        assert all(isinstance(text, str) for text in nbest.texts)
        assert list(nbest.scores) == sorted(nbest.scores, reverse=True)
        assert all(score < 0 for score in nbest.scores)
        assert (nbest.text, nbest.score) == (nbest.texts[0], nbest.scores[0])
    plain = translate(model, tokenizer, SENTENCES, batch_size=2, num_beams=4, num_return_sequences=3)
    assert [nbest.texts for nbest in plain] == [nbest.texts for nbest in results]
    assert all(nbest.scores is None for nbest in plain)
    # The best beam hypothesis is what plain beam search returns.
    best = translate(model, tokenizer, SENTENCES, batch_size=2, num_beams=4)
    assert [result.texts for result in best] == [(nbest.text,) for nbest in results]


def test_greedy_score_is_mean_token_log_prob_under_teacher_forcing(loaded):
    model, tokenizer = loaded
    sentence = "el gato negro"
    (result,) = translate(model, tokenizer, [sentence], num_beams=1, max_new_tokens=6, output_scores=True)
    text, score = result.text, result.score
    sequence = model.generate(**tokenizer([sentence], return_tensors="pt"), max_new_tokens=6)[0]  # (1 + T,)
    generated = sequence[1:]
    eos = (generated == tokenizer.eos_token_id).nonzero()
    length = int(eos[0]) + 1 if len(eos) else len(generated)
    with torch.no_grad():
        logits = model(
            **tokenizer([sentence], return_tensors="pt"), decoder_input_ids=sequence[None, :-1]
        ).logits
    log_probs = torch.log_softmax(logits[0], dim=-1).gather(1, generated[:, None])[:length, 0]
    assert text == tokenizer.decode(generated, skip_special_tokens=True)
    assert score == pytest.approx(log_probs.mean().item(), abs=1e-5)


@pytest.mark.parametrize("decoder_vocab_size", [12, 40])  # fewer and more target than source tokens (26)
def test_greedy_and_sampled_scores_with_a_separate_decoder_vocabulary(decoder_vocab_size):
    model, tokenizer = build_tiny_model(decoder_vocab_size=decoder_vocab_size)
    assert model.config.vocab_size == len(tokenizer) != decoder_vocab_size
    sentences = ["el gato negro", "hola mundo", "buenos dias"]  # longest first: translate keeps this order
    batch = tokenizer(sentences, padding=True, padding_side="right", return_tensors="pt")
    for do_sample in (False, True):
        torch.manual_seed(1)
        scored = translate(
            model,
            tokenizer,
            sentences,
            num_beams=1,
            do_sample=do_sample,
            max_new_tokens=5,
            output_scores=True,
        )
        torch.manual_seed(1)  # the same samples again, from generate() itself
        sequences = model.generate(**batch, do_sample=do_sample, num_beams=1, max_new_tokens=5)  # (B, 1 + T)
        with torch.no_grad():
            logits = model(**batch, decoder_input_ids=sequences[:, :-1]).logits  # (B, T, decoder V)
        assert logits.shape[-1] == decoder_vocab_size
        log_probs = torch.log_softmax(logits, dim=-1).gather(2, sequences[:, 1:, None])[..., 0]  # (B, T)
        for row, result in enumerate(scored):
            text, score = result.text, result.score
            generated = sequences[row, 1:]
            ends = (generated == tokenizer.eos_token_id).nonzero()
            length = int(ends[0]) + 1 if len(ends) else len(generated)
            assert text == tokenizer.decode(generated, skip_special_tokens=True)
            assert score == pytest.approx(log_probs[row, :length].mean().item(), abs=1e-5), (do_sample, row)


def test_sampling_nbest_is_scored_and_sorted(loaded):
    model, tokenizer = loaded
    torch.manual_seed(0)
    results = translate(
        model,
        tokenizer,
        SOURCES,
        num_beams=1,
        do_sample=True,
        top_k=10,
        top_p=0.9,
        temperature=1.5,
        num_return_sequences=3,
        output_scores=True,
    )
    assert [len(nbest.texts) for nbest in results] == [3] * len(SOURCES)
    for nbest in results:
        assert nbest.scores is not None and len(nbest.scores) == 3
        assert list(nbest.scores) == sorted(nbest.scores, reverse=True)


def test_progress_bar_goes_to_stderr(loaded, capsys):
    model, tokenizer = loaded
    translate(model, tokenizer, SOURCES, num_beams=1, max_new_tokens=2, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{len(SOURCES)}/{len(SOURCES)}" in captured.err


@pytest.mark.parametrize("num_heads", [1, 2])
def test_attention_for_matches_the_greedy_translation(num_heads):
    overrides = {"num_attention_heads": 2, "attention_size": 8} if num_heads == 2 else {}
    model, tokenizer = build_tiny_model(**overrides)
    sentence = "el gato negro"
    weights, source_tokens, output_tokens = attention_for(model, tokenizer, sentence, max_new_tokens=7)
    assert source_tokens == ["el", "gato", "negro", "</s>"]
    assert isinstance(weights, np.ndarray)
    assert weights.shape == (num_heads, len(output_tokens), len(source_tokens))
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
    expected = translate(model, tokenizer, [sentence], num_beams=1, max_new_tokens=7)[0].text
    words = [token for token in output_tokens if token != "</s>"]
    assert " ".join(words) == expected
    assert 1 <= len(output_tokens) <= 7
    assert "</s>" not in output_tokens[:-1]

    # Row t is the attention of the step that predicted output token t: decoding step by step gives it too.
    encoded = tokenizer([sentence], return_tensors="pt")
    ids = torch.tensor([[model.config.decoder_start_token_id]])
    stepwise = []
    with torch.no_grad():
        outputs = model(**encoded, decoder_input_ids=ids, use_cache=True, output_attentions=True)
        for token in tokenizer.convert_tokens_to_ids(output_tokens):
            stepwise.append(outputs.cross_attentions[0][0, :, -1])  # (N, S)
            outputs = model(
                **encoded,
                decoder_input_ids=torch.tensor([[token]]),
                cache=outputs[CACHE_NAME],
                use_cache=True,
                output_attentions=True,
            )
    np.testing.assert_allclose(weights, torch.stack(stepwise, dim=1).numpy(), atol=1e-5)


def test_group_references_keeps_first_seen_order():
    sources, references = group_references(
        ["read", "cat", "read", "read"], ["R IY1 D", "K AE1 T", "R EH1 D", "R IY1 D"]
    )
    assert sources == ["read", "cat"]
    assert references == [["R IY1 D", "R EH1 D"], ["K AE1 T"]]
