"""A lazy package: the command line answers without torch or transformers, yet the Auto classes still work.

Every case runs in a fresh interpreter, since what matters is what one import statement loads and
registers in a process where nothing else ran first.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from fresh_process import run_script, script_result
from tiny_inference_model import save_tiny_model

HEAVY = ("torch", "transformers", "gradio")  # gradio: explore --help must not load the app either


def run_fresh(script: str, *args: str, cwd: Path) -> dict:
    """Run `script` in a new interpreter (offline, own remote-code cache) and return what it printed
    after `RESULT `."""
    return script_result(run_script(textwrap.dedent(script), list(args), cwd))


COMMAND_LINE = """
import json, runpy, sys
sys.argv = ["seq2seq-attn", *json.loads(sys.argv[1])]
try:
    runpy.run_module("hf_seq2seq_attn", run_name="__main__", alter_sys=True)
    code = None
except SystemExit as exit_info:
    code = exit_info.code
heavy = [name for name in ("torch", "transformers", "gradio") if name in sys.modules]
print("RESULT " + json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["translate", "--help"],
        ["evaluate", "--help"],
        ["plot", "--help"],
        ["g2p", "--help"],
        ["export", "--help"],
        ["average", "--help"],
        ["benchmark", "--help"],
        ["explore", "--help"],
        ["recipes"],
        ["recipes", "--show", "demo"],
    ],
    ids=" ".join,
)
def test_help_and_recipes_import_neither_torch_nor_transformers(argv, tmp_path):
    result = run_fresh(COMMAND_LINE, json.dumps(argv), cwd=tmp_path)
    assert result["code"] in (0, None)
    assert result["heavy"] == []


def test_import_is_light_and_public_names_stay_importable(tmp_path):
    script = """
    import json, sys
    import hf_seq2seq_attn

    light = [name for name in ("torch", "transformers") if name in sys.modules]
    listed = set(hf_seq2seq_attn.__all__) <= set(dir(hf_seq2seq_attn))
    from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration, cli
    from transformers import CONFIG_MAPPING

    print("RESULT " + json.dumps({
        "heavy_after_import": light,
        "listed": listed,
        "modules": {name: getattr(hf_seq2seq_attn, name).__module__ for name in hf_seq2seq_attn.__all__},
        "registered": CONFIG_MAPPING["seq2seq_attn"] is Seq2SeqAttnConfig,
        "auto_class": Seq2SeqAttnForConditionalGeneration._auto_class,
        "submodule": cli.__name__,
    }))
    """
    result = run_fresh(script, cwd=tmp_path)
    assert result["heavy_after_import"] == []
    assert result["listed"]
    assert result["modules"] == {
        "Seq2SeqAttnCache": "hf_seq2seq_attn.core.modeling_seq2seq_attn",
        "Seq2SeqAttnConfig": "hf_seq2seq_attn.core.configuration_seq2seq_attn",
        "Seq2SeqAttnForConditionalGeneration": "hf_seq2seq_attn.core.modeling_seq2seq_attn",
        "Seq2SeqAttnModel": "hf_seq2seq_attn.core.modeling_seq2seq_attn",
        "Seq2SeqAttnPreTrainedModel": "hf_seq2seq_attn.core.modeling_seq2seq_attn",
    }
    assert result["registered"]
    assert result["auto_class"] == "AutoModelForSeq2SeqLM"
    assert result["submodule"] == "hf_seq2seq_attn.cli"


def test_unknown_attribute_is_an_attribute_error(tmp_path):
    script = """
    import json, sys
    import hf_seq2seq_attn
    try:
        hf_seq2seq_attn.NotAName
        outcome = "no error"
    except AttributeError as error:
        outcome = str(error)
    print("RESULT " + json.dumps({"outcome": outcome, "heavy": "torch" in sys.modules}))
    """
    result = run_fresh(script, cwd=tmp_path)
    assert "NotAName" in result["outcome"]
    assert result["heavy"] is False


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("lazy_tiny"))


AUTO_LOAD = """
import json, sys
{imports}
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, pipeline

folder = sys.argv[1]
result = {{
    "config": type(AutoConfig.from_pretrained(folder)).__module__,
    "model": type(AutoModel.from_pretrained(folder)).__module__,
    "seq2seq": type(AutoModelForSeq2SeqLM.from_pretrained(folder)).__module__,
}}
# Without trust_remote_code, transformers wants the pipeline class named when config.json lists
# `custom_pipelines` (as before the package became lazy); the model still comes from the Auto classes.
from hf_seq2seq_attn.core.pipeline_seq2seq_attn import Seq2SeqAttnTranslationPipeline

translator = pipeline("translation", model=folder, device="cpu", pipeline_class=Seq2SeqAttnTranslationPipeline)
result["pipeline_model"] = type(translator.model).__module__
result["translation"] = translator("hola mundo")[0]["translation_text"]
print("RESULT " + json.dumps(result))
"""


@pytest.mark.parametrize(
    "imports",
    ["import hf_seq2seq_attn", "import transformers\nimport hf_seq2seq_attn"],
    ids=["package-first", "transformers-first"],
)
def test_auto_classes_load_a_folder_without_remote_code(folder, tmp_path, imports):
    """`import hf_seq2seq_attn` and nothing else of it: the Auto classes and the pipeline use our classes."""
    result = run_fresh(AUTO_LOAD.format(imports=imports), folder, cwd=tmp_path)
    assert result["config"] == "hf_seq2seq_attn.core.configuration_seq2seq_attn"
    for key in ("model", "seq2seq", "pipeline_model"):
        assert result[key] == "hf_seq2seq_attn.core.modeling_seq2seq_attn", key
    assert isinstance(result["translation"], str)


SAVE_FROM_SUBMODULE = """
import json, os, sys
{imports}

config = Seq2SeqAttnConfig(vocab_size=23, embedding_size=8, encoder_hidden_size=8, decoder_hidden_size=16)
{save}
saved = json.load(open(os.path.join(sys.argv[1], "config.json")))
print("RESULT " + json.dumps({{"auto_map": saved.get("auto_map"), "files": sorted(os.listdir(sys.argv[1]))}}))
"""
MODEL_IMPORTS = (
    "from hf_seq2seq_attn.core.modeling_seq2seq_attn import Seq2SeqAttnForConditionalGeneration\n"
    "from hf_seq2seq_attn.core.configuration_seq2seq_attn import Seq2SeqAttnConfig"
)


@pytest.mark.parametrize(
    "imports",
    [MODEL_IMPORTS, "\n".join(reversed(MODEL_IMPORTS.split("\n"))), "import torch\n" + MODEL_IMPORTS],
    ids=["modeling-first", "configuration-first", "torch-first"],
)
def test_a_model_imported_from_its_module_saves_auto_map_and_code(tmp_path, imports):
    save = "Seq2SeqAttnForConditionalGeneration(config).save_pretrained(sys.argv[1])"
    result = run_fresh(
        SAVE_FROM_SUBMODULE.format(imports=imports, save=save), str(tmp_path / "out"), cwd=tmp_path
    )
    assert result["auto_map"] == {
        "AutoConfig": "configuration_seq2seq_attn.Seq2SeqAttnConfig",
        "AutoModel": "modeling_seq2seq_attn.Seq2SeqAttnModel",
        "AutoModelForSeq2SeqLM": "modeling_seq2seq_attn.Seq2SeqAttnForConditionalGeneration",
    }
    assert {"configuration_seq2seq_attn.py", "modeling_seq2seq_attn.py", "model.safetensors"} <= set(
        result["files"]
    )


def test_a_config_imported_from_its_module_saves_auto_map(tmp_path):
    imports = "from hf_seq2seq_attn.core.configuration_seq2seq_attn import Seq2SeqAttnConfig"
    save = "config.save_pretrained(sys.argv[1])"
    result = run_fresh(
        SAVE_FROM_SUBMODULE.format(imports=imports, save=save), str(tmp_path / "out"), cwd=tmp_path
    )
    assert result["auto_map"]["AutoConfig"] == "configuration_seq2seq_attn.Seq2SeqAttnConfig"
    assert "configuration_seq2seq_attn.py" in result["files"]


def test_a_command_that_imports_transformers_first_still_registers(tmp_path):
    """Our own modules importing transformers (here the tokenizer module) trigger the registration too."""
    script = """
    import json
    from hf_seq2seq_attn.core.tokenization_seq2seq_attn import load_tokenizer
    from transformers import CONFIG_MAPPING
    print("RESULT " + json.dumps({"registered": "seq2seq_attn" in CONFIG_MAPPING}))
    """
    assert run_fresh(script, cwd=tmp_path)["registered"]


def test_the_package_imports_and_registers_only_once(tmp_path):
    """No import hook is left behind once registered, and re-importing changes nothing."""
    script = """
    import importlib, json, sys
    import hf_seq2seq_attn
    hooked = [type(finder).__name__ for finder in sys.meta_path if type(finder).__module__ == "hf_seq2seq_attn"]
    import transformers
    left = [type(finder).__name__ for finder in sys.meta_path if type(finder).__module__ == "hf_seq2seq_attn"]
    importlib.import_module("hf_seq2seq_attn.core.modeling_seq2seq_attn")
    print("RESULT " + json.dumps({"hooked": hooked, "left": left, "registered": hf_seq2seq_attn._registered}))
    """
    result = run_fresh(script, cwd=tmp_path)
    assert result == {"hooked": ["_RegisterAfterImport"], "left": [], "registered": True}
