"""The explorer as a Hugging Face Space: `app.py`, `requirements.txt`, the card, the models and this package.

[`write_space`] writes the folder (local model folders copied as a Hub push would send them, the package
vendored so the Space runs where it is not published); [`push_space`] uploads it.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..tools.inference import check_model_type, looks_like_path
from .models import MAX_MODELS

SPACE_APP = '''"""Attention explorer Space, written by hf_seq2seq_attn.explorer.space.write_space.

Runs `hf_seq2seq_attn.explorer.app.build_app` unchanged; MODELS are folders next to this file or Hub ids.
"""

import os

from hf_seq2seq_attn.explorer.app import build_app, launch_app

MODELS = {models}
HERE = os.path.dirname(os.path.abspath(__file__))
demo = build_app(
    [os.path.join(HERE, m) if os.path.isdir(os.path.join(HERE, m)) else m for m in MODELS],
    allow_model_change=False,
)

if __name__ == "__main__":
    launch_app(demo)
'''

SPACE_README = """---
title: {title}
emoji: 🔍
colorFrom: blue
colorTo: indigo
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
pinned: false
tags:
  - seq2seq_attn
  - attention
---

Attention explorer for {models}: type a sentence and see which source tokens each output token attended to.
Made with the `hf_seq2seq_attn` package, whose code ships in this Space (`hf_seq2seq_attn/`).
"""


def _copy_model_folder(folder: str, destination: str) -> list[str]:
    """Copy what loading the model and its card need, local paths named as the copy; return the names.

    A Space is public: the files it gets are those of a Hub push (`hub.SHARED_FILE_PATTERNS`), so no
    pickle, training state, predictions or path of this machine goes with the model. An earlier copy is
    replaced, not merged: files a previous version copied there would otherwise be uploaded with the Space.
    """
    from ..tools.hub import copy_shared_files

    shutil.rmtree(destination, ignore_errors=True)
    return copy_shared_files(folder, destination)


def _space_requirements() -> list[str]:
    """The package's own dependencies (as installed) plus gradio: what the vendored copy needs."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("hf_seq2seq_attn") or []
    except PackageNotFoundError:  # running from a source tree that was never installed
        declared = ["torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "numpy"]
    core = [line.split(";")[0].strip() for line in declared if "extra ==" not in line]
    gradio = next((line.split(";")[0].strip() for line in declared if 'extra == "app"' in line), "gradio")
    return [*core, gradio]


def _vendor_package(output_dir: str) -> list[str]:
    """Copy this package's modules into the Space, so it runs where the package is not published.

    Every `.py` file of the package and its subpackages, but not the benchmark, which the app never runs.
    """
    package = Path(__file__).resolve().parents[1]  # hf_seq2seq_attn/, above this subpackage
    names = sorted(
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.relative_to(package).parts[0] != "benchmark"
    )
    for name in names:
        destination = Path(output_dir) / "hf_seq2seq_attn" / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / name, destination)
    return [f"hf_seq2seq_attn/{name}" for name in names]


def _write_text(path: str, text: str) -> None:
    """Write `text` to `path` as UTF-8 (a Space's files are read on another machine)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _space_models(names: Sequence[str], output_dir: str) -> tuple[list[str], list[str]]:
    """Copy the local model folders among `names` into `output_dir/model`, `model2`.

    Returns:
        `(references, written)`: what `app.py` loads for each name (the copy's subfolder, or the Hub id
        itself), and the files copied, relative to `output_dir`.
    """
    references, written = [], []
    for position, name in enumerate(names):
        if not looks_like_path(name):
            references.append(name)
            continue
        check_model_type(name)
        subfolder = "model" if position == 0 else f"model{position + 1}"
        copied = _copy_model_folder(os.path.expanduser(name), os.path.join(output_dir, subfolder))
        written += [f"{subfolder}/{f}" for f in copied]
        references.append(subfolder)
    return references, written


def _space_readme(names: Sequence[str]) -> str:
    """The Space's README: its card (gradio SDK and version, title) naming the models shown."""
    try:
        gradio_version = importlib.import_module("gradio").__version__
    except ImportError:
        gradio_version = "6.0.0"
    labels = ", ".join(os.path.basename(os.path.normpath(n)) if looks_like_path(n) else n for n in names)
    return SPACE_README.format(
        title=f"Attention explorer: {labels}"[:60], gradio_version=gradio_version, models=labels
    )


def write_space(
    models: str | Sequence[str], output_dir: str, requirements: Sequence[str] | None = None
) -> list[str]:
    """Write a Hugging Face Space that runs this explorer: `app.py`, `requirements.txt`, `README.md`.

    Args:
        models: one or two model folders (copied into `output_dir/model`, `model2`) or Hub ids (loaded
            from the Hub when the Space starts).
        output_dir: the Space folder (created).
        requirements: the `requirements.txt` lines; default: this package's dependencies and gradio (the
            package itself is copied into the Space, so it runs without being published anywhere).

    Returns:
        The paths written, relative to `output_dir`.
    """
    names = [models] if isinstance(models, str) else list(models)
    if not 1 <= len(names) <= MAX_MODELS:
        raise ValueError(f"A Space shows 1 or {MAX_MODELS} models, got {len(names)}.")
    os.makedirs(output_dir, exist_ok=True)
    references, copied = _space_models(names, output_dir)
    _write_text(os.path.join(output_dir, "app.py"), SPACE_APP.format(models=repr(references)))
    vendored = _vendor_package(output_dir)
    lines = requirements or _space_requirements()
    _write_text(os.path.join(output_dir, "requirements.txt"), "".join(f"{line}\n" for line in lines))
    _write_text(os.path.join(output_dir, "README.md"), _space_readme(names))
    return ["app.py", "requirements.txt", "README.md", *copied, *vendored]


def push_space(
    models: str | Sequence[str], repo_id: str, private: bool = False, token: str | None = None
) -> str:
    """Write the Space ([`write_space`]) to a temporary folder and upload it to `repo_id`; return its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        write_space(models, folder)
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=folder, repo_id=repo_id, repo_type="space", commit_message="Attention explorer"
        )
    return f"https://huggingface.co/spaces/{repo_id}"
