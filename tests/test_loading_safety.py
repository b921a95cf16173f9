"""No code runs from what a tool loads (issue 16).

A planted model folder, and a planted repo in the Hub cache, carry a `configuration_*.py` that writes a marker
file when imported, named by an `auto_map` in `config.json` (as remote code is). Every command that opens a
model (`translate`, `evaluate`, `plot`, `g2p`, `average`, `export`, `explore` and the explorer's model box)
must refuse a foreign `model_type` with a message naming it, and load a folder that claims to be ours with
the package's own classes: in both cases the marker never appears.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny_inference_model import save_tiny_model

from hf_seq2seq_attn import cli, explorer
from hf_seq2seq_attn.tools.inference import load_model_and_tokenizer

PLANTED_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
from transformers import PretrainedConfig

class EvilConfig(PretrainedConfig):
    model_type = "evil_model"
"""


def plant(folder: Path, marker: Path, model_type: str) -> str:
    """Turn a saved tiny model folder into one whose config points `auto_map` at code that writes `marker`."""
    (folder / "configuration_evil.py").write_text(PLANTED_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModel": "configuration_evil.EvilConfig",
        "AutoModelForSeq2SeqLM": "configuration_evil.EvilConfig",
    }
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["configuration_evil.EvilConfig", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return str(folder)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return Path(save_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


def planted_copy(tiny_folder: Path, tmp_path: Path, model_type: str) -> tuple[str, Path]:
    folder = tmp_path / f"planted-{model_type}"
    shutil.copytree(tiny_folder, folder)
    marker = tmp_path / "MARKER"
    return plant(folder, marker, model_type), marker


def command_lines(model: str, tmp_path: Path) -> dict[str, list[str]]:
    """Each tool that opens a model, as `seq2seq-attn` arguments (explore has its own `main`)."""
    sentences = tmp_path / "in.txt"
    sentences.write_text("hola mundo\n")
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(json.dumps({"source": "hola mundo", "target": "hello world"}) + "\n")
    return {
        "translate": ["translate", "--model", model, "--input", str(sentences), "--no_progress"],
        "evaluate": ["evaluate", "--model", model, "--test_file", str(test_file), "--no_progress"],
        "plot": ["plot", "--model", model, "--source", "hola", "--output", str(tmp_path / "a.png")],
        "g2p": ["g2p", "--model", model, "--input", str(sentences)],
        "average": ["average", "--checkpoints", model, model, "--output", str(tmp_path / "avg")],
        "export": ["export", "--model", model, "--output", str(tmp_path / "onnx")],
    }


@pytest.mark.parametrize("command", ["translate", "evaluate", "plot", "g2p", "average", "export", "explore"])
def test_foreign_model_type_is_refused_and_its_code_never_runs(tiny_folder, tmp_path, capsys, command):
    model, marker = planted_copy(tiny_folder, tmp_path, "evil_model")
    if command == "explore":
        code = explorer.main(["--model", model])
    else:
        code = cli.main(command_lines(model, tmp_path)[command])
    error = capsys.readouterr().err
    assert code == 2
    assert "'evil_model'" in error and "Traceback" not in error
    assert not marker.exists()


def test_explorer_model_box_refuses_a_foreign_model(tiny_folder, tmp_path):
    model, marker = planted_copy(tiny_folder, tmp_path, "evil_model")
    with pytest.raises(ValueError, match="'evil_model'"):
        explorer.load_model(model)
    assert not marker.exists()


def test_a_folder_claiming_our_type_loads_with_our_classes(tiny_folder, tmp_path, capsys):
    """`model_type` is ours but `auto_map` points at planted code: the tools use the package's classes."""
    model, marker = planted_copy(tiny_folder, tmp_path, "seq2seq_attn")
    loaded, _ = load_model_and_tokenizer(model)
    assert type(loaded).__module__ == "hf_seq2seq_attn.core.modeling_seq2seq_attn"
    explorer.load_model(model)
    assert cli.main(command_lines(model, tmp_path)["translate"]) == 0
    assert capsys.readouterr().out.strip()
    assert not marker.exists()


HUB_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from hf_seq2seq_attn import cli, explorer

    repo, workdir = sys.argv[1], sys.argv[2]
    codes = {
        "translate": cli.main(["translate", "--model", repo, "--input", workdir + "/in.txt", "--no_progress"]),
        "plot": cli.main(["plot", "--model", repo, "--source", "hola", "--output", workdir + "/a.png"]),
        "export": cli.main(["export", "--model", repo, "--output", workdir + "/onnx"]),
        "explore": explorer.main(["--model", repo]),
    }
    try:
        explorer.load_model(repo)
        codes["model box"] = 0
    except ValueError as error:
        print("error:", error, file=sys.stderr)
        codes["model box"] = 2
    print(json.dumps(codes))
    """
)


def test_a_planted_hub_cache_repo_is_refused(tiny_folder, tmp_path):
    """The same from the Hub cache (offline), in a fresh process pointed at a cache of its own."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_folder = tmp_path / "hub" / "models--someone--evil"
    snapshot = repo_folder / "snapshots" / commit
    shutil.copytree(tiny_folder, snapshot)
    (repo_folder / "refs").mkdir()
    (repo_folder / "refs" / "main").write_text(commit)
    marker = tmp_path / "MARKER"
    plant(snapshot, marker, "evil_model")
    (tmp_path / "in.txt").write_text("hola mundo\n")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT, "someone/evil", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    codes = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(codes.values()) == {2}, codes
    assert result.stderr.count("'evil_model'") == len(codes), result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()
