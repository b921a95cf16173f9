"""hf_seq2seq_attn: attention RNN sequence-to-sequence models for the Hugging Face stack.

The package registers its classes with `AutoConfig`, `AutoModel` and `AutoModelForSeq2SeqLM`, and marks
them for remote code so `save_pretrained` writes `auto_map` plus the model files (loadable with
`trust_remote_code=True` where this package is absent).

Importing it is cheap: torch, transformers and the model are imported only when something needs them, so
that `seq2seq-attn --help` answers at once (PEP 562 `__getattr__`, as transformers itself does). The
registration ([`_register`]) still happens before anyone can use it:

- accessing a public name (`from hf_seq2seq_attn import Seq2SeqAttnConfig`) registers first;
- importing a model module directly (`from hf_seq2seq_attn.core.modeling_seq2seq_attn import ...`), or
  importing transformers after this package (`import hf_seq2seq_attn` then `AutoModelForSeq2SeqLM`),
  registers right after that import finishes, through a one-shot import hook ([`_RegisterAfterImport`]);
- if transformers is already imported when this package is, it registers at once.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType

    from .core.configuration_seq2seq_attn import Seq2SeqAttnConfig
    from .core.modeling_seq2seq_attn import (
        Seq2SeqAttnCache,
        Seq2SeqAttnForConditionalGeneration,
        Seq2SeqAttnModel,
        Seq2SeqAttnPreTrainedModel,
    )

__version__ = "0.1.0"

from . import _moved  # noqa: E402

logger = logging.getLogger(__name__)

# Public name -> the submodule defining it.
_PUBLIC_NAMES: dict[str, str] = {
    "Seq2SeqAttnCache": "core.modeling_seq2seq_attn",
    "Seq2SeqAttnConfig": "core.configuration_seq2seq_attn",
    "Seq2SeqAttnForConditionalGeneration": "core.modeling_seq2seq_attn",
    "Seq2SeqAttnModel": "core.modeling_seq2seq_attn",
    "Seq2SeqAttnPreTrainedModel": "core.modeling_seq2seq_attn",
}
__all__ = [  # a literal, so linters and type checkers read it
    "Seq2SeqAttnCache",
    "Seq2SeqAttnConfig",
    "Seq2SeqAttnForConditionalGeneration",
    "Seq2SeqAttnModel",
    "Seq2SeqAttnPreTrainedModel",
]

_registered = False
_executing: set[str] = set()  # watched modules being executed right now (see _RegisterAfterImport)
_lock = threading.RLock()  # one registration, even when two threads import at once


def _register() -> None:
    """Register the classes with transformers' Auto classes and for remote code; once, idempotent.

    Here rather than at the bottom of the model files, which are also copied into saved folders and run
    there as transformers' remote code: registering is this package's job, not the copies'.
    """
    global _registered
    with _lock:
        if _registered:
            return
        _RegisterAfterImport.uninstall()  # first: the imports below would come back through it
        from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

        from .core.configuration_seq2seq_attn import Seq2SeqAttnConfig
        from .core.modeling_seq2seq_attn import Seq2SeqAttnForConditionalGeneration, Seq2SeqAttnModel

        AutoConfig.register(Seq2SeqAttnConfig.model_type, Seq2SeqAttnConfig, exist_ok=True)
        AutoModel.register(Seq2SeqAttnConfig, Seq2SeqAttnModel, exist_ok=True)
        AutoModelForSeq2SeqLM.register(Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration, exist_ok=True)
        Seq2SeqAttnConfig.register_for_auto_class()
        Seq2SeqAttnModel.register_for_auto_class("AutoModel")
        Seq2SeqAttnForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
        _registered = True


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Runs [`_register`] right after `transformers` or one of our model modules finishes importing.

    Why: a user may never touch a name of this package after `import hf_seq2seq_attn` (they go straight to
    `AutoModelForSeq2SeqLM.from_pretrained(folder)`), or import a class from its module directly and call
    `save_pretrained`; both need the registration, and both import one of the watched modules first.

    The finder only wraps the loader the other finders return for a watched name. Registering waits
    until no watched module is executing, because `_register` imports the model modules: run while one
    of them is half-initialised (the model module imports transformers near its top), it would meet that
    half-initialised module. It then runs when the outermost of them finishes.
    """

    WATCHED = frozenset(
        {
            "transformers",
            f"{__name__}.core.configuration_seq2seq_attn",
            f"{__name__}.core.modeling_seq2seq_attn",
        }
    )

    @classmethod
    def install(cls) -> None:
        if not any(isinstance(finder, cls) for finder in sys.meta_path):
            sys.meta_path.insert(0, cls())

    @classmethod
    def uninstall(cls) -> None:
        sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, cls)]

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname not in self.WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader, fullname)
                return spec
        return None


class _RegisteringLoader(importlib.abc.Loader):
    """A watched module's own loader, calling [`_register`] once the module (and any outer one) is done."""

    def __init__(self, loader: Any, name: str):
        self._loader = loader
        self._name = name

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, get_resource_reader, ...
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        _executing.add(self._name)
        try:
            self._loader.exec_module(module)
        finally:
            _executing.discard(self._name)
        if not _executing and not _registered:
            try:
                _register()
            except ImportError as error:  # never break the import of transformers itself
                logger.warning("hf_seq2seq_attn: could not register with the Auto classes: %s", error)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _register()
    value = getattr(importlib.import_module(f".{_PUBLIC_NAMES[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC_NAMES})


_moved.install(__name__)  # the flat layout's module names keep working

if "transformers" in sys.modules:
    _register()  # nothing left to hook: transformers' Auto classes may be used right away
else:
    _RegisterAfterImport.install()
