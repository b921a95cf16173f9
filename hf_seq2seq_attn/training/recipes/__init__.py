"""The recipes shipped with the package: YAML files of `train` options (`seq2seq-attn recipes` lists them).

Light on purpose (pathlib only): `seq2seq-attn recipes` must answer without importing transformers.
"""

from __future__ import annotations

from pathlib import Path

RECIPE_DIR = Path(__file__).parent


def recipe_names() -> list[str]:
    """Names of the recipes shipped with the package."""
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str) -> Path:
    """A shipped recipe by name, or a YAML file of the user's own.

    Raises:
        `DataError`: neither a shipped recipe nor an existing file.
    """
    if name_or_path in recipe_names():
        return RECIPE_DIR / f"{name_or_path}.yaml"
    path = Path(name_or_path)
    if path.is_file():
        return path
    from ..data import DataError  # only on this error path: it imports the data readers

    raise DataError(
        f"--recipe {name_or_path!r}: not a shipped recipe ({', '.join(recipe_names())}) nor a YAML file."
    )
