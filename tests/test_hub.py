"""Save -> load round trips: local folder, Auto classes, remote code in a process without the package."""

import json
import textwrap

import pytest
import torch
from fresh_process import run_without_package
from helpers import make_config, padded_batch
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration, Seq2SeqAttnModel

# Weights must round-trip bit for bit; outputs computed from them need not: the same float32 weights give
# results that differ in the last bits when the loaded tensors sit at other addresses or strides and the
# CPU's BLAS picks another kernel (seen: 1.9e-9 on an AMD EPYC). Each logit here is a handful of dot products
# of width <= 32 chained through <= 4 recurrent steps, so reordered float32 sums (unit roundoff 6e-8) stay
# far below these bounds, while any real difference in the weights or the computation moves logits by ~1e-2.
LOGITS_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(3)
    config = make_config(
        rnn_type="lstm",
        num_attention_heads=2,
        attention_type="general",
        share_encoder_decoder_embeddings=True,
    )
    model = Seq2SeqAttnForConditionalGeneration(config).eval()
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return model, folder


def test_config_round_trip(tmp_path):
    config = make_config(
        attention_type="concat", decoder_style="luong", input_feeding=True, decoder_vocab_size=30
    )
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, Seq2SeqAttnConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.attention_type == "additive"
    assert "num_beams" not in json.loads((tmp_path / "config.json").read_text())


def test_save_writes_safetensors_auto_map_and_code(saved):
    _, folder = saved
    files = {p.name for p in folder.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "configuration_seq2seq_attn.py",
        "modeling_seq2seq_attn.py",
    } <= files
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoConfig"].endswith("Seq2SeqAttnConfig")
    assert auto_map["AutoModelForSeq2SeqLM"].endswith("Seq2SeqAttnForConditionalGeneration")
    assert auto_map["AutoModel"].endswith("Seq2SeqAttnModel")


def test_local_load_gives_identical_logits_and_no_missing_keys(saved):
    model, folder = saved
    loaded, info = Seq2SeqAttnForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    loaded.eval()
    assert loaded.lm_head.weight is loaded.model.encoder.embed_tokens.weight
    expected_weights = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected_weights[name]), f"{name} changed in the round trip"
    source, target = padded_batch([5, 3]), padded_batch([4, 4])
    torch.testing.assert_close(
        loaded(input_ids=source, decoder_input_ids=target).logits,
        model(input_ids=source, decoder_input_ids=target).logits,
        **LOGITS_TOLERANCE,
    )
    kwargs = dict(max_new_tokens=6, num_beams=3)
    assert torch.equal(loaded.generate(source, **kwargs), model.generate(source, **kwargs))


def test_auto_classes_resolve(saved):
    _, folder = saved
    assert isinstance(AutoModelForSeq2SeqLM.from_pretrained(folder), Seq2SeqAttnForConditionalGeneration)
    assert isinstance(AutoModel.from_pretrained(folder), Seq2SeqAttnModel)


def test_remote_code_in_fresh_process_without_the_package(saved, tmp_path):
    model, folder = saved
    source, target = padded_batch([5, 3]), padded_batch([4, 4])
    torch.save(
        {
            "source": source,
            "target": target,
            "logits": model(input_ids=source, decoder_input_ids=target).logits,
            "weights": model.state_dict(),
            "generated": model.generate(source, max_new_tokens=6, num_beams=3),
        },
        tmp_path / "expected.pt",
    )
    script = textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModelForSeq2SeqLM
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        model = AutoModelForSeq2SeqLM.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert "hf_seq2seq_attn" not in type(model).__module__, type(model).__module__
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, expected["weights"][name]), name  # bit for bit
        logits = model(input_ids=expected["source"], decoder_input_ids=expected["target"]).logits
        torch.testing.assert_close(logits, expected["logits"], **{LOGITS_TOLERANCE!r})
        assert torch.equal(model.generate(expected["source"], max_new_tokens=6, num_beams=3), expected["generated"])
        print("REMOTE-OK", type(model).__module__)
        """
    )
    result = run_without_package(script, [], tmp_path)
    assert "REMOTE-OK" in result.stdout
