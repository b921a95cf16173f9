"""Loading models for the explorer: checked before anything loads, cached, shared by every session."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from ..tools.inference import load_model_and_tokenizer

# Models shown side by side (and written into a Space).
MAX_MODELS = 2


def load_model(name: str) -> tuple[Any, Any]:
    """Load and check a model for the explorer: a folder or a Hub id (from the cache when offline).

    The folder's `config.json` is checked before anything loads, and no code from it runs
    ([`hf_seq2seq_attn.tools.inference.load_model_and_tokenizer`]): the model box of a public explorer is safe to type into.

    Raises:
        `FileNotFoundError`, `ValueError`, `TypeError`: with a message fit for the page or the terminal.
    """
    name = name.strip()
    if not name:
        raise ValueError("No model given: type a model folder or a Hub id.")
    return load_model_and_tokenizer(name)


class ModelCache:
    """Loaded models by name, shared by all sessions of the app (a few at most), loaded once each."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._models: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[Any, Any]:
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            loaded = load_model(name)
            self._models[name] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return loaded


def friendly_error(err: BaseException) -> str:
    """One line for the page: the message of a user-facing error, the type for anything else."""
    if isinstance(err, (FileNotFoundError, ValueError, TypeError, OSError)):
        text = str(err).strip().strip('"') or type(err).__name__
    else:
        text = f"something went wrong ({type(err).__name__}); see the server log."
    return text.splitlines()[0]
