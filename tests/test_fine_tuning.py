"""Fine-tuning as a Hugging Face user does it, with transformers' public API only (issue 17).

Load a saved model through the Auto classes (remote code, the package not importable), add tokens to the
tokenizer, `resize_token_embeddings`, fine-tune with `Seq2SeqTrainer(predict_with_generate=True)`, save,
reload, generate and translate with the pipeline: for shared, tied and separate vocabularies.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from fresh_process import run_without_package, script_result
from tiny_inference_model import PAIRS, build_tiny_model, save_tiny_model

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration

LAYOUTS = {
    "shared": dict(share_encoder_decoder_embeddings=True),
    "tied": dict(),  # separate source and target tables, the projection tied to the target one
    "separate": dict(tie_word_embeddings=False),
}
NEW_TOKENS = ["zorro", "fox"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_resize_keeps_both_vocabularies_consistent(layout, tmp_path):
    model, tokenizer = build_tiny_model(**LAYOUTS[layout])
    old_size = len(tokenizer)
    old_source = model.get_input_embeddings().weight.detach().clone()
    tokenizer.add_tokens(NEW_TOKENS)
    model.resize_token_embeddings(len(tokenizer))
    config, base = model.config, model.model
    assert config.vocab_size == config.decoder_vocab_size == old_size + 2
    assert (
        base.encoder.embed_tokens.num_embeddings == base.decoder.embed_tokens.num_embeddings == old_size + 2
    )
    assert model.lm_head.weight.shape[0] == model.lm_head.bias.shape[0] == old_size + 2
    assert torch.equal(
        model.get_input_embeddings().weight[:old_size], old_source
    )  # old rows kept bit for bit
    assert (base.decoder.embed_tokens is base.encoder.embed_tokens) == (layout == "shared")
    assert (model.lm_head.weight is base.decoder.embed_tokens.weight) == (layout != "separate")
    model.save_pretrained(tmp_path)
    loaded = Seq2SeqAttnForConditionalGeneration.from_pretrained(tmp_path)
    source = tokenizer(["hola zorro"], return_tensors="pt")["input_ids"]
    assert torch.equal(loaded.generate(source, max_new_tokens=5), model.generate(source, max_new_tokens=5))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_resized_model_exports_to_onnx(layout, tmp_path):
    pytest.importorskip("onnxruntime")
    from hf_seq2seq_attn.serving.modeling_ort import Seq2SeqAttnOnnxModel
    from hf_seq2seq_attn.serving.onnx_export import export_onnx

    model, tokenizer = build_tiny_model(**LAYOUTS[layout])
    tokenizer.add_tokens(NEW_TOKENS)
    model.resize_token_embeddings(len(tokenizer))
    onnx_model = Seq2SeqAttnOnnxModel.from_pretrained(export_onnx(model, tmp_path), num_threads=1)
    source = tokenizer(["hola zorro", "el gato"], return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=5, num_beams=2)
    assert torch.equal(onnx_model.generate(**source, **kwargs), model.generate(**source, **kwargs))


def test_resize_with_two_vocabularies_of_different_sizes_changes_the_source_only():
    model, _ = build_tiny_model(tie_word_embeddings=False, decoder_vocab_size=40)
    model.resize_token_embeddings(30)
    assert (model.config.vocab_size, model.config.decoder_vocab_size) == (30, 40)
    assert model.model.decoder.embed_tokens.num_embeddings == model.lm_head.out_features == 40


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer,
                              Seq2SeqTrainingArguments, pipeline)

    folder, output, pairs, new_tokens = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    tokenizer.add_tokens(new_tokens)
    model.resize_token_embeddings(len(tokenizer))
    pairs = pairs + [["el zorro", "the fox"]]
    data = Dataset.from_dict({"source": [s for s, _ in pairs], "target": [t for _, t in pairs]})
    data = data.map(lambda row: tokenizer(row["source"], text_target=row["target"]), remove_columns=["source", "target"])
    args = Seq2SeqTrainingArguments(output, max_steps=6, per_device_train_batch_size=3, learning_rate=1e-2,
                                    predict_with_generate=True, generation_max_length=8, report_to=[],
                                    save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
                             processing_class=tokenizer)
    losses = [trainer.train().training_loss]
    predictions = trainer.predict(data).predictions
    trainer.save_model(output)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(output, trust_remote_code=True).eval()
    source = tokenizer(["el zorro"], return_tensors="pt")
    same = torch.equal(reloaded.generate(**source, max_new_tokens=6), model.eval().generate(**source, max_new_tokens=6))
    translator = pipeline("translation", model=output, trust_remote_code=True)
    result = {
        "loaded_package": [name for name in sys.modules if name.startswith("hf_seq2seq_attn")],
        "model_module": type(reloaded).__module__,
        "sizes": [reloaded.config.vocab_size, reloaded.config.decoder_vocab_size, len(tokenizer)],
        "new_ids": tokenizer.convert_tokens_to_ids(new_tokens),
        "predictions": list(predictions.shape),
        "same_generation": same,
        "pipeline": translator("el zorro")[0]["translation_text"],
        "loss": losses[0],
    }
    print("RESULT " + json.dumps(result))
    """
)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_hugging_face_fine_tuning_flow_in_a_fresh_process(layout, tmp_path):
    folder = save_tiny_model(tmp_path / "start", **LAYOUTS[layout])
    completed = run_without_package(
        FRESH_PROCESS, [folder, str(tmp_path / "tuned"), json.dumps(PAIRS), json.dumps(NEW_TOKENS)], tmp_path
    )
    result = script_result(completed)
    assert result["loaded_package"] == []
    assert result["model_module"].startswith("transformers_modules.")
    old_size = len(build_tiny_model()[1])
    assert result["sizes"] == [old_size + 2] * 3
    assert result["new_ids"] == [old_size, old_size + 1]
    assert result["same_generation"]
    assert result["predictions"][0] == len(PAIRS) + 1
    assert isinstance(result["pipeline"], str)
    assert result["loss"] == result["loss"]  # a number, not NaN
