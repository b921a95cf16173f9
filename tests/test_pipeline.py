"""The translation pipeline: direct use, in-process task registration, and remote code from a folder."""

import json
import textwrap
from pathlib import Path

import pytest
from fresh_process import run_without_package, script_result
from tiny_inference_model import SOURCES, build_tiny_model, save_tiny_model
from transformers import pipeline

import hf_seq2seq_attn.core.pipeline_seq2seq_attn as pipeline_module
from hf_seq2seq_attn.core.pipeline_seq2seq_attn import (
    Seq2SeqAttnTranslationPipeline,
    add_pipeline_to_folder,
    register,
)
from hf_seq2seq_attn.tools.inference import translate

EXPECTED_ENTRY = {
    "impl": "pipeline_seq2seq_attn.Seq2SeqAttnTranslationPipeline",
    "pt": ["AutoModelForSeq2SeqLM"],
    "type": "text",
}


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return build_tiny_model()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # A plain `save_pretrained` folder: the model adds the pipeline itself (nothing else is called here).
    return save_tiny_model(tmp_path_factory.mktemp("tiny_pipeline"))


def test_save_pretrained_writes_the_pipeline(folder):
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config["custom_pipelines"]["translation"] == EXPECTED_ENTRY
    assert (Path(folder) / "pipeline_seq2seq_attn.py").read_text() == Path(
        pipeline_module.__file__
    ).read_text()


def test_direct_pipeline_outputs(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    translator = Seq2SeqAttnTranslationPipeline(model=model, tokenizer=tokenizer, device="cpu")
    expected = [t.text for t in translate(model, tokenizer, SOURCES, num_beams=1, max_new_tokens=8)]

    single = translator(SOURCES[0])
    assert single == [{"translation_text": expected[0]}]
    assert translator(SOURCES) == [{"translation_text": text} for text in expected]
    assert translator(SOURCES, batch_size=3) == [{"translation_text": text} for text in expected]

    nbest = translator(SOURCES[:2], num_beams=3, num_return_sequences=2, max_new_tokens=5)
    expected_nbest = translate(
        model, tokenizer, SOURCES[:2], num_beams=3, num_return_sequences=2, max_new_tokens=5
    )
    assert nbest == [[{"translation_text": text} for text in t.texts] for t in expected_nbest]
    assert translator("hola mundo", max_new_tokens=1)[0]["translation_text"].count(" ") == 0
    with pytest.raises(TypeError, match="strings"):
        translator(42)


def test_generation_defaults_at_construction(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    translator = Seq2SeqAttnTranslationPipeline(
        model=model, tokenizer=tokenizer, device="cpu", num_beams=3, num_return_sequences=3
    )
    assert [len(result) for result in translator(SOURCES[:2])] == [3, 3]


def test_registered_task_in_process(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    register()
    register()  # idempotent
    translator = pipeline("translation", model=model, tokenizer=tokenizer, device="cpu")
    assert isinstance(translator, Seq2SeqAttnTranslationPipeline)
    assert translator("hola mundo") == Seq2SeqAttnTranslationPipeline(model=model, tokenizer=tokenizer)(
        "hola mundo"
    )

    # A registered pipeline saves its own entry and code, like add_pipeline_to_folder.
    translator.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"] == {"translation": EXPECTED_ENTRY}
    assert (tmp_path / "pipeline_seq2seq_attn.py").is_file()


def test_add_pipeline_to_folder(folder, tmp_path):
    config = json.loads(Path(folder, "config.json").read_text())
    assert config["custom_pipelines"] == {"translation": EXPECTED_ENTRY}
    assert "AutoModelForSeq2SeqLM" in config["auto_map"]  # kept
    copied = Path(folder, "pipeline_seq2seq_attn.py").read_text()
    assert copied == Path(pipeline_module.__file__).read_text()
    assert "import hf_seq2seq_attn" not in copied and "from hf_seq2seq_attn" not in copied
    with pytest.raises(FileNotFoundError, match="No model folder"):
        add_pipeline_to_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="config.json"):
        add_pipeline_to_folder(tmp_path)


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    from transformers import pipeline

    translator = pipeline("translation", model=sys.argv[1], trust_remote_code=True, device="cpu")
    result = {
        "pipeline_module": type(translator).__module__,
        "model_module": type(translator.model).__module__,
        "single": translator(sys.argv[2]),
        "many": translator(json.loads(sys.argv[3])),
        "nbest": translator(sys.argv[2], num_beams=2, num_return_sequences=2),
        "loaded_package": [name for name in sys.modules if name.startswith("hf_seq2seq_attn")],
    }
    print("RESULT " + json.dumps(result))
    """
)


def test_pipeline_from_folder_in_fresh_process_without_the_package(folder, model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    completed = run_without_package(FRESH_PROCESS, [folder, SOURCES[0], json.dumps(SOURCES[:2])], tmp_path)
    result = script_result(completed)
    assert result["loaded_package"] == []
    assert result["pipeline_module"].startswith("transformers_modules.")
    assert result["pipeline_module"].endswith(".pipeline_seq2seq_attn")
    assert result["model_module"].endswith(".modeling_seq2seq_attn")

    # The same weights as saved.
    expected = [t.text for t in translate(model, tokenizer, SOURCES, num_beams=1, max_new_tokens=8)]
    assert result["single"] == [{"translation_text": expected[0]}]
    assert result["many"] == [{"translation_text": text} for text in expected[:2]]
    expected_nbest = translate(
        model, tokenizer, [SOURCES[0]], num_beams=2, num_return_sequences=2, max_new_tokens=8
    )
    assert result["nbest"] == [{"translation_text": text} for text in expected_nbest[0].texts]
