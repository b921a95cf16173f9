"""Training: options and recipes, corpora of any size, the Trainer and its callbacks, `seq2seq-attn train`.

Builds on `core` (the model) and `tools` (translate, metrics, plots, model card). Importing this package
loads nothing heavy; `hf_seq2seq_attn.training.Seq2SeqAttnTrainer` and the other names of `trainer`
(this package's name was once that module's) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module(f"{__name__}.trainer"), name)
