"""Shared fixtures: a tiny config, fixed seeds, offline Hub (the helpers tests import live in helpers.py)."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Training writes its corpus's Arrow cache under HF_DATASETS_CACHE: keep the suite's runs (and the
# subprocesses they start, which inherit this) out of the user's cache.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="hf_seq2seq_attn_tests_datasets_")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import make_config  # noqa: E402

from hf_seq2seq_attn import Seq2SeqAttnConfig  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> Seq2SeqAttnConfig:
    return make_config()
