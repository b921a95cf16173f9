"""scripts/train.py end to end on a tiny local dataset: everything saved, reloadable, pushable."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import BLOCK_PACKAGE

REPO = Path(__file__).resolve().parents[1]
WORDS = ["uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho"]
ENGLISH = ["one", "two", "three", "four", "five", "six", "seven", "eight"]


def load_train_module():
    if "train_script" in sys.modules:
        return sys.modules["train_script"]
    spec = importlib.util.spec_from_file_location("train_script", REPO / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_script"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def write_pairs(path: Path, count: int, offset: int = 0) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            idx = [(i + offset + k) % len(WORDS) for k in range(1 + i % 3)]
            record = {"source": " ".join(WORDS[j] for j in idx), "target": " ".join(ENGLISH[j] for j in idx)}
            handle.write(json.dumps(record) + "\n")


TINY = [
    "--tokenizer_kind", "word", "--tokenizer_vocab_size", "50",
    "--embedding_size", "16", "--encoder_hidden_size", "16", "--decoder_hidden_size", "32",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8",
    "--learning_rate", "5e-3", "--logging_steps", "2", "--report_to", "none", "--seed", "1",
    "--num_attention_plots", "2", "--num_samples_to_print", "2", "--test_num_beams", "2",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_pairs(folder / "train.jsonl", 48)
    write_pairs(folder / "dev.jsonl", 8, offset=3)
    write_pairs(folder / "test.jsonl", 8, offset=5)
    return folder


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "model"
    argv = [
        "--train_file", str(data_dir / "train.jsonl"), "--validation_file", str(data_dir / "dev.jsonl"),
        "--test_file", str(data_dir / "test.jsonl"), "--output_dir", str(output),
        "--max_steps", "12", "--eval_strategy", "steps", "--eval_steps", "6", "--save_strategy", "steps",
        "--save_steps", "6", "--load_best_model_at_end", "True", "--metric_for_best_model", "bleu", *TINY,
    ]
    assert load_train_module().main(argv) == 0
    return output


def test_train_script_saves_everything(trained):
    files = {p.name for p in trained.iterdir()}
    expected = {
        "model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "configuration_seq2seq_attn.py", "modeling_seq2seq_attn.py", "pipeline_seq2seq_attn.py",
        "README.md", "attention_0.png", "attention_1.png", "results.json",
    }
    assert expected <= files, expected - files
    config = json.loads((trained / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSeq2SeqLM"].endswith("Seq2SeqAttnForConditionalGeneration")
    assert "translation" in config["custom_pipelines"]
    generation = json.loads((trained / "generation_config.json").read_text())
    assert generation["num_beams"] == 2 and generation["max_new_tokens"] == 128
    results = json.loads((trained / "results.json").read_text())
    assert {"test_bleu", "test_chrf", "train_minutes"} <= set(results)
    card = (trained / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "transformers"
    assert "custom_code" in metadata["tags"]
    assert metadata["model-index"][0]["results"][0]["metrics"][0]["type"] == "bleu"
    assert "trust_remote_code=True" in card
    assert (trained / "attention_0.png").stat().st_size > 1000


def test_saved_folder_translates_in_fresh_process_without_package(trained, tmp_path):
    script = BLOCK_PACKAGE + textwrap.dedent(
        f"""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
        folder = {str(trained)!r}
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        batch = tokenizer(["uno dos", "tres"], return_tensors="pt", padding=True)
        out = tokenizer.batch_decode(model.generate(**batch, max_new_tokens=5), skip_special_tokens=True)
        assert len(out) == 2
        result = pipeline("translation", model=folder, trust_remote_code=True)("cinco seis", max_new_tokens=5)
        assert "translation_text" in result[0]
        print("FRESH-OK", out)
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH="")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FRESH-OK" in result.stdout


def test_push_to_hub_uploads_the_whole_folder(trained, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    def fake_create_repo(self, repo_id, **kwargs):
        calls["repo"] = repo_id

    def fake_upload_folder(self, *, folder_path, repo_id, ignore_patterns=None, **kwargs):
        calls["files"] = sorted(
            str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*")
            if p.is_file() and not str(p.relative_to(folder_path)).startswith("checkpoint-")
        )

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    from hf_seq2seq_attn.hub import push_folder

    folder = tmp_path / "copy"
    shutil.copytree(trained, folder)
    push_folder(str(folder), "someone/tiny-model")
    assert calls["repo"] == "someone/tiny-model"
    needed = {"model.safetensors", "config.json", "modeling_seq2seq_attn.py", "configuration_seq2seq_attn.py",
              "tokenizer.json", "generation_config.json", "README.md"}
    assert needed <= set(calls["files"])


def test_train_script_push_flag_calls_the_upload_api(data_dir, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    uploaded = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: uploaded.setdefault("repo", repo_id))
    monkeypatch.setattr(
        HfApi, "upload_folder",
        lambda self, *, folder_path, repo_id, **kw: uploaded.setdefault("files", sorted(os.listdir(folder_path))),
    )
    argv = ["--train_file", str(data_dir / "train.jsonl"), "--output_dir", str(tmp_path / "m"), "--max_steps", "2",
            "--push_to_hub", "True", "--hub_model_id", "someone/pushed", *TINY]
    assert load_train_module().main(argv) == 0
    assert uploaded["repo"] == "someone/pushed"
    assert {"model.safetensors", "config.json", "modeling_seq2seq_attn.py", "tokenizer.json",
            "generation_config.json", "README.md"} <= set(uploaded["files"])


def test_nested_translation_columns_and_csv(tmp_path):
    rows = [{"translation": {"es": s, "en": t}} for s, t in zip(WORDS, ENGLISH, strict=True)] * 4
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    argv = ["--train_file", str(tmp_path / "train.jsonl"), "--source_column", "translation", "--target_column",
            "translation", "--source_lang", "es", "--target_lang", "en", "--output_dir", str(tmp_path / "m"),
            "--max_steps", "2", *TINY]
    assert load_train_module().main(argv) == 0
    (tmp_path / "train.csv").write_text("source,target\n" + "\n".join(f"{s},{t}" for s, t in zip(WORDS, ENGLISH, strict=True)))
    argv = ["--train_file", str(tmp_path / "train.csv"), "--output_dir", str(tmp_path / "m2"), "--max_steps", "2", *TINY]
    assert load_train_module().main(argv) == 0


def test_every_config_field_is_a_command_line_option():
    from hf_seq2seq_attn import Seq2SeqAttnConfig

    module = load_train_module()
    options = {f.name for f in __import__("dataclasses").fields(module.ModelArguments)}
    settable = set(Seq2SeqAttnConfig.__annotations__) - module._TOKENIZER_FIELDS
    assert settable == options


@pytest.mark.slow
def test_two_process_ddp_with_torchrun(data_dir, tmp_path):
    output = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(REPO / "scripts" / "train.py"),
        "--train_file", str(data_dir / "train.jsonl"), "--validation_file", str(data_dir / "dev.jsonl"),
        "--test_file", str(data_dir / "test.jsonl"), "--output_dir", str(output), "--max_steps", "4",
        "--eval_strategy", "steps", "--eval_steps", "4", "--save_strategy", "no", *TINY,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (output / "model.safetensors").exists()
    assert json.loads((output / "results.json").read_text())["world_size"] == 2


def test_validation_metrics_line_up_with_references_under_length_grouping(data_dir, tmp_path):
    """transformers 5 length-groups eval batches too; our trainer keeps evaluation in dataset order."""
    from datasets import Dataset
    from transformers import Seq2SeqTrainingArguments

    from hf_seq2seq_attn.training import Seq2SeqAttnTrainer

    lengths = [5, 1, 9, 2, 7, 3, 8, 4]
    dataset = Dataset.from_dict({"input_ids": [[5] * n for n in lengths]})
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), train_sampling_strategy="group_by_length",
                                    per_device_eval_batch_size=2, report_to="none")
    trainer = Seq2SeqAttnTrainer(model=__import__("torch").nn.Linear(1, 1), args=args)
    assert list(trainer._get_eval_sampler(dataset)) == list(range(len(lengths)))


@pytest.mark.slow
def test_two_process_ddp_with_accelerate_launch(data_dir, tmp_path):
    # `--cpu --num_processes 2` silently starts one process; `--multi_gpu` starts two, and train.py adds use_cpu (gloo).
    output = tmp_path / "accelerate"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "scripts" / "train.py"),
        "--train_file", str(data_dir / "train.jsonl"), "--test_file", str(data_dir / "test.jsonl"),
        "--output_dir", str(output), "--max_steps", "4", "--save_strategy", "no", *TINY,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads((output / "results.json").read_text())["world_size"] == 2
    assert (output / "model.safetensors").exists()


def test_push_folder_reports_exactly_what_it_uploads(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    from hf_seq2seq_attn.hub import push_folder

    for name in ("model.safetensors", "config.json", "checkpoint-4/optimizer.pt", "runs/events", "extra.pt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: None)
    assert push_folder(str(tmp_path), "someone/x") == ["config.json", "model.safetensors"]
