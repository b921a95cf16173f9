"""What leaves the machine: Hub pushes (library `Seq2SeqAttnTrainer`, the train command's `push_folder`) and
Space folders hold the model files only: no pickle, no Hub token, no local path, no training state.

Only the network is replaced (`HfApi.create_repo` and `HfApi.create_commit`, the calls that would reach the
Hub); transformers' Trainer, huggingface_hub's `upload_folder` and our code run for real.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi, RepoUrl
from test_train import TINY, write_pairs
from tiny_inference_model import PAIRS, build_tiny_model

TOKEN = "hf_secretTOKEN0123456789abcdef"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle")
# The files a trained model folder must share: loading (weights, config, code, tokenizer) and the card.
MODEL_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "configuration_seq2seq_attn.py",
    "modeling_seq2seq_attn.py",
}
# What training leaves in the folder besides the model; none of it may be shared.
NOT_SHARED = {
    "training_args.json",
    "training_args.bin",
    "trainer_state.json",
    "test_predictions.txt",
    "pytorch_model.bin",
    "notes.pkl",
}


class HubRecorder:
    """Stands in for the Hub: records each commit's files (path -> bytes) instead of sending them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        import huggingface_hub.hf_api

        # With `hf_xet`, upload_folder streams through a pipelined uploader; without it, it ends in one
        # `create_commit` with the same operations, which is the call recorded here.
        monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False, raising=False)
        self.repos: list[str] = []
        self.commits: list[dict[str, bytes]] = []
        monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kwargs: self.create_repo(repo_id))
        monkeypatch.setattr(
            HfApi, "create_commit", lambda api, *args, **kwargs: self.create_commit(*args, **kwargs)
        )
        # The Hub's check of a card's metadata is a request too; check locally that it is a YAML mapping.
        monkeypatch.setattr(
            HfApi, "_validate_yaml", lambda api, content, **kwargs: self.validate_yaml(content)
        )

    def create_repo(self, repo_id: str) -> RepoUrl:
        self.repos.append(repo_id)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def validate_yaml(self, content: str) -> None:
        assert isinstance(yaml.safe_load(content.split("---")[1]), dict), "a card's metadata is a mapping"

    def create_commit(self, repo_id: str, operations, **kwargs):
        files = {}
        for operation in operations:
            with operation.as_file() as handle:
                files[operation.path_in_repo] = handle.read()
        self.commits.append(files)
        if kwargs.get("run_as_future"):  # the real method returns a Future then
            future: Future = Future()
            future.set_result(None)
            return future
        return None


def assert_shareable(files: dict[str, bytes], local_paths: list[str]) -> None:
    """No pickle, no token, no local path, nothing of the training state."""
    assert not [name for name in files if name.endswith(PICKLE_SUFFIXES)], sorted(files)
    assert not NOT_SHARED & set(files), sorted(NOT_SHARED & set(files))
    assert not [name for name in files if "/" in name], "checkpoints, runs: training state, not the model"
    assert not [name for name, data in files.items() if TOKEN.encode() in data]
    for path in local_paths:
        leaking = [name for name, data in files.items() if path.encode() in data]
        assert not leaking, (path, leaking)


# ----- 1. the library Trainer ------------------------------------------------------------------------
def tiny_trainer(output: Path, **overrides):
    """A real `Seq2SeqAttnTrainer` of the tiny model, pushing to `me/x` with a Hub token."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments

    from hf_seq2seq_attn.training.trainer import Seq2SeqAttnTrainer

    model, tokenizer = build_tiny_model()
    rows = tokenizer([s for s, _ in PAIRS] * 4, text_target=[t for _, t in PAIRS] * 4)
    values = dict(
        output_dir=str(output),
        use_cpu=True,
        per_device_train_batch_size=4,
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
        report_to="none",
        disable_tqdm=True,
        push_to_hub=True,
        hub_model_id="me/x",
        hub_token=TOKEN,
    )
    values.update(overrides)
    return Seq2SeqAttnTrainer(
        model=model,
        args=Seq2SeqTrainingArguments(**values),
        train_dataset=Dataset.from_dict(dict(rows)),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        processing_class=tokenizer,
    )


@pytest.mark.parametrize("strategy", ["every_save", "end"])
def test_library_trainer_pushes_no_pickle_and_no_token(tmp_path, monkeypatch, strategy):
    """Every Trainer push path: checkpoint pushes during training, `save_model()` and `push_to_hub()`."""
    hub = HubRecorder(monkeypatch)
    output = tmp_path / "out"
    trainer = tiny_trainer(output, hub_strategy=strategy)
    trainer.train()
    trainer.save_model()  # with push_to_hub=True this pushes too
    trainer.push_to_hub()
    assert hub.repos == ["me/x"]
    assert len(hub.commits) == (2 if strategy == "end" else 4), [sorted(c) for c in hub.commits]
    for files in hub.commits:
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files), sorted(files)
        assert_shareable(files, [str(tmp_path)])
    # Not only never pushed: the token-holding pickle is never left on disk, checkpoints included.
    assert not list(output.rglob("training_args.bin"))
    saved_args = json.loads((output / "training_args.json").read_text())
    assert saved_args["hub_token"] == "<HUB_TOKEN>"


@pytest.mark.parametrize("strategy", ["checkpoint", "all_checkpoints"])
def test_library_trainer_refuses_to_push_resumable_checkpoints(tmp_path, monkeypatch, strategy):
    """A resumable checkpoint is optimizer.pt / scheduler.pt / rng_state.pth: pickles, so never uploaded."""
    hub = HubRecorder(monkeypatch)
    with pytest.raises(ValueError, match="optimizer.pt"):
        tiny_trainer(tmp_path / "out", hub_strategy=strategy)
    assert hub.repos == [] and hub.commits == [], "refused before anything reached the Hub"
    tiny_trainer(tmp_path / "local", hub_strategy=strategy, push_to_hub=False)  # no push, nothing to refuse


# ----- 2. the train command's folder: Hub push and Space ---------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real `seq2seq-attn train` output: checkpoints, averaging, test predictions, training state."""
    from hf_seq2seq_attn.training.train import main as train_main

    data = tmp_path_factory.mktemp("data")
    write_pairs(data / "train.jsonl", 48)
    write_pairs(data / "dev.jsonl", 8, offset=3)
    write_pairs(data / "test.jsonl", 8, offset=5)
    output = tmp_path_factory.mktemp("publish") / "run"
    output.mkdir()
    # Left there by other tools (an old `torch.save`, a notebook): nothing of it may be shared.
    (output / "pytorch_model.bin").write_bytes(b"pickled weights")
    (output / "notes.pkl").write_bytes(b"pickled notes")
    argv = ["--train_file", str(data / "train.jsonl"), "--validation_file", str(data / "dev.jsonl"),
            "--test_file", str(data / "test.jsonl"), "--output_dir", str(output), "--max_steps", "4",
            "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
            "--metric_for_best_model", "bleu", "--average_last_checkpoints", "2", "--hub_token", TOKEN,
            *TINY, "--num_attention_plots", "1"]  # fmt: skip
    assert train_main(argv) == 0
    # What transformers < 5 wrote into config.json for a model loaded from this folder.
    config = json.loads((output / "config.json").read_text())
    (output / "config.json").write_text(json.dumps({"_name_or_path": str(output), **config}, indent=2))
    return output


def local_paths(folder: Path) -> list[str]:
    return [str(folder.resolve()), os.path.abspath(folder), str(folder.parent)]


def test_push_folder_sends_the_model_files_only(trained, monkeypatch):
    from hf_seq2seq_attn.tools.hub import push_folder

    assert str(trained) in (trained / "README.md").read_text(), "the card of an unpushed run names its folder"
    hub = HubRecorder(monkeypatch)
    sent = push_folder(str(trained), "me/x", token=TOKEN)
    assert hub.repos == ["me/x"] and len(hub.commits) == 1
    files = hub.commits[0]
    assert sorted(files) == sent
    assert MODEL_FILES | {"README.md", "attention_0.png", "results.json"} <= set(files), sorted(files)
    assert_shareable(files, local_paths(trained))
    # The card's usage lines and config.json name the repository, not the folder it was trained in.
    assert json.loads(files["config.json"])["_name_or_path"] == "me/x"
    assert 'from_pretrained("me/x", trust_remote_code=True)' in files["README.md"].decode()
    # results.json is shared: metrics and timings, checkpoint names without their folder.
    results = json.loads(files["results.json"])
    assert "test_bleu" in results
    assert results["checkpoint_averaging"]["checkpoints"] == ["checkpoint-2", "checkpoint-4"]


def test_write_space_copies_the_model_files_only(trained, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from hf_seq2seq_attn.explorer import write_space

    space = tmp_path / "space"
    (space / "model").mkdir(parents=True)
    (space / "model" / "training_args.json").write_text(str(trained))  # copied there by an older version
    written = write_space(str(trained), str(space))
    model_dir = space / "model"
    files = {p.name: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert sorted(f"model/{name}" for name in files) == sorted(w for w in written if w.startswith("model/"))
    assert_shareable(files, local_paths(trained))
    assert MODEL_FILES | {"README.md", "attention_0.png"} <= set(files), sorted(files)
    # Local paths become the folder's name in the Space, which is how app.py and the card's lines load it.
    assert json.loads(files["config.json"])["_name_or_path"] == "model"
    assert 'from_pretrained("model", trust_remote_code=True)' in files["README.md"].decode()
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert model.generate(**tokenizer(["uno dos"], return_tensors="pt"), max_new_tokens=3).shape[0] == 1
