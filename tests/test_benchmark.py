"""scripts/benchmark.py: a smoke run of every figure, and the analytic FLOP counter against a hand count."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def bench_script():  # not `benchmark`: pytest-benchmark owns that fixture name
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the script's annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_quick_run_prints_every_figure(bench_script, capsys):
    assert bench_script.main(["--quick", "--threads", "1", "--repeats", "1", "--warmup", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for figure in bench_script.FIGURES:
        rows = [line for line in lines if line.split()[:1] == [figure]]
        assert rows, f"no {figure!r} row in:\n" + "\n".join(lines)
        for row in rows:
            # The first metric of a row is its headline figure (tokens/s, ms, MiB, ...).
            first = re.search(r"threads=1\s+\S+?=([0-9.eE+-]+)", row)
            assert first and float(first.group(1)) > 0, row
    assert any(line.startswith("summary") for line in lines)
    assert any(line.split()[:2] == ["train", "d2l"] for line in lines), "baseline rows missing"


def test_missing_baseline_is_skipped(bench_script, capsys, tmp_path):
    argv = [
        "--quick",
        "--threads",
        "1",
        "--warmup",
        "0",
        "--only",
        "train",
        "--baseline",
        str(tmp_path / "none.py"),
    ]
    assert bench_script.main(argv) == 0
    out = capsys.readouterr().out
    assert "not found" in out
    assert re.search(r"^train\s+ours\s", out, re.MULTILINE)
    assert not re.search(r"^train\s+d2l\s", out, re.MULTILINE)


def test_flop_counter_matches_hand_count(bench_script):
    config = Seq2SeqAttnConfig(
        vocab_size=10,
        embedding_size=2,
        encoder_hidden_size=3,  # K = 6
        decoder_hidden_size=4,
        attention_size=5,
        embedding_dropout=0.0,
        readout_dropout=0.0,
    )
    batch, src_len, tgt_len = 2, 3, 4
    # Per source token: encoder GRU, 2 directions x (input 2*9*2 + recurrent 2*9*3), then keys 2*6*5.
    encoder = batch * src_len * (2 * (36 + 54) + 60)
    bridge = batch * 2 * 6 * 4
    # Per target step: query 2*4*5, scores 2*3*5, context 2*3*6, GRU input 2*12*(2+6) and
    # recurrent 2*12*4, read-out 2*(4+6+2)*2, vocabulary 2*2*10.
    decoder = batch * tgt_len * (40 + 30 + 36 + 192 + 96 + 48 + 40)
    hand = encoder + bridge + decoder
    assert bench_script.forward_flops(config, batch, src_len, tgt_len) == hand == 5392
    assert bench_script.train_flops_per_step(config, batch, src_len, tgt_len) == 3 * hand

    # The same count as torch's own matmul FLOP counter on a real forward pass.
    model = Seq2SeqAttnForConditionalGeneration(config)
    input_ids = torch.randint(4, 10, (batch, src_len))
    labels = torch.randint(4, 10, (batch, tgt_len))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids, labels=labels)
    assert counter.get_total_flops() == hand


def test_flop_counter_rejects_uncounted_configs(bench_script):
    with pytest.raises(ValueError, match="additive"):
        bench_script.forward_flops(Seq2SeqAttnConfig(attention_type="general"), 1, 1, 1)
