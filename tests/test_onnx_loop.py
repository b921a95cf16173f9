"""Greedy decoding in one ONNX `Loop` graph: the same ids as `GenerationMixin` greedy search, no per-token Python.

Each comparison has three sides: the Loop graph, `GenerationMixin.generate()` over the same step graph
(`greedy_loop = beam_loop = False`), and, for float32, the PyTorch model's `generate()`. Token ids are compared
exactly. Beam search in a Loop is tested in `test_onnx_beam_loop.py`.
A spy on `forward` tells which path ran: `GenerationMixin` calls it once per token, the Loop never.
"""

import contextlib
import json
import logging

import pytest
import torch
from helpers import make_config, padded_batch
from test_onnx import LENGTHS, _source
from tiny_inference_model import SOURCES, build_tiny_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration  # noqa: E402
from hf_seq2seq_attn.core.modeling_seq2seq_attn import CACHE_NAME  # noqa: E402
from hf_seq2seq_attn.serving.modeling_ort import Seq2SeqAttnOnnxModel  # noqa: E402
from hf_seq2seq_attn.serving.onnx_export import export_onnx  # noqa: E402
from hf_seq2seq_attn.tools.inference import translate  # noqa: E402

MAX_NEW_TOKENS = 10
EOS = 2
# Both decoder styles (Luong with input feeding), GRU and LSTM (whose state has a cell), one and two layers.
VARIANTS = {
    "gru-bahdanau-L1": dict(),
    "lstm-bahdanau-L2": dict(rnn_type="lstm", decoder_layers=2, num_attention_heads=2),
    "gru-feeding-L2": dict(
        attention_type="general", decoder_style="luong", input_feeding=True, decoder_layers=2
    ),
    "lstm-feeding-L1": dict(rnn_type="lstm", attention_type="dot", decoder_style="luong", input_feeding=True),
}


def _ends(ids: torch.Tensor) -> list[bool]:
    """Per row: whether it emitted EOS (and was not cut at the length limit)."""
    return [bool((row[1:] == EOS).any()) for row in ids]


def _with_mixed_endings(model) -> None:
    """Shift the EOS logit so that on the padded batch some rows end before `MAX_NEW_TOKENS` and the others are
    cut: a random tiny model's EOS logit otherwise wins in every row at once or in none.

    With EOS pushed far down no row ends; on that trajectory, a row ends (at the first step where it does) once
    the shift exceeds its smallest margin between the best token and EOS. Shifting to between the second and
    third smallest margins ends two rows of five.
    """
    input_ids, attention_mask = _source()
    with torch.no_grad():
        model.lm_head.bias[EOS] -= 100.0
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=MAX_NEW_TOKENS,
            return_dict_in_generate=True,
            output_logits=True,
        )
        logits = torch.stack(output.logits)  # (T, B, V)
        margins = (logits.max(dim=-1).values - logits[..., EOS]).min(dim=0).values.sort().values  # (B,)
        model.lm_head.bias[EOS] += float(margins[1] + margins[2]) / 2
    ends = _ends(
        model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=MAX_NEW_TOKENS)
    )
    assert any(ends) and not all(ends), ends


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def exported(request, tmp_path_factory):
    """(PyTorch model, fp32 ONNX model, int8 ONNX model) of one variant."""
    torch.manual_seed(0)
    model = Seq2SeqAttnForConditionalGeneration(make_config(**VARIANTS[request.param])).eval()
    _with_mixed_endings(model)
    folder = export_onnx(model, tmp_path_factory.mktemp("onnx"), int8=True)
    fp32 = Seq2SeqAttnOnnxModel.from_pretrained(folder, int8=False, num_threads=1)
    int8 = Seq2SeqAttnOnnxModel.from_pretrained(folder, int8=True, num_threads=1)
    return model, fp32, int8


@contextlib.contextmanager
def _forward_calls(onnx_model, monkeypatch):
    """Counts `forward` calls (one per token under `GenerationMixin`, none in the Loop)."""
    calls = []
    original = onnx_model.forward

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(onnx_model, "forward", spy)
        yield calls


def _loop_and_mixin(onnx_model, monkeypatch, **kwargs):
    """`generate(**kwargs)` through a Loop (checked that it ran) and through `GenerationMixin`."""
    with _forward_calls(onnx_model, monkeypatch) as calls:
        loop = onnx_model.generate(**kwargs)
    assert not calls, "plain greedy search and beam search must run in a Loop graph"
    onnx_model.greedy_loop = onnx_model.beam_loop = False
    try:
        with _forward_calls(onnx_model, monkeypatch) as calls:
            mixin = onnx_model.generate(**kwargs)
        assert calls
    finally:
        onnx_model.greedy_loop = onnx_model.beam_loop = True
    return loop, mixin


def _batches():
    """The padded batch, then each of its rows alone (batch 1, no padding)."""
    input_ids, attention_mask = _source()
    yield input_ids, attention_mask
    for row, length in enumerate(LENGTHS):
        yield input_ids[row : row + 1, :length], attention_mask[row : row + 1, :length]


def test_loop_ids_identical_to_generation_mixin_and_pytorch(exported, monkeypatch):
    model, fp32, int8 = exported
    ends_seen = set()
    for input_ids, attention_mask in _batches():
        for max_new_tokens in (3, MAX_NEW_TOKENS):
            kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens)
            expected = model.generate(**kwargs)
            loop, mixin = _loop_and_mixin(fp32, monkeypatch, **kwargs)
            assert torch.equal(loop, mixin) and torch.equal(loop, expected), (loop, expected)
            loop, mixin = _loop_and_mixin(int8, monkeypatch, **kwargs)
            assert torch.equal(loop, mixin), (loop, mixin)
            if max_new_tokens == MAX_NEW_TOKENS:
                ends_seen.update(_ends(expected))
    assert ends_seen == {True, False}, "rows that end and rows cut at max_new_tokens"


def test_loop_returns_the_dict_and_cache_generate_returns(exported, monkeypatch):
    _, fp32, _ = exported
    input_ids, attention_mask = _source()
    kwargs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=MAX_NEW_TOKENS,
        return_dict_in_generate=True,
    )
    loop, mixin = _loop_and_mixin(fp32, monkeypatch, **kwargs)
    assert type(loop) is type(mixin) and torch.equal(loop.sequences, mixin.sequences)
    assert loop.scores is None and loop.cross_attentions is None
    got, expected = loop[CACHE_NAME], mixin[CACHE_NAME]
    assert got.seen_tokens == expected.seen_tokens == loop.sequences.shape[1] - 1
    assert sorted(got.states) == sorted(expected.states)
    for name, value in expected.states.items():
        torch.testing.assert_close(
            torch.from_numpy(got.states[name]), torch.from_numpy(value), atol=1e-6, rtol=0
        )


def fallback_messages(model, tmp_path, monkeypatch, caplog, kwargs) -> list[str]:
    """Export `model`, generate twice with `kwargs` (plus the padded source, 6 new tokens): each call goes
    through `GenerationMixin.generate()` (forward is called) and gives PyTorch's ids. Returns the log's
    "ONNX Loop (...)" messages, for the caller to check that the reason was logged once."""
    onnx_model = Seq2SeqAttnOnnxModel.from_pretrained(export_onnx(model, tmp_path / "onnx"), num_threads=1)
    input_ids, attention_mask = _source()
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6) | kwargs
    with caplog.at_level(logging.INFO, logger="hf_seq2seq_attn.serving.modeling_ort"):
        for _ in range(2):
            with _forward_calls(onnx_model, monkeypatch) as calls:
                torch.manual_seed(3)
                got = onnx_model.generate(**kwargs)
            assert calls, "GenerationMixin.generate() decodes this request"
    torch.manual_seed(3)
    expected = model.generate(**kwargs)
    if kwargs.get("return_dict_in_generate"):
        got, expected = got.sequences, expected.sequences
    assert torch.equal(got, expected)
    return [record.getMessage() for record in caplog.records if "ONNX Loop (" in record.getMessage()]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),  # the model's generation config: max_length 20
        dict(max_length=5),  # counts the decoder start token
        dict(eos_token_id=[EOS, 7]),  # several end ids
        dict(pad_token_id=5),
        dict(decoder_start_token_id=4),
    ],
    ids=["default-length", "max_length", "two-eos", "pad", "start"],
)
def test_loop_resolves_lengths_and_special_tokens_as_generate(exported, monkeypatch, kwargs):
    _, fp32, _ = exported
    input_ids, attention_mask = _source()
    fp32.generation_config.max_new_tokens = None
    loop, mixin = _loop_and_mixin(
        fp32, monkeypatch, input_ids=input_ids, attention_mask=attention_mask, **kwargs
    )
    assert torch.equal(loop, mixin), kwargs


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        (dict(num_beams=3, do_sample=True), "do_sample=True"),  # beam sampling: the beam-search Loop refuses
        (dict(min_length=5), "min_length=5"),
        (dict(min_new_tokens=3), "min_new_tokens=3"),
        (dict(no_repeat_ngram_size=2), "no_repeat_ngram_size=2"),
        (dict(do_sample=True, top_k=5), "do_sample=True"),
        (dict(return_dict_in_generate=True, output_scores=True), "output_scores=True"),
        (dict(output_attentions=True, return_dict_in_generate=True), "output_attentions=True"),
    ],
    ids=[
        "beam-sampling",
        "min_length",
        "min_new_tokens",
        "no_repeat_ngram",
        "sampling",
        "scores",
        "attentions",
    ],
)
def test_other_requests_fall_back_and_log_once(tmp_path, monkeypatch, caplog, kwargs, reason):
    torch.manual_seed(0)
    model = Seq2SeqAttnForConditionalGeneration(make_config()).eval()
    messages = fallback_messages(model, tmp_path, monkeypatch, caplog, kwargs)
    assert len(messages) == 1 and reason in messages[0], messages


def test_folder_without_greedy_graph_on_disk_uses_the_loop(tmp_path, monkeypatch):
    """The Loop graph is composed in memory: the export folder and its manifest are what they were before
    (folders exported earlier are the same files), and greedy search still runs in the Loop."""
    torch.manual_seed(0)
    model = Seq2SeqAttnForConditionalGeneration(make_config(rnn_type="lstm")).eval()
    folder = export_onnx(model, tmp_path / "onnx", int8=True)
    manifest = json.loads((folder / "onnx_config.json").read_text())
    assert manifest["format_version"] == 1
    assert (
        sorted(manifest["graphs"]["int8"])
        == sorted(manifest["graphs"]["fp32"])
        == [
            "decoder_init",
            "decoder_step",
            "encoder",
        ]
    )
    assert sorted(path.name for path in folder.glob("*.onnx")) == sorted(
        f"{name}{suffix}.onnx"
        for name in ("encoder", "decoder_init", "decoder_step")
        for suffix in ("", ".int8")
    )
    onnx_model = Seq2SeqAttnOnnxModel.from_pretrained(folder, int8=False, num_threads=1)
    input_ids, attention_mask = _source()
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6)
    loop, mixin = _loop_and_mixin(onnx_model, monkeypatch, **kwargs)
    assert torch.equal(loop, mixin) and torch.equal(loop, model.generate(**kwargs))


def test_translate_uses_the_loop(tmp_path, monkeypatch):
    """`translate` (and so `translate --backend onnx`) asks for `return_dict_in_generate` without scores."""
    from hf_seq2seq_attn.serving.modeling_ort import load_onnx_model_and_tokenizer

    model, tokenizer = build_tiny_model()
    onnx_model, onnx_tokenizer = load_onnx_model_and_tokenizer(
        export_onnx(model, tmp_path / "onnx", tokenizer=tokenizer), num_threads=1
    )
    with _forward_calls(onnx_model, monkeypatch) as calls:
        got = translate(onnx_model, onnx_tokenizer, SOURCES, num_beams=1, max_new_tokens=6)
    assert not calls
    assert got == translate(model, tokenizer, SOURCES, num_beams=1, max_new_tokens=6)


def test_int8_loop_on_a_larger_vocabulary(tmp_path, monkeypatch):
    """int8 activations are quantized per batch: finished rows must keep being fed (the pad id) as in
    `generate()`, or the other rows' scales, and so their ids, could change."""
    torch.manual_seed(0)
    config = make_config(
        vocab_size=400, embedding_size=64, encoder_hidden_size=32, decoder_hidden_size=64, attention_size=64
    )
    model = Seq2SeqAttnForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.bias[EOS] += 1.5
    onnx_model = Seq2SeqAttnOnnxModel.from_pretrained(
        export_onnx(model, tmp_path / "onnx", int8=True), num_threads=1
    )
    assert onnx_model.int8
    input_ids = padded_batch(LENGTHS, vocab_size=400, generator=torch.Generator().manual_seed(1))
    kwargs = dict(input_ids=input_ids, attention_mask=(input_ids != 0).long(), max_new_tokens=12)
    loop, mixin = _loop_and_mixin(onnx_model, monkeypatch, **kwargs)
    assert torch.equal(loop, mixin)


@pytest.mark.parametrize("name", ["bahdanau_gru", "luong_lstm_multihead"])
def test_models_saved_by_an_older_version_export_and_use_the_loop(name, tmp_path, monkeypatch):
    """The folders of `test_saved_models.py` (saved by commit 9c82b3b) give their recorded greedy ids."""
    from test_saved_models import EXPECTED, _load

    from hf_seq2seq_attn.serving.modeling_ort import load_onnx_model_and_tokenizer

    model, tokenizer = _load(name)
    onnx_model, onnx_tokenizer = load_onnx_model_and_tokenizer(
        export_onnx(model, tmp_path / "onnx", tokenizer=tokenizer), num_threads=1
    )
    batch = onnx_tokenizer(EXPECTED["sentences"], return_tensors="pt", padding=True)
    loop, mixin = _loop_and_mixin(
        onnx_model, monkeypatch, **batch, max_new_tokens=12, do_sample=False, num_beams=1
    )
    assert loop.tolist() == mixin.tolist() == EXPECTED["expected"][name]["greedy"]


def test_without_the_onnx_package_greedy_falls_back(tmp_path, monkeypatch, caplog):
    """A serving image may hold onnxruntime alone: greedy search then runs as before, it does not fail."""
    import importlib.util

    torch.manual_seed(0)
    model = Seq2SeqAttnForConditionalGeneration(make_config()).eval()
    onnx_model = Seq2SeqAttnOnnxModel.from_pretrained(export_onnx(model, tmp_path / "onnx"), num_threads=1)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else find_spec(name, *a)
    )
    input_ids, attention_mask = _source()
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6)
    with (
        caplog.at_level(logging.INFO, logger="hf_seq2seq_attn.serving.modeling_ort"),
        _forward_calls(onnx_model, monkeypatch) as calls,
    ):
        got = onnx_model.generate(**kwargs)
    assert calls and torch.equal(got, model.generate(**kwargs))
    assert "`onnx` package" in caplog.text
