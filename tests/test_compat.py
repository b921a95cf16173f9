"""What must hold on every transformers release the package declares (issue 16): the newest and the lowest."""

from __future__ import annotations

import subprocess
import sys

from tiny_inference_model import save_tiny_model
from transformers.modeling_outputs import Seq2SeqLMOutput

from hf_seq2seq_attn.core.modeling_seq2seq_attn import CACHE_NAME


def test_cache_name_is_the_installed_transformers_field():
    """`CACHE_NAME` is the field transformers' outputs (and `generate()`) use for the cache."""
    assert CACHE_NAME in Seq2SeqLMOutput.__dataclass_fields__


def test_translate_prints_no_deprecation_warning(tmp_path):
    """A real `translate` (greedy, beam, scores) in a fresh process: transformers warns about nothing."""
    model = save_tiny_model(tmp_path / "model")
    (tmp_path / "in.txt").write_text("hola mundo\nel gato negro\n")
    for options in (["--num_beams", "1"], ["--num_beams", "3", "--scores"]):
        result = subprocess.run(
            [sys.executable, "-m", "hf_seq2seq_attn", "translate", "--model", model, "--no_progress"]
            + ["--input", str(tmp_path / "in.txt"), *options],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 2
        assert "deprecat" not in result.stderr.lower(), result.stderr
