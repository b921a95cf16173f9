"""The layout: imports point down (core <- tools <- training/serving <- apps), old module names still work."""

import ast
import importlib
from pathlib import Path

import pytest

from hf_seq2seq_attn._moved import MOVED

PACKAGE = Path(__file__).resolve().parents[1] / "hf_seq2seq_attn"
# What each layer may import from the package (besides itself).
ALLOWED = {
    "core": set(),
    "tools": {"core"},
    "training": {"core", "tools"},
    "serving": {"core", "tools"},
}


def _package_imports(path: Path) -> set[str]:
    """The first component below the package of every relative import in `path`."""
    here = path.relative_to(PACKAGE).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[: len(here) - (node.level - 1)])
            target = base + (node.module.split(".") if node.module else [])
            if target:
                found.add(target[0])
            else:  # `from .. import name`: the names are the modules
                found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down(layer):
    for path in (PACKAGE / layer).rglob("*.py"):
        reached = _package_imports(path) - {layer}
        assert reached <= ALLOWED[layer], (
            f"{path.relative_to(PACKAGE)} imports {sorted(reached - ALLOWED[layer])}"
        )


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_names_are_the_new_modules(old):
    assert importlib.import_module(f"hf_seq2seq_attn.{old}") is importlib.import_module(
        f"hf_seq2seq_attn.{MOVED[old]}"
    )


def test_old_trainer_names_still_import():
    from hf_seq2seq_attn.training import Seq2SeqAttnTrainer, TimeBudget
    from hf_seq2seq_attn.training.trainer import Seq2SeqAttnTrainer as new

    assert Seq2SeqAttnTrainer is new
    assert TimeBudget is not None
