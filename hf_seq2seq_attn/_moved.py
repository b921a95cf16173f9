"""Old module paths of the flat layout, kept importable: each one is the module that now holds its code.

`from hf_seq2seq_attn.modeling_ort import ...` (documented before the package had subpackages), and the
`pipeline_seq2seq_attn.py` that model folders saved then carry (it imports `hf_seq2seq_attn.alignment` by
name), keep working: a finder on `sys.meta_path` answers each old name with the new module itself, so
there is one module object, one set of classes, and `isinstance` checks hold across both names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# old module (below hf_seq2seq_attn.) -> the module that holds its code now
MOVED = {
    "configuration_seq2seq_attn": "core.configuration_seq2seq_attn",
    "modeling_seq2seq_attn": "core.modeling_seq2seq_attn",
    "tokenization_seq2seq_attn": "core.tokenization_seq2seq_attn",
    "pipeline_seq2seq_attn": "core.pipeline_seq2seq_attn",
    "inference": "tools.inference",
    "alignment": "tools.alignment",
    "plotting": "tools.plotting",
    "metrics": "tools.metrics",
    "hub": "tools.hub",
    "averaging": "tools.averaging",
    "g2p": "tools.g2p",
    "arguments": "training.arguments",
    "data": "training.data",
    "corpus": "training.corpus",
    "train": "training.train",
    "onnx_export": "serving.onnx_export",
    "modeling_ort": "serving.modeling_ort",
}


class _AliasLoader(importlib.abc.Loader):
    """Loads an old name by importing the new module and handing back that very object."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the new module has already run."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds `hf_seq2seq_attn.<old name>` for each entry of [`MOVED`]."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        parent, _, name = fullname.rpartition(".")
        if parent != self.package or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(f"{self.package}.{MOVED[name]}"))


def install(package: str) -> None:
    """Put the finder on `sys.meta_path` once (importing the package twice must not add a second)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder(package))
