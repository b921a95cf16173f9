"""Checkpoint averaging: the element-wise mean of the weights of several checkpoints of one run.

Averaging the last few checkpoints of a training run (Vaswani et al. 2017, §6.1; OpenNMT-py, fairseq and
Marian all ship it) smooths the noise of the last optimizer steps and usually scores as well as the best
single checkpoint or better, for free.

- [`last_checkpoints`]: the newest N `checkpoint-<step>` folders of a training output folder.
- [`average_checkpoints`]: average folders into a normal model folder (safetensors weights, config with
  `auto_map`, model code, tokenizer, generation config, model card), never a pickle.
- [`average_and_keep_best`]: at the end of training, average the last N saved checkpoints into the
  trainer's model and keep the average only if it validates at least as well as the current weights.
- [`main`]: `seq2seq-attn average --checkpoints A B C --output DIR` or `--last N --run_dir DIR`.

Rules:
- Every folder must have the same config (apart from bookkeeping fields such as `transformers_version`),
  the same tokenizer vocabulary and the same tensor names, shapes and dtypes; otherwise a `ValueError`
  names the first field, token or tensor that differs.
- Floating-point tensors are averaged in float64 and rounded once to their own dtype.
- Integer and bool tensors (none in today's Seq2SeqAttn models, but e.g. a step counter or a mask
  buffer in a future one) are taken from the newest checkpoint: a mean of counters or masks is not a
  count or a mask, and the newest value is the one that matches the newest weights.
- Tied weights (shared embeddings, tied output layer) are stored once in a safetensors file, so they
  are averaged once and stay tied in the output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .inference import check_model_type

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
# Config fields that record where, with what or with which extras a folder was written, not what the model is
# (the final folder of a run has `custom_pipelines`, its checkpoints do not).
CONFIG_BOOKKEEPING = frozenset({"_name_or_path", "transformers_version", "_commit_hash", "custom_pipelines"})
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
CARD_NAME = "README.md"


# --------------------------------------------------------------------------------------------
# Finding checkpoints
# --------------------------------------------------------------------------------------------
def _has_weights(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, name)) for name in (WEIGHTS_NAME, WEIGHTS_INDEX_NAME))


def checkpoint_folders(output_dir: str) -> list[str]:
    """All `checkpoint-<step>` folders of `output_dir` that hold safetensors weights, oldest step first."""
    if not os.path.isdir(output_dir):
        raise FileNotFoundError(f"No training output folder at {output_dir!r}.")
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_PATTERN.match(name)
        folder = os.path.join(output_dir, name)
        if match and os.path.isdir(folder):
            if _has_weights(folder):
                found.append((int(match.group(1)), folder))
            else:
                logger.warning(
                    "Skipping %s: it has no %s (cut off while being written?).", folder, WEIGHTS_NAME
                )
    return [folder for _, folder in sorted(found)]


def last_checkpoints(output_dir: str, n: int) -> list[str]:
    """The newest `n` checkpoint folders of a training run, by step, returned oldest first.

    Raises:
        `ValueError`: `n < 1`, or fewer than `n` checkpoints with weights exist.
        `FileNotFoundError`: `output_dir` does not exist.
    """
    if n < 1:
        raise ValueError(f"The number of checkpoints to average must be >= 1, got {n}.")
    folders = checkpoint_folders(output_dir)
    if len(folders) < n:
        names = ", ".join(os.path.basename(f) for f in folders) or "none"
        raise ValueError(
            f"Asked for the last {n} checkpoints but {output_dir!r} has {len(folders)} ({names}). Train with "
            f"--save_total_limit {n} or more (and --save_strategy steps), or average fewer."
        )
    return folders[-n:]


# --------------------------------------------------------------------------------------------
# Reading and checking
# --------------------------------------------------------------------------------------------
def _read_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _load_safetensors(path: str) -> dict[str, torch.Tensor]:
    """`load_file(path)`, with a damaged file reported as a `ValueError` that names it.

    A checkpoint cut off while being written (disk full, a killed job, a partial copy) has a header that
    promises more bytes than the file holds; safetensors then raises its own error type, which names
    neither the file nor a way out.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} is missing; the checkpoint folder is incomplete.")
    try:
        return load_file(path)
    except SafetensorError as error:
        raise ValueError(
            f"{path!r} is truncated or corrupted ({error}); re-copy the checkpoint or leave it out."
        ) from None


def _shard_names(index: str) -> list[str]:
    """The shard files listed by a `model.safetensors.index.json`, each once, sorted."""
    try:
        weight_map = _read_json(index)["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{index!r} is not a safetensors index (a JSON object with a `weight_map`): {error}"
        ) from None
    if not all(isinstance(shard, str) and os.path.basename(shard) == shard for shard in shards):
        raise ValueError(f"{index!r} lists shard names that are not plain file names: {shards[:5]}.")
    return shards


def read_weights(folder: str) -> dict[str, torch.Tensor]:
    """The tensors of a saved model folder (one safetensors file or a sharded index), never a pickle.

    Raises:
        `FileNotFoundError`: the folder has neither weights file, or a shard the index lists is missing.
        `ValueError`: a weights file is truncated or corrupted, or the index is not valid JSON (names the file).
    """
    single = os.path.join(folder, WEIGHTS_NAME)
    if os.path.isfile(single):
        return _load_safetensors(single)
    index = os.path.join(folder, WEIGHTS_INDEX_NAME)
    if os.path.isfile(index):
        tensors: dict[str, torch.Tensor] = {}
        for shard in _shard_names(index):
            tensors.update(_load_safetensors(os.path.join(folder, shard)))
        return tensors
    raise FileNotFoundError(
        f"{folder!r} has no {WEIGHTS_NAME} (or {WEIGHTS_INDEX_NAME}); only safetensors checkpoints are averaged."
    )


def _config(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder!r} has no config.json, so it is not a saved model folder.")
    config = _read_json(path)
    return {key: value for key, value in config.items() if key not in CONFIG_BOOKKEEPING}


def _check_configs(folders: Sequence[str]) -> None:
    reference = _config(folders[0])
    for folder in folders[1:]:
        other = _config(folder)
        for key in sorted(set(reference) | set(other)):
            if reference.get(key, "<absent>") != other.get(key, "<absent>"):
                raise ValueError(
                    f"Cannot average: config field {key!r} differs: {reference.get(key, '<absent>')!r} in "
                    f"{folders[0]!r} but {other.get(key, '<absent>')!r} in {folder!r}. Only checkpoints of one "
                    "model (one training run) can be averaged."
                )


def _vocabulary(folder: str) -> dict[str, int] | None:
    """Token -> id of the folder's `tokenizer.json` (model vocabulary and added tokens), or None."""
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        return None
    data = _read_json(path)
    vocab = data.get("model", {}).get("vocab") or {}
    if isinstance(vocab, list):  # Unigram models store [token, score] pairs
        vocab = {token: index for index, (token, _) in enumerate(vocab)}
    vocabulary = dict(vocab)
    vocabulary.update({token["content"]: token["id"] for token in data.get("added_tokens", [])})
    return vocabulary


def _check_vocabularies(folders: Sequence[str]) -> None:
    with_vocab: list[tuple[str, dict[str, int]]] = []
    for folder in folders:
        vocab = _vocabulary(folder)
        if vocab is not None:
            with_vocab.append((folder, vocab))
    if not with_vocab:
        return
    first_folder, first = with_vocab[0]
    for folder, vocab in with_vocab[1:]:
        if len(vocab) != len(first):
            raise ValueError(
                f"Cannot average: the tokenizer vocabulary size differs: {len(first)} in {first_folder!r} but "
                f"{len(vocab)} in {folder!r}. The checkpoints were trained with different tokenizers."
            )
        for token, index in first.items():
            if vocab.get(token) != index:
                where = f"id {vocab[token]}" if token in vocab else "absent"
                raise ValueError(
                    f"Cannot average: the tokenizer vocabulary differs: token {token!r} has id {index} in "
                    f"{first_folder!r} but is {where} in {folder!r}. The checkpoints were trained with different "
                    "tokenizers."
                )


def _check_tensors(names: Sequence[str], weights: Sequence[dict[str, torch.Tensor]]) -> None:
    reference = weights[0]
    for folder, tensors in zip(names[1:], weights[1:], strict=True):
        for key in sorted(set(reference) | set(tensors)):
            if key not in tensors or key not in reference:
                holder, lacker = (names[0], folder) if key in reference else (folder, names[0])
                raise ValueError(f"Cannot average: tensor {key!r} is in {holder!r} but not in {lacker!r}.")
            a, b = reference[key], tensors[key]
            if a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(
                    f"Cannot average: tensor {key!r} is {tuple(a.shape)} {a.dtype} in {names[0]!r} but "
                    f"{tuple(b.shape)} {b.dtype} in {folder!r}."
                )


def check_compatible(folders: Sequence[str]) -> None:
    """Raise `ValueError` naming the first config field, vocabulary entry or tensor that differs."""
    _check_configs(folders)
    _check_vocabularies(folders)


# --------------------------------------------------------------------------------------------
# Averaging
# --------------------------------------------------------------------------------------------
def average_state_dicts(weights: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of state dicts with the same keys, shapes and dtypes.

    Floating tensors: summed in float64, divided once, rounded once to their dtype. Integer and bool
    tensors: the last state dict's (see the module docstring for why).
    """
    if not weights:
        raise ValueError("Nothing to average: pass at least one checkpoint.")
    averaged: dict[str, torch.Tensor] = {}
    for key, last in weights[-1].items():
        if not last.is_floating_point():
            averaged[key] = last.clone()
            continue
        total = torch.zeros(last.shape, dtype=torch.float64)
        for tensors in weights:
            total += tensors[key].to(torch.float64)
        averaged[key] = (total / len(weights)).to(last.dtype)
    return averaged


def average_weights(folders: Sequence[str]) -> dict[str, torch.Tensor]:
    """Check `folders` are checkpoints of one model and return the mean of their weights."""
    if not folders:
        raise ValueError("Nothing to average: pass at least one checkpoint folder.")
    for folder in folders:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"No checkpoint folder at {folder!r}.")
        check_model_type(folder)  # config.json read as JSON: nothing in the folder runs
    check_compatible(folders)
    weights = [read_weights(folder) for folder in folders]
    _check_tensors(list(folders), weights)
    return average_state_dicts(weights)


def load_into(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy `weights` into `model`; names missing from `weights` must be tied aliases of loaded ones."""
    state = model.state_dict()
    unknown = sorted(set(weights) - set(state))
    if unknown:
        raise ValueError(f"The averaged weights have tensors the model lacks: {unknown[:5]}.")
    loaded_storage = {state[name].data_ptr() for name in weights}
    untied = sorted(
        name for name in set(state) - set(weights) if state[name].data_ptr() not in loaded_storage
    )
    if untied:
        raise ValueError(
            f"The averaged weights lack {untied[:5]}, which are not tied to any averaged tensor."
        )
    for name, tensor in weights.items():
        if state[name].shape != tensor.shape:
            raise ValueError(
                f"Tensor {name!r} is {tuple(tensor.shape)} but the model has {tuple(state[name].shape)}."
            )
    with torch.no_grad():
        for name, tensor in weights.items():
            state[name].copy_(tensor.to(device=state[name].device, dtype=state[name].dtype))


def _card_with_note(card_path: str, folders: Sequence[str]) -> str:
    with open(card_path, encoding="utf-8") as handle:
        card = handle.read().rstrip("\n")
    names = ", ".join(f"`{os.path.basename(os.path.normpath(f))}`" for f in folders)
    return (
        f"{card}\n\n## Checkpoint averaging\n\nThe weights in this folder are the element-wise mean of "
        f"{len(folders)} checkpoints ({names}). Scores reported above were measured before averaging.\n"
    )


def average_checkpoints(folders: Sequence[str], output_dir: str, card_source: str | None = None) -> str:
    """Average checkpoint folders of one model into a new, normal model folder.

    Args:
        folders (`list[str]`): saved model folders (e.g. `checkpoint-N` of one run), oldest first; the
            newest (last) gives the config, generation config, code files and tokenizer.
        output_dir (`str`): where to write; must not exist or be empty.
        card_source (`str`, *optional*): folder whose `README.md` (model card) is copied, with a note on the
            averaging appended; defaults to the newest input folder that has one.

    Returns:
        `output_dir`, holding `model.safetensors`, `config.json` (with `auto_map`), the model code files,
        `generation_config.json`, the tokenizer files and the card; no pickle files.

    Raises:
        `ValueError`: the folders differ in config, vocabulary or tensors (naming the field), or
            `output_dir` is not empty.
        `FileNotFoundError`: a folder, its config or its safetensors weights are missing.
    """
    from ..core.modeling_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
    from ..core.tokenization_seq2seq_attn import load_tokenizer

    folders = [os.fspath(folder) for folder in folders]
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise ValueError(
            f"The output folder {output_dir!r} is not empty; choose a new folder for the averaged model."
        )
    weights = average_weights(folders)
    newest = folders[-1]
    model = Seq2SeqAttnForConditionalGeneration.from_pretrained(newest, trust_remote_code=False)
    load_into(model, weights)
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)  # safetensors, config + auto_map, code files, generation config
    tokenizer_folder = next((f for f in reversed(folders) if _vocabulary(f) is not None), None)
    if tokenizer_folder is not None:
        load_tokenizer(tokenizer_folder).save_pretrained(output_dir)
    else:
        logger.warning("No tokenizer in %s: the averaged folder has none either.", ", ".join(folders))
    # Remote code saved beside the model that save_pretrained does not know about (the translation pipeline).
    for name in sorted(os.listdir(newest)):
        source = os.path.join(newest, name)
        if (
            name.endswith(".py")
            and os.path.isfile(source)
            and not os.path.exists(os.path.join(output_dir, name))
        ):
            shutil.copyfile(source, os.path.join(output_dir, name))
    card_folders = [card_source] if card_source else list(reversed(folders))
    card = next(
        (os.path.join(f, CARD_NAME) for f in card_folders if os.path.isfile(os.path.join(f, CARD_NAME))), None
    )
    if card is not None:
        with open(os.path.join(output_dir, CARD_NAME), "w", encoding="utf-8") as handle:
            handle.write(_card_with_note(card, folders))
    pickles = [name for name in os.listdir(output_dir) if name.endswith(PICKLE_SUFFIXES)]
    assert not pickles, f"pickle files written to {output_dir}: {pickles}"
    logger.info("Averaged %d checkpoints into %s", len(folders), output_dir)
    return output_dir


# --------------------------------------------------------------------------------------------
# End of training
# --------------------------------------------------------------------------------------------
@dataclass
class AveragingOutcome:
    """What [`average_and_keep_best`] did: which weights it kept and the validation scores of both."""

    kept: str  # "averaged" or "current"
    metric: str  # e.g. "eval_bleu"
    current: float | None
    averaged: float | None
    checkpoints: list[str] = field(default_factory=list)
    greater_is_better: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for `results.json` or a model card)."""
        return asdict(self)


def _metric_key(args: Any) -> tuple[str, bool]:
    metric = args.metric_for_best_model or "loss"
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    greater = args.greater_is_better
    if greater is None:
        greater = not key.endswith("loss")
    return key, bool(greater)


def average_and_keep_best(trainer: Any, n: int, eval_dataset: Any = None) -> AveragingOutcome:
    """Average the last `n` checkpoints into `trainer.model` if that validates at least as well.

    Evaluates the current weights and the average with `trainer.evaluate()` (the trainer's
    `compute_metrics`), on `metric_for_best_model` (`eval_loss` when unset) in the direction of
    `greater_is_better`. Keeps the average when its score is at least as good, else restores the
    current weights bit for bit. With fewer than `n` checkpoints saved it averages those there are (a
    warning says so); with fewer than 2 it keeps the current weights.

    Args:
        trainer: a `Trainer` / [`Seq2SeqAttnTrainer`] after `train()`, saving checkpoints to `args.output_dir`.
        n (`int`): how many of the newest checkpoints to average (>= 2 to be useful).
        eval_dataset: the validation set, if not the trainer's own.

    Returns:
        [`AveragingOutcome`]; the choice is also logged. Save `trainer.model` afterwards.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    key, greater = _metric_key(trainer.args)
    folders = checkpoint_folders(trainer.args.output_dir)[-n:]
    if len(folders) < n:
        logger.warning(
            "Asked to average %d checkpoints but %s has %d; raise --save_total_limit to keep more.",
            n,
            trainer.args.output_dir,
            len(folders),
        )
    if len(folders) < 2:
        logger.warning("Fewer than 2 checkpoints to average: keeping the current weights.")
        return AveragingOutcome("current", key, None, None, folders, greater)
    weights = average_weights(folders)

    def score() -> float:
        metrics = trainer.evaluate(eval_dataset=eval_dataset)
        if key not in metrics:
            raise ValueError(
                f"trainer.evaluate() returned no {key!r} (got {sorted(metrics)}); check metric_for_best_model."
            )
        return float(metrics[key])

    model = trainer.model
    current = score()
    backup = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    load_into(model, weights)
    averaged = score()
    better_or_equal = averaged >= current if greater else averaged <= current
    if not better_or_equal:
        load_into(model, backup)
    kept = "averaged" if better_or_equal else "current"
    logger.info(
        "Checkpoint averaging of %s: %s %.4f averaged vs %.4f current (%s is better): kept the %s weights.",
        ", ".join(os.path.basename(f) for f in folders),
        key,
        averaged,
        current,
        "higher" if greater else "lower",
        kept,
    )
    return AveragingOutcome(kept, key, current, averaged, folders, greater)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
__all__ = [
    "AveragingOutcome",
    "average_and_keep_best",
    "average_checkpoints",
    "average_state_dicts",
    "average_weights",
    "checkpoint_folders",
    "last_checkpoints",
]
