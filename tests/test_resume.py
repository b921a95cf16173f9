"""Kill a real training run with a signal; resuming from the last checkpoint ends with the same weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import REPO, write_pairs

ARGS = [
    "--tokenizer_kind",
    "word",
    "--tokenizer_vocab_size",
    "50",
    "--embedding_size",
    "32",
    "--encoder_hidden_size",
    "64",
    "--decoder_hidden_size",
    "128",
    "--embedding_dropout",
    "0.1",
    "--per_device_train_batch_size",
    "4",
    "--learning_rate",
    "3e-3",
    "--max_steps",
    "200",
    "--save_strategy",
    "steps",
    "--save_steps",
    "10",
    "--save_total_limit",
    "2",
    "--logging_steps",
    "4",
    "--report_to",
    "none",
    "--seed",
    "7",
    "--num_attention_plots",
    "0",
    "--dataloader_num_workers",
    "0",
]


def command(train_file: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "scripts" / "train.py"),
        "--train_file",
        str(train_file),
        "--output_dir",
        str(output),
        *ARGS,
        *extra,
    ]


def environment() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def run_to_end(cmd: list[str]) -> None:
    result = subprocess.run(cmd, env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def kill_after_first_checkpoint(cmd: list[str], output: Path, sig: int) -> None:
    """Start training and send `sig` once the second checkpoint exists: mid-run, ~180 steps before the end."""
    # A shell's background jobs inherit SIGINT as ignored; a user's terminal delivers it, so restore that.
    process = subprocess.Popen(
        cmd,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not (output / "checkpoint-20" / "trainer_state.json").exists():
        assert process.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.05)
    process.send_signal(sig)
    process.wait(timeout=120)
    assert not (output / "model.safetensors").exists(), (
        "the run finished before the signal; nothing was interrupted"
    )
    if sig == signal.SIGINT:
        err = process.stderr.read()
        assert "resume with --resume_from_checkpoint" in err, err[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, sig):
    train_file = tmp_path / "train.jsonl"
    write_pairs(train_file, 64)
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run_to_end(command(train_file, reference))
    kill_after_first_checkpoint(command(train_file, interrupted), interrupted, sig)
    run_to_end(command(train_file, interrupted, "--resume_from_checkpoint", "True"))
    expected = load_file(reference / "model.safetensors")
    resumed = load_file(interrupted / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
