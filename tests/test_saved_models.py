"""Models saved by an older version keep working: they load, generate the same ids, and export to ONNX.

`tests/data/saved_by_9c82b3b/` holds two tiny models (a Bahdanau GRU decoder; a two-layer Luong LSTM
decoder with two attention heads) saved by commit 9c82b3b, the last one before the package had
subpackages, with the greedy and beam-3 ids and the logits' sums it computed. The Bahdanau folder also
carries that commit's remote code (its pipeline imports `hf_seq2seq_attn.alignment`, the old name), for the
tests that load through transformers; the other folder is loaded with this package's classes only, so it
keeps just the weights, config and tokenizer (its code files would be the same three files again).
"""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, PreTrainedTokenizerFast, pipeline

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration

SAVED = Path(__file__).parent / "data" / "saved_by_9c82b3b"
EXPECTED = json.loads((SAVED / "expected.json").read_text())
NAMES = sorted(EXPECTED["expected"])


def _load(name: str):
    folder = SAVED / name
    return Seq2SeqAttnForConditionalGeneration.from_pretrained(
        folder
    ).eval(), PreTrainedTokenizerFast.from_pretrained(folder)


@pytest.mark.parametrize("name", NAMES)
def test_old_model_generates_the_same_ids(name):
    model, tokenizer = _load(name)
    batch = tokenizer(EXPECTED["sentences"], return_tensors="pt", padding=True)
    for mode, beams in (("greedy", 1), ("beam3", 3)):
        ids = model.generate(**batch, max_new_tokens=12, do_sample=False, num_beams=beams).tolist()
        assert ids == EXPECTED["expected"][name][mode], mode


@pytest.mark.parametrize("name", NAMES)
def test_old_model_computes_the_same_logits(name):
    model, tokenizer = _load(name)
    batch = tokenizer(EXPECTED["sentences"], return_tensors="pt", padding=True)
    labels = tokenizer(text_target=EXPECTED["targets"], return_tensors="pt", padding=True)["input_ids"]
    with torch.no_grad():
        logits = model(**batch, labels=labels).logits.double()
    # float32 sums of ~10^4 logits of magnitude ~1-10: 1e-5 relative covers BLAS differences between CPUs.
    assert logits.sum().item() == pytest.approx(EXPECTED["expected"][name]["logits_sum"], rel=1e-5, abs=1e-3)
    assert logits.abs().sum().item() == pytest.approx(EXPECTED["expected"][name]["logits_abs_sum"], rel=1e-5)


def test_old_model_loads_through_the_auto_classes():
    model = AutoModelForSeq2SeqLM.from_pretrained(SAVED / NAMES[0])
    assert isinstance(model, Seq2SeqAttnForConditionalGeneration)


def test_old_remote_pipeline_still_aligns():
    """The saved pipeline file finds the alignment code under the module name it was written with."""
    translator = pipeline("translation", model=str(SAVED / NAMES[0]), trust_remote_code=True)
    result = translator(EXPECTED["sentences"][0], return_alignments=True, max_new_tokens=12)[0]
    assert result["translation_text"] is not None
    assert isinstance(result["alignment"], str)


def test_old_model_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from hf_seq2seq_attn.serving.modeling_ort import load_onnx_model_and_tokenizer
    from hf_seq2seq_attn.serving.onnx_export import export_onnx

    model, tokenizer = _load(NAMES[0])
    folder = export_onnx(model, tmp_path / "onnx", tokenizer=tokenizer)
    onnx_model, onnx_tokenizer = load_onnx_model_and_tokenizer(folder, num_threads=1)
    batch = onnx_tokenizer(EXPECTED["sentences"], return_tensors="pt", padding=True)
    ids = onnx_model.generate(**batch, max_new_tokens=12, do_sample=False, num_beams=1).tolist()
    assert ids == EXPECTED["expected"][NAMES[0]]["greedy"]
