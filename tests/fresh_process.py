"""Run a script in a fresh interpreter (for the remote-code tests, one where this package cannot be imported).

A saved folder must work for someone who has only transformers (the folder's copied code, loaded with
`trust_remote_code=True`); these helpers make that situation, so each test only writes what it checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Prepended to each script: any import of hf_seq2seq_attn fails there.
BLOCK_PACKAGE = """
import importlib.abc, sys
class _BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_seq2seq_attn" or name.startswith("hf_seq2seq_attn."):
            raise ImportError(f"{name} is deliberately not importable in this process")
sys.meta_path.insert(0, _BlockPackage())
"""
RESULT_PREFIX = "RESULT "


def run_script(
    script: str, args: list[str], workdir: Path, *, block_package: bool = False
) -> subprocess.CompletedProcess:
    """Run `script` (with `args`) in a fresh interpreter, offline, in `workdir`, with its own remote-code
    module cache there; with `block_package`, where hf_seq2seq_attn cannot be imported (nor found through
    PYTHONPATH).

    Fails the calling test with the script's stderr if it exits non-zero.
    """
    dropped = ("PYTHONPATH", "HF_MODULES_CACHE") if block_package else ("HF_MODULES_CACHE",)
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(workdir / "modules"), TOKENIZERS_PARALLELISM="false")
    completed = subprocess.run(
        [sys.executable, "-c", (BLOCK_PACKAGE if block_package else "") + script, *args],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def run_without_package(script: str, args: list[str], workdir: Path) -> subprocess.CompletedProcess:
    """[`run_script`] where this package cannot be imported: what a user with only transformers has."""
    return run_script(script, args, workdir, block_package=True)


def script_result(completed: subprocess.CompletedProcess) -> dict:
    """The JSON object a script printed on its `RESULT ` line."""
    line = next(line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX) :])
