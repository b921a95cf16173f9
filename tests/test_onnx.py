"""ONNX export and the ONNX Runtime model: same numbers and the same generate() as PyTorch.

Tolerance: float32 logits and attention weights are compared within 1e-4 absolute. ONNX Runtime's
kernels (MLAS) sum in a different order from torch's, so the last bits differ (observed ~1e-7 on
these tiny models); 1e-4 leaves room for other CPUs' BLAS while still catching any real difference
(a wrong gate order, mask or state moves logits by 1e-2 or more). Token ids are compared exactly.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
import torch
from helpers import make_config, padded_batch
from tiny_inference_model import SOURCES, build_tiny_model, save_tiny_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration, cli
from hf_seq2seq_attn.cli import export_main as main  # noqa: E402
from hf_seq2seq_attn.core.modeling_seq2seq_attn import CACHE_NAME  # noqa: E402
from hf_seq2seq_attn.core.pipeline_seq2seq_attn import Seq2SeqAttnTranslationPipeline  # noqa: E402
from hf_seq2seq_attn.serving.modeling_ort import (  # noqa: E402
    Seq2SeqAttnOnnxCache,
    Seq2SeqAttnOnnxModel,
    load_onnx_model_and_tokenizer,
)
from hf_seq2seq_attn.serving.onnx_export import export_onnx  # noqa: E402
from hf_seq2seq_attn.tools.inference import translate  # noqa: E402

ATOL = 1e-4
# Every rnn_type, attention_type, head count, decoder_style and decoder depth appears, most pairs too.
VARIANTS = {
    "gru-additive-1-bahdanau-L1": dict(),
    "lstm-dot-1-luong-L2": dict(
        rnn_type="lstm", attention_type="dot", decoder_style="luong", decoder_layers=2
    ),
    "rnn-general-4-feeding-L1": dict(
        rnn_type="rnn",
        attention_type="general",
        num_attention_heads=4,
        decoder_style="luong",
        input_feeding=True,
    ),
    "gru-scaled_dot-4-feeding-L2": dict(
        attention_type="scaled_dot",
        num_attention_heads=4,
        decoder_style="luong",
        input_feeding=True,
        decoder_layers=2,
    ),
    "lstm-additive-4-bahdanau-L2-enc2": dict(
        rnn_type="lstm", num_attention_heads=4, decoder_layers=2, encoder_layers=2
    ),
    "rnn-scaled_dot-1-bahdanau-L2": dict(rnn_type="rnn", attention_type="scaled_dot", decoder_layers=2),
    "gru-general-1-luong-L1-zero_bridge": dict(
        attention_type="general", decoder_style="luong", bridge="zero"
    ),
    "lstm-general-1-feeding-L1-unidirectional": dict(
        rnn_type="lstm",
        attention_type="general",
        decoder_style="luong",
        input_feeding=True,
        bidirectional=False,
    ),
    "rnn-dot-4-bahdanau-L1": dict(rnn_type="rnn", attention_type="dot", num_attention_heads=4),
}
LENGTHS = [5, 3, 7, 2, 7]  # right-padded batch of mixed lengths


def _exported(tmp_path_factory, overrides, seed=0):
    torch.manual_seed(seed)
    model = Seq2SeqAttnForConditionalGeneration(make_config(**overrides)).eval()
    model.generation_config.max_new_tokens = 8
    folder = export_onnx(model, tmp_path_factory.mktemp("onnx"))
    return model, Seq2SeqAttnOnnxModel.from_pretrained(folder, num_threads=1)


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def variant(request, tmp_path_factory):
    return _exported(tmp_path_factory, VARIANTS[request.param])


@pytest.fixture(scope="module")
def default_pair(tmp_path_factory):
    return _exported(tmp_path_factory, {})


def _source():
    input_ids = padded_batch(LENGTHS, generator=torch.Generator().manual_seed(1))
    return input_ids, (input_ids != 0).long()


def test_encoder_on_padded_batch_equals_each_sentence_alone(variant):
    model, onnx_model = variant
    input_ids, attention_mask = _source()
    got = onnx_model.get_encoder()(input_ids, attention_mask)
    assert torch.equal(got.attention_mask, attention_mask.bool())
    for row, length in enumerate(LENGTHS):
        with torch.no_grad():
            alone = model.model.encoder(input_ids[row : row + 1, :length])  # no padding at all
        torch.testing.assert_close(
            got.last_hidden_state[row, :length], alone.last_hidden_state[0], atol=ATOL, rtol=0
        )
        torch.testing.assert_close(
            got.final_hidden_state[row], alone.final_hidden_state[0], atol=ATOL, rtol=0
        )
        assert not got.last_hidden_state[row, length:].any(), "padded positions must be exactly zero"


def test_logits_and_attention_match_pytorch_at_every_step(variant):
    model, onnx_model = variant
    input_ids, attention_mask = _source()
    decoder_input_ids = torch.randint(3, 23, (len(LENGTHS), 6), generator=torch.Generator().manual_seed(2))
    decoder_input_ids[:, 0] = model.config.decoder_start_token_id
    with torch.no_grad():
        encoder_outputs = model.model.encoder(input_ids, attention_mask)
        cache = None
        onnx_cache = None
        onnx_encoder_outputs = onnx_model.get_encoder()(input_ids, attention_mask)
        for t in range(decoder_input_ids.shape[1]):
            step_ids = decoder_input_ids[:, t : t + 1]
            expected = model(
                encoder_outputs=encoder_outputs,
                attention_mask=attention_mask,
                decoder_input_ids=step_ids,
                cache=cache,
                output_attentions=True,
            )
            got = onnx_model(
                encoder_outputs=onnx_encoder_outputs,
                decoder_input_ids=step_ids,
                cache=onnx_cache,
                output_attentions=True,
            )
            torch.testing.assert_close(got.logits, expected.logits, atol=ATOL, rtol=0, msg=f"step {t}")
            torch.testing.assert_close(
                got.cross_attentions[0], expected.cross_attentions[0], atol=ATOL, rtol=0
            )
            cache, onnx_cache = expected[CACHE_NAME], got[CACHE_NAME]
        # Teacher forcing over all T at once (the PyTorch fast path) gives the same logits too.
        full = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    onnx_full = onnx_model(
        input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
    )
    torch.testing.assert_close(onnx_full.logits, full.logits, atol=ATOL, rtol=0)


def test_greedy_and_beam_tokens_identical(variant):
    model, onnx_model = variant
    input_ids, attention_mask = _source()
    for kwargs in (
        dict(),
        dict(num_beams=3),
        dict(num_beams=4, num_return_sequences=2, no_repeat_ngram_size=2),
    ):
        expected = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=8, **kwargs
        )
        got = onnx_model.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=8, **kwargs
        )
        assert torch.equal(got, expected), kwargs


@pytest.mark.parametrize(
    "kwargs", [dict(), dict(num_beams=3), dict(do_sample=True, top_k=5)], ids=["greedy", "beam", "sampling"]
)
def test_each_generated_token_costs_one_decoder_step(default_pair, monkeypatch, kwargs):
    """As the PyTorch model's test: after the first step `generate()`'s Python loop feeds one token per step,
    whatever name the installed transformers gives the cache (the ONNX Loop graphs call no `forward`)."""
    _, onnx_model = default_pair
    monkeypatch.setattr(onnx_model, "greedy_loop", False)
    monkeypatch.setattr(onnx_model, "beam_loop", False)
    widths = []
    original = onnx_model.forward

    def spy(*args, **inputs):
        widths.append(inputs["decoder_input_ids"].shape[1])
        return original(*args, **inputs)

    monkeypatch.setattr(onnx_model, "forward", spy)
    input_ids, attention_mask = _source()
    onnx_model.generate(
        input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, min_new_tokens=6, **kwargs
    )
    assert widths == [1] * 6


def test_sampling_scores_and_attentions_as_pytorch(default_pair):
    model, onnx_model = default_pair
    input_ids, attention_mask = _source()
    common = dict(
        input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, return_dict_in_generate=True
    )
    for kwargs in (
        dict(do_sample=True, num_return_sequences=3, top_k=10),
        dict(num_beams=3, output_scores=True, output_attentions=True),
        dict(output_scores=True, output_logits=True, output_attentions=True),
    ):
        torch.manual_seed(3)
        expected = model.generate(**common, **kwargs)
        torch.manual_seed(3)
        got = onnx_model.generate(**common, **kwargs)
        assert torch.equal(got.sequences, expected.sequences), kwargs
        if kwargs.get("output_scores"):
            for got_step, expected_step in zip(got.scores, expected.scores, strict=True):
                finite = torch.isfinite(expected_step)
                assert torch.equal(torch.isfinite(got_step), finite)
                torch.testing.assert_close(got_step[finite], expected_step[finite], atol=ATOL, rtol=0)
            for got_step, expected_step in zip(got.cross_attentions, expected.cross_attentions, strict=True):
                torch.testing.assert_close(got_step[0], expected_step[0], atol=ATOL, rtol=0)
        if "num_beams" in kwargs:
            torch.testing.assert_close(got.sequences_scores, expected.sequences_scores, atol=ATOL, rtol=0)
            assert torch.equal(got.beam_indices, expected.beam_indices)


def test_reorder_cache_moves_rows_across_sources():
    states = {
        "hidden": np.arange(6, dtype=np.float32).reshape(1, 3, 2),  # (L, B, H)
        "keys": np.array([[1.0], [1.0], [2.0]], dtype=np.float32),  # rows 0 and 1: beams of one source
        "values": np.zeros((3, 1), dtype=np.float32),
    }
    cache = Seq2SeqAttnOnnxCache(states, np.ones((3, 2), dtype=bool))
    cache.reorder_cache(torch.tensor([1, 1, 2]))  # within sources: keys untouched
    assert cache.states["hidden"][0].tolist() == [[2, 3], [2, 3], [4, 5]]
    assert cache.states["keys"][:, 0].tolist() == [1, 1, 2]
    cache.reorder_cache(torch.tensor([2, 0, 0]))  # across sources: keys follow their rows
    assert cache.states["keys"][:, 0].tolist() == [2, 1, 1]
    assert cache.states["hidden"][0].tolist() == [[4, 5], [2, 3], [2, 3]]


def test_int8_export_is_smaller_loads_and_generates(tmp_path):
    torch.manual_seed(0)
    config = make_config(
        vocab_size=400, embedding_size=64, encoder_hidden_size=32, decoder_hidden_size=64, attention_size=64
    )
    model = Seq2SeqAttnForConditionalGeneration(config).eval()
    folder = export_onnx(model, tmp_path / "onnx", int8=True)
    manifest = json.loads((folder / "onnx_config.json").read_text())
    fp32 = sum((folder / name).stat().st_size for name in manifest["graphs"]["fp32"].values())
    int8 = sum((folder / name).stat().st_size for name in manifest["graphs"]["int8"].values())
    assert int8 < 0.5 * fp32, (int8, fp32)
    import onnx

    step = onnx.load(str(folder / manifest["graphs"]["int8"]["decoder_step"]))
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {node.op_type for node in step.graph.node}

    onnx_model = Seq2SeqAttnOnnxModel.from_pretrained(folder, num_threads=1)  # None: int8 when present
    assert onnx_model.int8
    fp32_model = Seq2SeqAttnOnnxModel.from_pretrained(folder, int8=False, num_threads=1)
    input_ids = padded_batch(LENGTHS, vocab_size=400, generator=torch.Generator().manual_seed(1))
    attention_mask = (input_ids != 0).long()
    decoder_input_ids = torch.randint(3, 400, (len(LENGTHS), 5), generator=torch.Generator().manual_seed(2))
    logits = onnx_model(
        input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
    ).logits
    reference = fp32_model(
        input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
    )
    # int8 weights: close to fp32 but not equal (a broken graph would be far off or identical).
    error = (logits - reference.logits).abs().max().item()
    assert 0 < error < 0.1 * reference.logits.abs().max().item()
    output = onnx_model.generate(
        input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, num_beams=2
    )
    assert output.shape[0] == len(LENGTHS) and 1 < output.shape[1] <= 7
    assert int(output.min()) >= 0 and int(output.max()) < 400


def test_translation_pipeline_and_translate_with_onnx_model(tmp_path):
    model, tokenizer = build_tiny_model()
    folder = export_onnx(model, tmp_path / "onnx", tokenizer=tokenizer)
    onnx_model, onnx_tokenizer = load_onnx_model_and_tokenizer(folder, num_threads=1)
    assert onnx_model.generation_config.max_new_tokens == 8  # generation_config.json travelled along
    expected = Seq2SeqAttnTranslationPipeline(model=model, tokenizer=tokenizer)(SOURCES, num_beams=3)
    got = Seq2SeqAttnTranslationPipeline(model=onnx_model, tokenizer=onnx_tokenizer)(SOURCES, num_beams=3)
    assert got == expected
    options: tuple[dict[str, Any], ...] = (
        dict(num_beams=1),
        dict(num_beams=3, num_return_sequences=2, output_scores=True),
    )
    for kwargs in options:
        got = translate(onnx_model, onnx_tokenizer, SOURCES, max_new_tokens=6, **kwargs)
        expected = translate(model, tokenizer, SOURCES, max_new_tokens=6, **kwargs)
        assert [t.texts for t in got] == [t.texts for t in expected]
        if kwargs.get("output_scores"):
            np.testing.assert_allclose([t.scores for t in got], [t.scores for t in expected], atol=ATOL)


def test_cli_export_writes_a_self_contained_folder(tmp_path, capsys):
    source = save_tiny_model(tmp_path / "model")
    output = tmp_path / "onnx"
    assert main(["--model", source, "--output", str(output), "--int8"]) == 0
    names = set(os.listdir(output))
    assert {"config.json", "generation_config.json", "onnx_config.json", "tokenizer.json"} <= names
    assert {"encoder.onnx", "decoder_init.onnx", "decoder_step.onnx", "decoder_step.int8.onnx"} <= names
    assert "wrote" in capsys.readouterr().out
    onnx_model, tokenizer = load_onnx_model_and_tokenizer(output, int8=False, num_threads=1)
    model, _ = build_tiny_model()
    assert translate(onnx_model, tokenizer, SOURCES, num_beams=2) == translate(
        model, tokenizer, SOURCES, num_beams=2
    )

    assert main(["--model", str(tmp_path / "missing"), "--output", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_clear_errors(default_pair, tmp_path):
    _, onnx_model = default_pair
    input_ids, attention_mask = _source()
    with pytest.raises(ValueError, match="right-padded"):
        onnx_model.generate(input_ids=input_ids, attention_mask=attention_mask.flip(1), max_new_tokens=2)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        onnx_model.generate(input_ids=input_ids + 100, max_new_tokens=2)
    with pytest.raises(FileNotFoundError, match="seq2seq-attn export"):
        Seq2SeqAttnOnnxModel.from_pretrained(tmp_path)
    folder = export_onnx(default_pair[0], tmp_path / "fp32_only")
    with pytest.raises(ValueError, match="--int8"):
        Seq2SeqAttnOnnxModel.from_pretrained(folder, int8=True)


# --------------------------------------------------------------------------------------------
# Damaged or tampered export folders: one error naming the file and the problem
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def export_folder(tmp_path_factory):
    """A complete export (graphs, manifest, config, generation config, tokenizer) to copy and damage."""
    model, tokenizer = build_tiny_model()
    return export_onnx(model, tmp_path_factory.mktemp("pristine") / "onnx", tokenizer=tokenizer)


def _edit_json(name: str, edit):
    def damage(folder):
        data = json.loads((folder / name).read_text(encoding="utf-8"))
        edit(data)
        (folder / name).write_text(json.dumps(data), encoding="utf-8")

    return damage


def _set_graph(graph: str, filename):
    return _edit_json(
        "onnx_config.json", lambda manifest: manifest["graphs"]["fp32"].update({graph: filename})
    )


def _outside_symlink(folder):
    outside = folder.parent / "elsewhere.onnx"
    shutil.copyfile(folder / "encoder.onnx", outside)
    (folder / "encoder.onnx").unlink()
    (folder / "encoder.onnx").symlink_to(outside)


def _truncate(name: str):
    def damage(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return damage


# (damage to a copy of `export_folder`, expected exception, text the message must contain)
DAMAGES = {
    "no manifest": (lambda f: (f / "onnx_config.json").unlink(), FileNotFoundError, "no onnx_config.json"),
    "manifest not JSON": (
        lambda f: (f / "onnx_config.json").write_text("{graphs: ", encoding="utf-8"),
        ValueError,
        "onnx_config.json' is not valid JSON",
    ),
    "manifest a list": (
        lambda f: (f / "onnx_config.json").write_text("[]", encoding="utf-8"),
        ValueError,
        "holds a JSON list, not an object",
    ),
    "manifest missing key": (
        _edit_json("onnx_config.json", lambda m: m.pop("state_names")),
        ValueError,
        "lacks the fields ['state_names']",
    ),
    "manifest unknown key": (
        _edit_json("onnx_config.json", lambda m: m.update(run_me="x")),
        ValueError,
        "has unknown fields ['run_me']",
    ),
    "manifest wrong type": (
        _edit_json("onnx_config.json", lambda m: m.update(graphs=["encoder.onnx"])),
        ValueError,
        "field 'graphs' must be a JSON dict",
    ),
    "manifest newer format": (
        _edit_json("onnx_config.json", lambda m: m.update(format_version=2)),
        ValueError,
        "version 2, but this package reads",
    ),
    "manifest graph missing": (
        _edit_json("onnx_config.json", lambda m: m["graphs"]["fp32"].pop("decoder_step")),
        ValueError,
        "`graphs.fp32` must map each of",
    ),
    "manifest unknown state": (
        _edit_json("onnx_config.json", lambda m: m.update(state_names=["hidden", "keys", "values", "x"])),
        ValueError,
        "`state_names` must list distinct fields",
    ),
    "graph path ../": (_set_graph("encoder", "../elsewhere.onnx"), ValueError, "outside the folder"),
    "graph path absolute": (_set_graph("encoder", "/tmp/encoder.onnx"), ValueError, "by an absolute path"),
    "graph symlink outside": (_outside_symlink, ValueError, "outside the folder"),
    "graph missing": (
        lambda f: (f / "decoder_step.onnx").unlink(),
        FileNotFoundError,
        "step.onnx' is missing",
    ),
    "graph truncated": (_truncate("encoder.onnx"), ValueError, "encoder.onnx' is not a loadable ONNX graph"),
    "graphs swapped": (
        _edit_json(
            "onnx_config.json",
            lambda m: m["graphs"]["fp32"].update(encoder="decoder_step.onnx", decoder_step="encoder.onnx"),
        ),
        ValueError,
        "do not belong together",
    ),
    "no config.json": (lambda f: (f / "config.json").unlink(), FileNotFoundError, "has no config.json"),
    "config another model type": (
        _edit_json("config.json", lambda c: c.update(model_type="bert")),
        ValueError,
        "holds a 'bert' model, not a 'seq2seq_attn' one",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_damaged_folder_is_refused_naming_the_problem(export_folder, tmp_path, damage):
    mutate, error, message = DAMAGES[damage]
    folder = tmp_path / "onnx"
    shutil.copytree(export_folder, folder)
    mutate(folder)
    with pytest.raises(error, match=re.escape(message)):
        Seq2SeqAttnOnnxModel.from_pretrained(folder, num_threads=1)


def test_graph_symlinked_inside_the_folder_still_loads(export_folder, tmp_path):
    folder = tmp_path / "onnx"
    shutil.copytree(export_folder, folder)
    (folder / "graphs").mkdir()
    os.rename(folder / "encoder.onnx", folder / "graphs" / "encoder.onnx")
    (folder / "encoder.onnx").symlink_to(folder / "graphs" / "encoder.onnx")
    (tmp_path / "link").symlink_to(folder)  # and the folder itself reached through a link
    model = Seq2SeqAttnOnnxModel.from_pretrained(tmp_path / "link", num_threads=1)
    assert model.generate(input_ids=torch.tensor([[5, 6, 2]]), max_new_tokens=2).shape[0] == 1


def test_translate_with_a_bad_onnx_folder_prints_one_line(export_folder, tmp_path, monkeypatch, capsys):
    pytorch_folder = save_tiny_model(tmp_path / "pytorch")
    tampered = tmp_path / "tampered"
    shutil.copytree(export_folder, tampered)
    (tampered / "onnx_config.json").write_text("{", encoding="utf-8")
    no_config = tmp_path / "no_config"
    shutil.copytree(export_folder, no_config)
    (no_config / "config.json").unlink()
    cases = [
        (["--model", str(tmp_path / "nowhere")], "No ONNX export folder"),
        (["--model", pytorch_folder], "not an ONNX export folder"),
        (["--model", str(tampered)], "is not valid JSON"),
        (["--model", str(no_config)], "has no config.json"),
        (["--model", str(export_folder), "--device", "cuda:0"], "--device cuda:0"),  # ORT runs on the CPU
    ]
    capsys.readouterr()  # the progress bar of save_pretrained
    for argv, message in cases:
        monkeypatch.setattr(sys, "stdin", io.StringIO("hola mundo\n"))
        assert cli.translate_main([*argv, "--backend", "onnx"]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and message in captured.err, captured.err
        assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and not captured.out
    monkeypatch.setattr(sys, "stdin", io.StringIO("hola mundo\n"))
    assert cli.translate_main(["--model", str(export_folder), "--backend", "onnx", "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


# `None` in sys.modules makes `import onnxruntime` raise ImportError, as if it were not installed,
# while `importlib.util.find_spec` (which torch probes with) just reports it absent.
BLOCK_ONNXRUNTIME = """
import sys
sys.modules["onnxruntime"] = None
"""


def test_missing_onnxruntime_gives_install_hint(default_pair, tmp_path):
    folder = export_onnx(default_pair[0], tmp_path / "onnx")
    script = BLOCK_ONNXRUNTIME + textwrap.dedent(
        f"""
        from hf_seq2seq_attn.serving.modeling_ort import Seq2SeqAttnOnnxModel  # importable without onnxruntime
        from hf_seq2seq_attn.cli import export_main as main
        try:
            Seq2SeqAttnOnnxModel.from_pretrained({str(folder)!r})
        except ImportError as error:
            print("MESSAGE:" + str(error))
        print("EXIT:", main(["--model", "nowhere", "--output", "nothing", "--int8"]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    message = next(line for line in result.stdout.splitlines() if line.startswith("MESSAGE:"))
    assert "pip install 'hf_seq2seq_attn[onnx]'" in message and "onnxruntime" in message
    assert "EXIT: 2" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == f"error: {message.removeprefix('MESSAGE:')}"
