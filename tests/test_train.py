"""`seq2seq-attn train` end to end on a tiny local dataset: everything saved, reloadable, pushable."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from fresh_process import run_without_package

from hf_seq2seq_attn.training.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
WORDS = ["uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho"]
ENGLISH = ["one", "two", "three", "four", "five", "six", "seven", "eight"]


def write_pairs(path: Path, count: int, offset: int = 0) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            idx = [(i + offset + k) % len(WORDS) for k in range(1 + i % 3)]
            record = {"source": " ".join(WORDS[j] for j in idx), "target": " ".join(ENGLISH[j] for j in idx)}
            handle.write(json.dumps(record) + "\n")


TINY = [
    "--tokenizer_kind",
    "word",
    "--tokenizer_vocab_size",
    "50",
    "--embedding_size",
    "16",
    "--encoder_hidden_size",
    "16",
    "--decoder_hidden_size",
    "32",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "8",
    "--learning_rate",
    "5e-3",
    "--logging_steps",
    "2",
    "--report_to",
    "none",
    "--seed",
    "1",
    "--num_attention_plots",
    "2",
    "--num_samples_to_print",
    "2",
    "--test_num_beams",
    "2",
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
        "--train_file",
        str(data_dir / "train.jsonl"),
        "--validation_file",
        str(data_dir / "dev.jsonl"),
        "--test_file",
        str(data_dir / "test.jsonl"),
        "--output_dir",
        str(output),
        "--max_steps",
        "12",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "6",
        "--save_strategy",
        "steps",
        "--save_steps",
        "6",
        "--load_best_model_at_end",
        "True",
        "--metric_for_best_model",
        "bleu",
        *TINY,
    ]
    assert train_main(argv) == 0
    return output


def test_train_script_saves_everything(trained):
    files = {p.name for p in trained.iterdir()}
    expected = {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "configuration_seq2seq_attn.py",
        "modeling_seq2seq_attn.py",
        "pipeline_seq2seq_attn.py",
        "README.md",
        "attention_0.png",
        "attention_1.png",
        "results.json",
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
    script = textwrap.dedent(
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
    result = run_without_package(script, [], tmp_path)
    assert "FRESH-OK" in result.stdout


class CommitRecorder:
    """Stands in for the network below `upload_folder`: records the operations a commit would send.

    `HfApi.upload_folder` filters the folder with its patterns and builds `CommitOperationAdd`s; only the
    requests are replaced here (repo creation, the Hub's check of the card's YAML, the commit), so a pattern
    mistake in `push_folder` shows up in the recorded paths.
    """

    def __init__(self, monkeypatch):
        import huggingface_hub.hf_api
        from huggingface_hub import HfApi

        # With `hf_xet` installed, upload_folder streams its operations through a pipelined uploader instead of
        # one `create_commit`; the operations are the same, and the single-commit path is the one we can record.
        # (huggingface_hub releases before that uploader have no `hf_api.is_xet_available`: nothing to switch off.)
        monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False, raising=False)

        self.repos: list[str] = []
        self.paths: list[str] = []
        self.contents: dict[str, bytes] = {}
        monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: self.repos.append(repo_id))
        monkeypatch.setattr(HfApi, "create_commit", self.create_commit)
        monkeypatch.setattr(HfApi, "_validate_yaml", self.validate_yaml)

    def validate_yaml(self, content: str, **kwargs):
        assert isinstance(yaml.safe_load(content.split("---")[1]), dict), (
            "the card's metadata must be a mapping"
        )

    def create_commit(self, repo_id: str, operations, **kwargs):
        for operation in operations:
            self.paths.append(operation.path_in_repo)
            with operation.as_file() as handle:
                self.contents[operation.path_in_repo] = handle.read()


def assert_nothing_pickled_or_secret(paths, contents, secret: str) -> None:
    pickled = [p for p in paths if p.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    assert not pickled, pickled
    leaking = [p for p, data in contents.items() if secret.encode() in data]
    assert not leaking, leaking


def test_push_sends_the_model_and_nothing_pickled_or_secret(data_dir, tmp_path, monkeypatch):
    """Train with a Hub token and checkpoints, push, and check every file on disk and every file sent."""
    token = "hf_fakeTOKEN0123456789abcdefXYZ"
    recorder = CommitRecorder(monkeypatch)
    output = tmp_path / "m"
    argv = [
        "--train_file",
        str(data_dir / "train.jsonl"),
        "--validation_file",
        str(data_dir / "dev.jsonl"),
        "--output_dir",
        str(output),
        "--max_steps",
        "4",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "2",
        "--push_to_hub",
        "True",
        "--hub_model_id",
        "someone/pushed",
        "--hub_token",
        token,
        *TINY,
    ]
    assert train_main(argv) == 0
    assert recorder.repos == ["someone/pushed"]
    needed = {
        "model.safetensors",
        "config.json",
        "modeling_seq2seq_attn.py",
        "configuration_seq2seq_attn.py",
        "pipeline_seq2seq_attn.py",
        "tokenizer.json",
        "generation_config.json",
        "README.md",
    }
    assert needed <= set(recorder.paths), needed - set(recorder.paths)
    assert not [p for p in recorder.paths if p.startswith("checkpoint-")], "training state is not the model"
    assert_nothing_pickled_or_secret(recorder.paths, recorder.contents, token)
    # Nothing secret anywhere on disk either, checkpoints included (they hold optimizer pickles, not the token).
    on_disk = {str(f.relative_to(output)): f.read_bytes() for f in output.rglob("*") if f.is_file()}
    top_level = [p for p in on_disk if "/" not in p]
    assert_nothing_pickled_or_secret(top_level, on_disk, token)
    assert not [p for p in on_disk if p.endswith("training_args.bin")]
    assert json.loads(on_disk["training_args.json"])["hub_token"] == "<HUB_TOKEN>"


def test_push_folder_patterns_are_what_upload_folder_applies(tmp_path, monkeypatch):
    from hf_seq2seq_attn.tools.hub import push_folder

    for name in (
        "model.safetensors",
        "config.json",
        "checkpoint-4/optimizer.pt",
        "checkpoint-4/model.safetensors",
        "runs/events",
        "extra.pt",
        "training_args.bin",
        "state.pkl",
        "rng_state.pth",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    recorder = CommitRecorder(monkeypatch)
    reported = push_folder(str(tmp_path), "someone/x")
    assert sorted(recorder.paths) == reported == ["config.json", "model.safetensors"]


def test_nested_translation_columns_and_csv(tmp_path):
    rows = [{"translation": {"es": s, "en": t}} for s, t in zip(WORDS, ENGLISH, strict=True)] * 4
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    argv = [
        "--train_file",
        str(tmp_path / "train.jsonl"),
        "--source_column",
        "translation",
        "--target_column",
        "translation",
        "--source_lang",
        "es",
        "--target_lang",
        "en",
        "--output_dir",
        str(tmp_path / "m"),
        "--max_steps",
        "2",
        *TINY,
    ]
    assert train_main(argv) == 0
    (tmp_path / "train.csv").write_text(
        "source,target\n" + "\n".join(f"{s},{t}" for s, t in zip(WORDS, ENGLISH, strict=True))
    )
    argv = [
        "--train_file",
        str(tmp_path / "train.csv"),
        "--output_dir",
        str(tmp_path / "m2"),
        "--max_steps",
        "2",
        *TINY,
    ]
    assert train_main(argv) == 0


def test_every_config_field_is_a_command_line_option():
    import dataclasses

    from hf_seq2seq_attn import Seq2SeqAttnConfig, arguments

    options = {f.name for f in dataclasses.fields(arguments.ModelArguments)}
    settable = set(Seq2SeqAttnConfig.__annotations__) - arguments._TOKENIZER_FIELDS
    assert settable == options


@pytest.mark.slow
def test_two_process_ddp_with_torchrun(data_dir, tmp_path):
    output = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(REPO / "scripts" / "train.py"),
        "--train_file",
        str(data_dir / "train.jsonl"),
        "--validation_file",
        str(data_dir / "dev.jsonl"),
        "--test_file",
        str(data_dir / "test.jsonl"),
        "--output_dir",
        str(output),
        "--max_steps",
        "4",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "4",
        "--save_strategy",
        "no",
        *TINY,
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

    from hf_seq2seq_attn.training.trainer import Seq2SeqAttnTrainer

    lengths = [5, 1, 9, 2, 7, 3, 8, 4]
    dataset = Dataset.from_dict({"input_ids": [[5] * n for n in lengths]})
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        train_sampling_strategy="group_by_length",
        per_device_eval_batch_size=2,
        report_to="none",
    )
    trainer = Seq2SeqAttnTrainer(model=__import__("torch").nn.Linear(1, 1), args=args)
    assert list(trainer._get_eval_sampler(dataset)) == list(range(len(lengths)))


@pytest.mark.slow
def test_two_process_ddp_with_accelerate_launch(data_dir, tmp_path):
    # `--cpu --num_processes 2` silently starts one process; `--multi_gpu` starts two, and train.py adds use_cpu (gloo).
    output = tmp_path / "accelerate"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(REPO / "scripts" / "train.py"),
        "--train_file",
        str(data_dir / "train.jsonl"),
        "--test_file",
        str(data_dir / "test.jsonl"),
        "--output_dir",
        str(output),
        "--max_steps",
        "4",
        "--save_strategy",
        "no",
        *TINY,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads((output / "results.json").read_text())["world_size"] == 2
    assert (output / "model.safetensors").exists()


# ----- recipes -----------------------------------------------------------------------------------
def test_every_shipped_recipe_parses_and_flags_override_it(tmp_path):
    from hf_seq2seq_attn.training.arguments import load_recipe, parse_train_args, recipe_names

    assert {"demo", "bible", "g2p", "g2p-stress"} <= set(recipe_names())
    for name in recipe_names():
        values = load_recipe(name)
        model_args, data_args, training_args = parse_train_args(["--recipe", name])
        for key, value in values.items():
            for parsed in (model_args, data_args, training_args):
                if hasattr(parsed, key):
                    got = getattr(parsed, key)
                    got = getattr(got, "value", got)  # enums such as eval_strategy
                    got = "none" if key == "report_to" and got == [] else got  # "none" parses to no reporters
                    assert str(got) == str(value) or got == value, (name, key, got, value)
                    break
            else:
                raise AssertionError(f"recipe {name}: {key} is not an option")
    _, data_args, training_args = parse_train_args(
        ["--recipe", "demo", "--max_train_minutes", "1", "--learning_rate", "0.01"]
    )
    assert data_args.max_train_minutes == 1 and training_args.learning_rate == 0.01
    assert training_args.output_dir == "outputs/demo"
    mine = tmp_path / "mine.yaml"
    mine.write_text("dataset_name: bundled:bible_es_en\nembedding_size: 64\nmax_train_minutes: 2\n")
    model_args, data_args, training_args = parse_train_args(["--recipe", str(mine)])
    assert model_args.embedding_size == 64 and data_args.max_train_minutes == 2
    assert training_args.output_dir == "outputs/model"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just\n- a list\n", "mapping of option names"),
        ("a: [1,\n", "not valid YAML"),
        (None, "not a shipped recipe"),
    ],
)
def test_bad_recipe_is_one_error_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    assert train_main(["--recipe", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_bundled_dataset_trains_and_documents_its_languages(tmp_path):
    output = tmp_path / "bundled"
    argv = [
        "--dataset_name",
        "bundled:bible_es_en",
        "--max_train_samples",
        "64",
        "--max_test_samples",
        "4",
        "--num_attention_plots",
        "1",
        "--output_dir",
        str(output),
        "--max_steps",
        "2",
        *TINY,
    ]
    assert train_main(argv) == 0
    card = yaml.safe_load((output / "README.md").read_text().split("---")[1])
    assert card["language"] == ["en", "es"]
    assert "test_bleu" in json.loads((output / "results.json").read_text())


def test_budgeted_run_shows_minutes_and_leaves_no_unused_checkpoint(data_dir, tmp_path, capsys, recwarn):
    output = tmp_path / "budget"
    argv = [
        "--train_file",
        str(data_dir / "train.jsonl"),
        "--output_dir",
        str(output),
        "--max_train_minutes",
        "0.05",
        "--num_train_epochs",
        "1000",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "False",
        *TINY,
    ]
    assert train_main(argv) == 0
    assert not list(output.glob("checkpoint-*")), "save_strategy no: nothing uses a checkpoint"
    err = capsys.readouterr().err
    assert "min of the time budget" in err
    assert "/6000" not in err, "48 rows / batch 8 x 1000 epochs bounds the steps; the bar must not count them"
    assert not [w for w in recwarn.list if "pin_memory" in str(w.message)]
    results = json.loads((output / "results.json").read_text())
    assert 0.05 <= results["budget_minutes_used"] < 0.2


def test_training_option_averages_the_last_checkpoints_and_keeps_the_better(data_dir, tmp_path):
    from safetensors.torch import load_file

    output = tmp_path / "avg"
    argv = ["--train_file", str(data_dir / "train.jsonl"), "--validation_file", str(data_dir / "dev.jsonl"),
            "--output_dir", str(output), "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2",
            "--save_total_limit", "3", "--eval_strategy", "steps", "--eval_steps", "2",
            "--metric_for_best_model", "bleu", "--average_last_checkpoints", "2", *TINY]  # fmt: skip
    assert train_main(argv) == 0
    report = json.loads((output / "results.json").read_text())["checkpoint_averaging"]
    assert report["metric"] == "eval_bleu" and report["kept"] in ("averaged", "current")
    assert [Path(c).name for c in report["checkpoints"]] == ["checkpoint-4", "checkpoint-6"]
    assert isinstance(report["current"], float) and isinstance(report["averaged"], float)
    assert (report["averaged"] >= report["current"]) == (report["kept"] == "averaged")
    saved = load_file(output / "model.safetensors")
    last, before = (load_file(output / f"checkpoint-{step}" / "model.safetensors") for step in (6, 4))
    for name, tensor in saved.items():
        if report["kept"] == "averaged":
            expected = ((last[name].double() + before[name].double()) / 2).float()
            assert torch.equal(tensor, expected), name  # both sides round the same float64 mean once
        else:
            assert torch.equal(tensor, last[name]), name


def test_derived_sizes_follow_the_sizes_they_derive_from(tmp_path):
    """`attention_size` unset means `decoder_hidden_size`, also when the model is built by the train command."""
    from hf_seq2seq_attn.core.tokenization_seq2seq_attn import train_tokenizer
    from hf_seq2seq_attn.training.arguments import parse_train_args
    from hf_seq2seq_attn.training.train import build_model

    model_args, _, _ = parse_train_args(["--decoder_hidden_size", "24", "--output_dir", str(tmp_path)])
    assert model_args.attention_size is None
    tokenizer = train_tokenizer(WORDS + ENGLISH, kind="word", vocab_size=50, min_frequency=1)
    assert build_model(model_args, tokenizer).config.attention_size == 24
