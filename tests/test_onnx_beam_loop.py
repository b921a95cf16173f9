"""Beam search in one ONNX `Loop` graph: what `GenerationMixin` beam search gives, with no per-token Python.

As in `test_onnx_loop.py`, each comparison has three sides: the Loop graph, `GenerationMixin.generate()` over
the same step graph (`beam_loop = False`), and, for float32, the PyTorch model's `generate()`. Token ids and
beam indices are compared exactly. `sequences_scores` and the per-step scores are compared within 1e-5 (plus
4e-7 relative, a few float32 ulps, for the larger scores a negative length penalty makes): the Loop takes
log_softmax in ONNX Runtime (its own exp and log) instead of torch, so each step's log-probabilities may
differ in the last bit or two (about 2e-7 at these magnitudes), and a score sums up to ten of them, times
`length ** -length_penalty`.

A random tiny model's next-token distributions are nearly flat and barely depend on the state, so the
fixtures sharpen the vocabulary projection and shift the EOS bias: one model where hypotheses end at mixed
lengths (some cut at the length limit), one where EOS is frequent, so that the finished set, the length
penalty and the early-stopping heuristic decide what is returned. They also give the vocabulary projection
random biases, as a trained model has: with the initial zero biases, int8 logits (integer dot products times
one scale) often tie exactly, and tied candidates are the one place where the Loop and `GenerationMixin` may
part ways (see "Tie order" in `build_beam_graph`).
"""

import pytest
import torch
from helpers import make_config
from test_onnx import LENGTHS, _source
from test_onnx_loop import EOS, VARIANTS, _forward_calls, _loop_and_mixin, fallback_messages
from tiny_inference_model import SOURCES, build_tiny_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration  # noqa: E402
from hf_seq2seq_attn.core.modeling_seq2seq_attn import CACHE_NAME  # noqa: E402
from hf_seq2seq_attn.serving.modeling_ort import Seq2SeqAttnOnnxModel  # noqa: E402
from hf_seq2seq_attn.serving.onnx_export import export_onnx  # noqa: E402
from hf_seq2seq_attn.tools.inference import translate  # noqa: E402

MAX_NEW_TOKENS = 10
SHARPEN = 10.0  # scale of the vocabulary projection's weights
SCORE_ATOL, SCORE_RTOL = 1e-5, 4e-7
# generate() options, each run with return_dict_in_generate and output_scores (max_new_tokens defaults to
# MAX_NEW_TOKENS). Together: 2 to 5 beams, length penalties 1, 0, 2 and -0.5, n-best lists, every
# early_stopping value, min_new_tokens / min_length, two eos ids, and a limit short enough to cut every beam.
CASES = {
    "k2": dict(num_beams=2),
    "k3-lp0-n2": dict(num_beams=3, length_penalty=0.0, num_return_sequences=2),
    "k4-lp2-n4-short": dict(num_beams=4, length_penalty=2.0, num_return_sequences=4, max_new_tokens=3),
    "k5-lp-0.5-n3-min3": dict(num_beams=5, length_penalty=-0.5, num_return_sequences=3, min_new_tokens=3),
    "k3-early-n2": dict(num_beams=3, early_stopping=True, num_return_sequences=2),
    "k3-never": dict(num_beams=3, early_stopping="never"),  # runs longer than early_stopping=False
    "k4-never-lp-0.5-n2": dict(
        num_beams=4, early_stopping="never", length_penalty=-0.5, num_return_sequences=2
    ),
    "k4-min_length-two-eos": dict(num_beams=4, min_length=4, eos_token_id=[EOS, 7], num_return_sequences=3),
}


def _end_lengths(ids: torch.Tensor) -> set[int | None]:
    """The generated length of each hypothesis up to its EOS; None for one cut at the limit."""
    return {int((row[1:] == EOS).nonzero()[0]) + 1 if (row[1:] == EOS).any() else None for row in ids}


def _sharpened(overrides: dict, shift: float | None) -> Seq2SeqAttnForConditionalGeneration:
    """A variant with its vocabulary projection scaled by SHARPEN, random biases, and its EOS bias raised by
    `shift`; with `shift=None`, by the first tenth from -2 on that makes beam search (3 beams, 3 returned) on
    the padded batch end hypotheses at two lengths or more and cut others at the limit."""
    torch.manual_seed(0)
    model = Seq2SeqAttnForConditionalGeneration(make_config(**overrides)).eval()
    input_ids, attention_mask = _source()
    with torch.no_grad():
        model.lm_head.weight *= SHARPEN
        model.lm_head.bias.normal_(0.0, 0.3)  # nonzero, as trained: see the module docstring
        base = float(model.lm_head.bias[EOS])
        if shift is not None:
            model.lm_head.bias[EOS] = base + shift
            return model
        for tenth in range(-20, 31):
            model.lm_head.bias[EOS] = base + tenth / 10
            ids = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                num_beams=3,
                num_return_sequences=3,
                max_new_tokens=MAX_NEW_TOKENS,
            )
            lengths = _end_lengths(ids)
            if None in lengths and len(lengths) >= 3:
                return model
    raise AssertionError("no EOS shift gives mixed endings")


def _export(model, tmp_path_factory):
    folder = export_onnx(model, tmp_path_factory.mktemp("onnx"), int8=True)
    fp32 = Seq2SeqAttnOnnxModel.from_pretrained(folder, int8=False, num_threads=1)
    int8 = Seq2SeqAttnOnnxModel.from_pretrained(folder, int8=True, num_threads=1)
    return model, fp32, int8


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def exported(request, tmp_path_factory):
    """(PyTorch model, fp32 ONNX model, int8 ONNX model) of one variant, hypotheses ending at mixed lengths."""
    return _export(_sharpened(VARIANTS[request.param], None), tmp_path_factory)


@pytest.fixture(scope="module", params=["gru-bahdanau-L1", "lstm-feeding-L1"])
def frequent_eos(request, tmp_path_factory):
    """As `exported`, with EOS frequent: most beams end within a few steps."""
    return _export(_sharpened(VARIANTS[request.param], 1.0), tmp_path_factory)


def _assert_same_beam_output(loop, mixin) -> None:
    """The Loop's `GenerateBeamEncoderDecoderOutput` is the one `GenerationMixin` returns."""
    assert type(loop) is type(mixin)
    assert torch.equal(loop.sequences, mixin.sequences), (loop.sequences, mixin.sequences)
    assert loop.beam_indices.dtype == mixin.beam_indices.dtype
    assert torch.equal(loop.beam_indices, mixin.beam_indices)
    torch.testing.assert_close(
        loop.sequences_scores, mixin.sequences_scores, atol=SCORE_ATOL, rtol=SCORE_RTOL
    )
    assert len(loop.scores) == len(mixin.scores)  # as many steps
    for got, expected in zip(loop.scores, mixin.scores, strict=True):
        finite = torch.isfinite(expected)
        assert torch.equal(torch.isfinite(got), finite)  # the same -inf (min length)
        assert torch.equal(got[~finite], expected[~finite])
        torch.testing.assert_close(got[finite], expected[finite], atol=SCORE_ATOL, rtol=SCORE_RTOL)
    assert loop.logits is mixin.logits is None and loop.cross_attentions is None


def _compare(model, fp32, int8, monkeypatch, **kwargs):
    """Loop == GenerationMixin on both graphs, and == PyTorch ids on fp32; returns the fp32 Loop output."""
    kwargs = dict(max_new_tokens=MAX_NEW_TOKENS, return_dict_in_generate=True, output_scores=True) | kwargs
    loop, mixin = _loop_and_mixin(fp32, monkeypatch, **kwargs)
    _assert_same_beam_output(loop, mixin)
    expected = model.generate(**kwargs)
    assert torch.equal(loop.sequences, expected.sequences), (loop.sequences, expected.sequences)
    assert torch.equal(loop.beam_indices, expected.beam_indices)
    _assert_same_beam_output(*_loop_and_mixin(int8, monkeypatch, **kwargs))
    return loop


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_beam_loop_identical_to_generation_mixin_and_pytorch(exported, monkeypatch, case):
    model, fp32, int8 = exported
    input_ids, attention_mask = _source()
    loop = _compare(
        model, fp32, int8, monkeypatch, input_ids=input_ids, attention_mask=attention_mask, **CASES[case]
    )
    # a source alone (batch 1, no padding)
    row = 2
    _compare(
        model,
        fp32,
        int8,
        monkeypatch,
        input_ids=input_ids[row : row + 1, : LENGTHS[row]],
        attention_mask=attention_mask[row : row + 1, : LENGTHS[row]],
        **CASES[case],
    )
    assert loop.sequences.shape[0] == len(LENGTHS) * CASES[case].get("num_return_sequences", 1)


def test_the_mixed_model_ends_hypotheses_at_several_lengths_and_cuts_others(exported):
    """What the comparisons above see: hypotheses that end at different lengths and hypotheses cut at the
    limit, so the finished set is filled and replaced."""
    _, fp32, _ = exported
    input_ids, attention_mask = _source()
    lengths = set()
    for options in CASES.values():
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=MAX_NEW_TOKENS)
        lengths |= _end_lengths(fp32.generate(**(kwargs | options)))
    assert None in lengths and len(lengths - {None}) >= 3, lengths


def test_beam_loop_with_frequent_eos(frequent_eos, monkeypatch):
    """EOS among the best candidates at most steps: many hypotheses finish, the finished set is replaced, and
    the early-stopping heuristic (or `early_stopping=True`) ends most searches before the limit."""
    model, fp32, int8 = frequent_eos
    input_ids, attention_mask = _source()
    steps, lengths = set(), set()
    for options in CASES.values():
        loop = _compare(
            model, fp32, int8, monkeypatch, input_ids=input_ids, attention_mask=attention_mask, **options
        )
        steps.add(len(loop.scores))
        lengths |= _end_lengths(loop.sequences)
    assert MAX_NEW_TOKENS in steps and min(steps) < MAX_NEW_TOKENS - 5, steps
    assert len(lengths - {None}) >= 3, lengths


def test_beam_loop_returns_the_cache_generate_returns(frequent_eos, monkeypatch):
    """The running beams' state after the last step. (Stopped at the length limit, those beams are chosen
    among tied masked scores, whose order torch leaves open: compared here where the search stops earlier.)"""
    _, fp32, _ = frequent_eos
    input_ids, attention_mask = _source()
    kwargs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        num_beams=3,
        early_stopping=True,  # stops within a few steps (the heuristic alone may run to the limit)
        max_new_tokens=MAX_NEW_TOKENS,
        return_dict_in_generate=True,
    )
    loop, mixin = _loop_and_mixin(fp32, monkeypatch, **kwargs)
    assert torch.equal(loop.sequences, mixin.sequences) and torch.equal(loop.beam_indices, mixin.beam_indices)
    assert loop.sequences_scores is mixin.sequences_scores is None  # only with output_scores
    assert loop.scores is mixin.scores is None
    got, expected = loop[CACHE_NAME], mixin[CACHE_NAME]
    assert got.seen_tokens == expected.seen_tokens < MAX_NEW_TOKENS
    assert sorted(got.states) == sorted(expected.states)
    for name, value in expected.states.items():
        torch.testing.assert_close(
            torch.from_numpy(got.states[name]), torch.from_numpy(value), atol=1e-6, rtol=0
        )
    assert (got.mask == expected.mask).all()


def test_beam_loop_returns_ids_and_logits(exported, monkeypatch):
    """Without `return_dict_in_generate`: the ids tensor; with `output_logits`: the raw logits per step."""
    model, fp32, _ = exported
    input_ids, attention_mask = _source()
    kwargs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        num_beams=3,
        num_return_sequences=3,  # as the fixture's calibration: some end early, some are cut
        max_new_tokens=MAX_NEW_TOKENS,
    )
    loop, mixin = _loop_and_mixin(fp32, monkeypatch, **kwargs)
    assert torch.equal(loop, mixin) and torch.equal(loop, model.generate(**kwargs))
    # `_beam_search` fills after the end with `pad_token_id or eos_token_id[0]`: EOS, as the pad id is 0
    ended = [(row, int((row == EOS).nonzero()[0])) for row in loop if (row == EOS).any()]
    assert any(end < loop.shape[1] - 1 for _, end in ended)
    assert all((row[end:] == EOS).all() for row, end in ended)
    loop, mixin = _loop_and_mixin(
        fp32, monkeypatch, **kwargs, return_dict_in_generate=True, output_logits=True
    )
    assert torch.equal(loop.sequences, mixin.sequences) and loop.scores is None
    for got, expected in zip(loop.logits, mixin.logits, strict=True):
        # the same step graph's logits on the same rows in this process: equal bit for bit here (both
        # sides run on this machine; ids can only be identical if these are)
        assert torch.equal(got, expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),  # the model's generation config: max_length 20
        dict(max_length=5),  # counts the decoder start token
        dict(eos_token_id=[EOS, 7]),
        dict(pad_token_id=5),  # fills with 5 after the end (with pad 0, with the first eos id)
        dict(decoder_start_token_id=4),
    ],
    ids=["default-length", "max_length", "two-eos", "pad", "start"],
)
def test_beam_loop_resolves_lengths_and_special_tokens_as_generate(exported, monkeypatch, kwargs):
    _, fp32, _ = exported
    input_ids, attention_mask = _source()
    fp32.generation_config.max_new_tokens = None
    loop, mixin = _loop_and_mixin(
        fp32, monkeypatch, input_ids=input_ids, attention_mask=attention_mask, num_beams=3, **kwargs
    )
    assert torch.equal(loop, mixin), kwargs


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        (dict(no_repeat_ngram_size=2), "no_repeat_ngram_size=2"),
        (dict(do_sample=True, top_k=5), "do_sample=True"),
        (dict(repetition_penalty=1.3), "repetition_penalty=1.3"),
        (dict(bad_words_ids=[[5]]), "bad_words_ids=[[5]]"),
        (dict(output_attentions=True, return_dict_in_generate=True), "output_attentions=True"),
        (dict(num_beams=12), "beams_to_keep=24"),  # 23 ids: see "Tie order" in `build_beam_graph`
    ],
    ids=["no_repeat_ngram", "sampling", "repetition_penalty", "bad_words", "attentions", "vocabulary"],
)
def test_other_beam_requests_fall_back_and_log_once(tmp_path, monkeypatch, caplog, kwargs, reason):
    torch.manual_seed(0)
    model = Seq2SeqAttnForConditionalGeneration(make_config()).eval()
    messages = fallback_messages(model, tmp_path, monkeypatch, caplog, dict(num_beams=3) | kwargs)
    assert len(messages) == 1 and "beam-search ONNX Loop" in messages[0] and reason in messages[0], messages


def test_translate_with_beams_uses_the_loop(tmp_path, monkeypatch):
    """`translate` (and so `translate --backend onnx`, whose default is 5 beams) asks for
    `return_dict_in_generate`, and with `--scores` for `output_scores`: both run in the Loop."""
    from hf_seq2seq_attn.serving.modeling_ort import load_onnx_model_and_tokenizer

    model, tokenizer = build_tiny_model()
    onnx_model, onnx_tokenizer = load_onnx_model_and_tokenizer(
        export_onnx(model, tmp_path / "onnx", tokenizer=tokenizer), num_threads=1
    )
    for kwargs in (dict(), dict(num_beams=3, num_return_sequences=2, output_scores=True, length_penalty=0.5)):
        with _forward_calls(onnx_model, monkeypatch) as calls:
            got = translate(onnx_model, onnx_tokenizer, SOURCES, max_new_tokens=6, **kwargs)
        assert not calls
        expected = translate(model, tokenizer, SOURCES, max_new_tokens=6, **kwargs)
        assert [t.texts for t in got] == [t.texts for t in expected]
        if kwargs:
            for got_one, expected_one in zip(got, expected, strict=True):
                assert got_one.scores == pytest.approx(expected_one.scores, abs=SCORE_ATOL)
