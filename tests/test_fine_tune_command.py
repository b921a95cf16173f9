"""`seq2seq-attn train --model_name_or_path`: continue from a trained model (issue 17)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_train import TINY, write_pairs

from hf_seq2seq_attn.training.train import main as train_main


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """A tiny model trained from scratch, and a second small corpus to fine-tune it on."""
    folder = tmp_path_factory.mktemp("fine-tune")
    write_pairs(folder / "train.jsonl", 48)
    write_pairs(folder / "domain.jsonl", 16, offset=4)
    argv = ["--train_file", str(folder / "train.jsonl"), "--output_dir", str(folder / "base")]
    assert train_main([*argv, "--max_steps", "6", "--save_strategy", "no", *TINY]) == 0
    return folder


def fine_tune(started, name: str, *options: str) -> int:
    return train_main(
        ["--model_name_or_path", str(started / "base"), "--train_file", str(started / "domain.jsonl")]
        + ["--output_dir", str(started / name), "--save_strategy", "no", "--report_to", "none", *options]
    )


def test_starts_from_the_model_weights_tokenizer_and_architecture(started):
    """With a learning rate of 0 the fine-tuned folder holds the starting weights bit for bit."""
    assert (
        fine_tune(started, "same", "--max_steps", "2", "--learning_rate", "0", "--test_num_beams", "1") == 0
    )
    base, tuned = (
        load_file(started / "base" / "model.safetensors"),
        load_file(started / "same" / "model.safetensors"),
    )
    assert base.keys() == tuned.keys()
    assert all(torch.equal(base[name], tuned[name]) for name in base)
    assert (started / "same" / "tokenizer.json").read_text() == (
        started / "base" / "tokenizer.json"
    ).read_text()
    config = json.loads((started / "same" / "config.json").read_text())
    assert config["decoder_hidden_size"] == 32 and config["embedding_size"] == 16  # TINY's, not the defaults


def test_dropouts_may_change(started):
    assert fine_tune(started, "dropout", "--max_steps", "2", "--embedding_dropout", "0.35") == 0
    assert json.loads((started / "dropout" / "config.json").read_text())["embedding_dropout"] == 0.35


def test_architecture_flags_that_contradict_the_model_are_refused(started, capsys):
    assert (
        fine_tune(started, "bad", "--max_steps", "2", "--decoder_hidden_size", "64", "--rnn_type", "lstm")
        == 2
    )
    error = capsys.readouterr().err
    assert any(line.startswith("error: --model_name_or_path") for line in error.splitlines())
    assert "Traceback" not in error
    assert (
        "--decoder_hidden_size 64 (the model has 32)" in error
        and "--rnn_type lstm (the model has gru)" in error
    )


def test_a_foreign_model_is_refused(started, tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    code = train_main(["--model_name_or_path", str(tmp_path), "--train_file", str(started / "domain.jsonl")])
    assert code == 2 and "'bert'" in capsys.readouterr().err
