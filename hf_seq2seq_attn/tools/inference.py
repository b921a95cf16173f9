"""Inference helpers: load a saved model, translate batches of sentences, extract attention maps.

Everything the inference commands (`seq2seq-attn translate|evaluate|plot`) do lives here, usable and
tested from Python:

- [`load_model_and_tokenizer`]: a saved folder (or cached Hub id) -> `(model.eval(), tokenizer)`;
- [`translate`]: length-sorted batched `generate()`, n-best lists and scores, one [`Translation`] per
  sentence in input order;
- [`attention_for`]: cross-attention weights `(N, T, S)` for one sentence, ready for `plot_attention`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from transformers import PreTrainedModel

from ..core.configuration_seq2seq_attn import Seq2SeqAttnConfig
from ..core.modeling_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
from ..core.tokenization_seq2seq_attn import load_tokenizer

logger = logging.getLogger(__name__)

# A model with `generate()`: `Seq2SeqAttnForConditionalGeneration`, or the ONNX Runtime-backed
# `Seq2SeqAttnOnnxModel` (a `PreTrainedModel` + `GenerationMixin` that is not a torch module underneath).
GenerativeModel = Any

MODEL_TYPE = Seq2SeqAttnConfig.model_type

WEIGHTS_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def default_max_new_tokens(source_length: int) -> int:
    """Generation budget for a source of `source_length` tokens: `2 * S + 10`."""
    return 2 * source_length + 10


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def looks_like_path(name: str) -> bool:
    """A filesystem path rather than a Hub id: absolute, `.`/`~`-relative, or existing."""
    return os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(os.path.expanduser(name))


def check_model_folder(path: str) -> None:
    """Raise `FileNotFoundError` naming the first thing a saved model folder lacks: config or weights."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No model folder at {path!r}.")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"{path!r} has no config.json, so it is not a saved model folder "
            "(write one with `model.save_pretrained(folder)`)."
        )
    if not any(os.path.isfile(os.path.join(path, name)) for name in WEIGHTS_FILES):
        raise FileNotFoundError(
            f"{path!r} has config.json but no weights ({' / '.join(WEIGHTS_FILES[::2])}); "
            "was `model.save_pretrained(folder)` interrupted?"
        )


def _config_file(name_or_path: str) -> str:
    """The `config.json` of a local folder, or of a Hub repo (from the local cache when offline)."""
    path = os.path.expanduser(name_or_path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            check_model_folder(path)  # names what is missing
        return os.path.join(path, "config.json")
    if looks_like_path(name_or_path):
        raise FileNotFoundError(f"No model folder at {path!r}.")
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(name_or_path, "config.json")
    except (OSError, ValueError) as err:  # not found, not cached offline, or not a valid repo id
        offline = os.environ.get("HF_HUB_OFFLINE", "0")
        raise FileNotFoundError(
            f"Could not load a model from {name_or_path!r}: not a local folder and not in the Hub cache "
            f"(HF_HUB_OFFLINE={offline})."
        ) from err


def check_config_file(config_file: str, name: str) -> None:
    """Refuse a `config.json` that is not a JSON object or names another `model_type` than ours.

    Read as JSON only, so nothing it points at (an `auto_map` naming a stranger's Python files) runs.
    `name` is the folder or repo it belongs to, for the message.
    """
    try:
        with open(config_file, encoding="utf-8") as handle:
            model_type = json.load(handle).get("model_type")
    except (OSError, ValueError, AttributeError) as err:  # AttributeError: JSON, but not an object
        raise ValueError(f"{name!r}: config.json is not a readable JSON object ({err}).") from None
    if model_type != MODEL_TYPE:
        raise ValueError(
            f"{name!r} holds a {model_type!r} model, not a {MODEL_TYPE!r} one: this package's tools "
            "load only its own attention RNN models (and run no code shipped with a model)."
        )


def check_model_type(name_or_path: str) -> None:
    """Refuse a folder or Hub repo that does not hold a `seq2seq_attn` model, before anything of it is loaded.

    `config.json` is read as JSON only, so nothing a stranger put in the folder (an `auto_map` pointing at
    its own Python files) runs. The package's tools then load the model with its own classes.

    Raises:
        `FileNotFoundError`: no such folder or cached repo, or the folder lacks its config or weights.
        `ValueError`: `config.json` is not a JSON object, or names another `model_type`.
    """
    check_config_file(_config_file(name_or_path), name_or_path)
    if os.path.isdir(os.path.expanduser(name_or_path)):
        check_model_folder(os.path.expanduser(name_or_path))


def load_model_and_tokenizer(name_or_path: str, device: str = "cpu") -> tuple[PreTrainedModel, Any]:
    """Load a saved model and its tokenizer for inference, running no code from the folder.

    `config.json` is checked first ([`check_model_type`]); the model is then built by this package's own
    class with `trust_remote_code=False`, whatever `auto_map` the folder carries. (Remote code remains for
    users who ask for it: `AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)`.)

    Args:
        name_or_path (`str`): a folder written by `save_pretrained` (model and tokenizer), or a Hub id
            available in the local cache (nothing is downloaded when `HF_HUB_OFFLINE=1`).
        device (`str`, defaults to `"cpu"`): where to put the model, e.g. `"cuda:0"`.

    Returns:
        `(model, tokenizer)`, the model in eval mode.

    Raises:
        `FileNotFoundError`: the folder, its `config.json`, its weights or its tokenizer files are missing.
        `ValueError`: another model type, or `device` is not a valid (or available) torch device.
    """
    target_device = resolve_device(device)
    check_model_type(name_or_path)
    path = os.path.expanduser(name_or_path) if looks_like_path(name_or_path) else name_or_path
    tokenizer = load_tokenizer(path)
    try:
        model = Seq2SeqAttnForConditionalGeneration.from_pretrained(path, trust_remote_code=False)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0")
        raise FileNotFoundError(
            f"Could not load the model weights of {name_or_path!r} (HF_HUB_OFFLINE={offline}): {err}"
        ) from err
    return model.to(target_device).eval(), tokenizer


def resolve_device(device: str) -> torch.device:
    """`torch.device(device)`, refusing with one line a device this torch build or machine does not have.

    Raises:
        `ValueError`: an unknown device string, or CUDA/MPS asked for where it is not available.
    """
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"Invalid device {device!r}: {err}") from None
    if target.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no visible CUDA device"
            raise ValueError(f"--device {device}: CUDA is not available here ({build}); use --device cpu.")
        if target.index is not None and target.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0 ...)."
            )
    if target.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available here; use --device cpu.")
    return target


# --------------------------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------------------------
# What `translate` decodes with unless told otherwise (the model's generation config is not consulted, so
# a folder's saved defaults never change what a test set scores).
TRANSLATE_DEFAULTS: dict[str, Any] = {
    "num_beams": 5,
    "length_penalty": 1.0,
    "num_return_sequences": 1,
    "do_sample": False,
}
SAMPLING_OPTIONS = ("top_k", "top_p", "temperature")
# Set by `translate` itself for every batch.
RESERVED_OPTIONS = ("input_ids", "attention_mask", "return_dict_in_generate", "output_logits")


@dataclass(frozen=True)
class Translation:
    """What [`translate`] returns for one sentence: its hypotheses, best first.

    The same type whatever was asked for, so callers read `.text` (or `.texts`, `.scores`) and never
    look at the shape of the result.

    Attributes:
        texts (`tuple[str, ...]`): the `num_return_sequences` hypotheses (one unless an n-best list was
            asked for), best first; sampled lists are sorted by score when scored.
        scores (`tuple[float, ...]`, *optional*): one per text with `output_scores=True`, else None: beam
            search's `sequences_scores` (length-normalised log-probability), otherwise the mean
            log-probability of the chosen tokens up to and including `</s>`.
    """

    texts: tuple[str, ...]
    scores: tuple[float, ...] | None = None

    @property
    def text(self) -> str:
        """The best hypothesis."""
        return self.texts[0]

    @property
    def score(self) -> float | None:
        """The best hypothesis's score (None unless scores were asked for)."""
        return None if self.scores is None else self.scores[0]


def _generation_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """Fill in [`TRANSLATE_DEFAULTS`], validate, and keep only what `generate()` should see (no warnings).

    A value of None means "not given". `max_new_tokens` and `output_scores` are returned too; the caller
    pops them (they are resolved per batch).
    """
    reserved = [name for name in RESERVED_OPTIONS if name in options]
    if reserved:
        raise TypeError(f"translate() sets {', '.join(reserved)} itself; do not pass them.")
    kwargs = {**TRANSLATE_DEFAULTS, **{name: value for name, value in options.items() if value is not None}}
    num_beams, n_best, do_sample = kwargs["num_beams"], kwargs["num_return_sequences"], kwargs["do_sample"]
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}.")
    if n_best < 1:
        raise ValueError(f"num_return_sequences (n-best) must be >= 1, got {n_best}.")
    if not do_sample and n_best > num_beams:
        raise ValueError(
            f"num_return_sequences={n_best} exceeds num_beams={num_beams}: beam search can "
            "return at most num_beams hypotheses. Raise num_beams or sample (do_sample=True)."
        )
    given = [name for name in SAMPLING_OPTIONS if name in kwargs]
    if given and not do_sample:
        raise ValueError(f"{', '.join(given)} only apply when sampling; pass do_sample=True as well.")
    if kwargs.get("max_new_tokens", 1) < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {kwargs['max_new_tokens']}.")
    if num_beams == 1:
        del kwargs["length_penalty"]  # generate() warns about a beam-search option given to greedy search
    return kwargs


def _mean_token_log_probs(
    model: GenerativeModel,
    sequences: torch.Tensor,
    logits: tuple[torch.Tensor, ...],
    eos_token_id: int | None,
) -> torch.Tensor:
    """Mean log-probability the model gives each chosen token, up to and including the first `</s>`.

    Args:
        sequences: `(B, 1 + steps)` generated ids, decoder start token first.
        logits: `steps` raw logits `(B, V)` from `generate(output_logits=True)`.
    Returns:
        `(B,)`.
    """
    log_probs = model.compute_transition_scores(sequences, logits, normalize_logits=True)  # (B, steps)
    generated = sequences[:, -log_probs.shape[1] :]  # (B, steps)
    if eos_token_id is None:
        keep = torch.ones_like(generated, dtype=torch.bool)
    else:
        is_eos = (generated == eos_token_id).long()
        keep = (is_eos.cumsum(dim=1) - is_eos) == 0  # up to and including the first eos
    keep &= torch.isfinite(log_probs)
    counts = keep.sum(dim=1).clamp(min=1)
    return log_probs.masked_fill(~keep, 0.0).sum(dim=1) / counts


def _check_sentences(sentences: Sequence[str]) -> None:
    if isinstance(sentences, str):
        raise TypeError("`sentences` must be a list of strings; wrap a single sentence as [sentence].")
    bad = next((i for i, s in enumerate(sentences) if not isinstance(s, str)), None)
    if bad is not None:
        raise TypeError(f"`sentences[{bad}]` is a {type(sentences[bad]).__name__}, expected str.")


def _translate_batch(
    model: GenerativeModel,
    tokenizer: Any,
    encodings: list[list[int]],
    generate_kwargs: dict[str, Any],
    max_new_tokens: int | None,
    output_scores: bool,
) -> list[Translation]:
    """One `generate()` call over the token ids of a batch's sentences; one [`Translation`] each."""
    batch = tokenizer.pad(
        {"input_ids": encodings}, padding=True, padding_side="right", return_tensors="pt"
    ).to(model.device)
    beam_scores = generate_kwargs["num_beams"] > 1 and not generate_kwargs["do_sample"]
    output = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=max_new_tokens or default_max_new_tokens(batch["input_ids"].shape[1]),
        return_dict_in_generate=True,
        output_scores=output_scores,
        output_logits=output_scores and not beam_scores,
        **generate_kwargs,
    )
    texts = tokenizer.batch_decode(output.sequences, skip_special_tokens=True)
    scores: list[float] | None = None
    if output_scores and beam_scores:
        scores = output.sequences_scores.tolist()
    elif output_scores:
        eos = model.generation_config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        scores = _mean_token_log_probs(model, output.sequences, output.logits, eos).tolist()
    n_best = generate_kwargs["num_return_sequences"]
    results = []
    for first in range(0, len(texts), n_best):
        rows = range(first, first + n_best)
        if scores is None:
            results.append(Translation(tuple(texts[row] for row in rows)))
            continue
        pairs = [(texts[row], float(scores[row])) for row in rows]
        if generate_kwargs["do_sample"]:
            pairs.sort(key=lambda pair: pair[1], reverse=True)
        results.append(Translation(tuple(t for t, _ in pairs), tuple(s for _, s in pairs)))
    return results


def translate(
    model: GenerativeModel,
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    batch_size: int = 32,
    progress: bool = False,
    **generate_kwargs: Any,
) -> list[Translation]:
    """Translate `sentences` in length-sorted batches; results come back in input order.

    Args:
        model: a seq2seq model with `generate()` (e.g. from [`load_model_and_tokenizer`]).
        tokenizer: its tokenizer (right padding is used whatever the tokenizer's default).
        sentences (`list[str]`): source sentences; empty strings are fine (encoded as `</s>` alone).
        batch_size (`int`, defaults to 32): sentences per `generate()` call.
        progress (`bool`, defaults to `False`): show a tqdm bar on stderr.
        **generate_kwargs: `generate()` options; None means "not given". Defaults: [`TRANSLATE_DEFAULTS`]
            (beam search with `num_beams=5`, whatever the model's generation config says). Among them:
            - `num_beams`: 1 is greedy (or plain sampling with `do_sample=True`);
            - `length_penalty`: beam score = sum log p / length ** length_penalty;
            - `num_return_sequences`: n-best size (at most `num_beams` without sampling);
            - `do_sample`, `top_k`, `top_p`, `temperature`: sampling (the last three need `do_sample`);
            - `max_new_tokens`: per-batch limit; defaults to `2 * S + 10` for the batch's longest source
              of S tokens (`max_length`/`max_new_tokens` in the generation config are ignored);
            - `output_scores`: also score each hypothesis (see [`Translation.scores`]).

    Returns:
        One [`Translation`] per sentence, in input order.

    Example:
        >>> [t.text for t in translate(model, tokenizer, ["hola mundo"], num_beams=5)]
        ['hello world']
        >>> best = translate(model, tokenizer, ["hola mundo"], num_return_sequences=3, output_scores=True)[0]
        >>> list(zip(best.texts, best.scores))  # best first
    """
    _check_sentences(sentences)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    kwargs = _generation_kwargs(generate_kwargs)
    max_new_tokens, output_scores = (
        kwargs.pop("max_new_tokens", None),
        bool(kwargs.pop("output_scores", False)),
    )
    if not sentences:
        return []

    encodings = tokenizer(list(sentences))["input_ids"]
    order = sorted(range(len(sentences)), key=lambda i: len(encodings[i]), reverse=True)
    results: list[Translation | None] = [None] * len(sentences)
    from tqdm.auto import tqdm

    with tqdm(total=len(sentences), disable=not progress, file=sys.stderr, unit="sent") as bar:
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            translations = _translate_batch(
                model, tokenizer, [encodings[i] for i in indices], kwargs, max_new_tokens, output_scores
            )
            for index, translation in zip(indices, translations, strict=True):
                results[index] = translation
            bar.update(len(indices))
    return cast("list[Translation]", results)


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------
@torch.inference_mode()
def attention_for(
    model: GenerativeModel,
    tokenizer: Any,
    source: str,
    max_new_tokens: int | None = None,
    num_beams: int = 1,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Translate one sentence and return the cross-attention behind each output token.

    The output is produced by `generate()`; the weights then come from one teacher-forced forward over
    that output (`decoder_input_ids` = start token + output[:-1]), so row t is exactly the attention the
    decoder used when it predicted output token t.

    Args:
        source (`str`): the sentence.
        max_new_tokens (`int`, *optional*): defaults to `2 * S + 10`.
        num_beams (`int`, defaults to 1): beam width of the translation that is explained.

    Returns:
        `(weights, source_tokens, output_tokens)`: weights `(N, T, S)` for N heads, the S source tokens
        (`</s>` included) and the T output tokens (the final `</s>` included when generated).
    """
    if not isinstance(source, str):
        raise TypeError(f"`source` must be a string, got {type(source).__name__}.")
    encoded = tokenizer([source], return_tensors="pt").to(model.device)
    input_ids = encoded["input_ids"]  # (1, S)
    limit = max_new_tokens if max_new_tokens is not None else default_max_new_tokens(input_ids.shape[1])
    if limit < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {limit}.")
    sequences = model.generate(
        input_ids=input_ids,
        attention_mask=encoded["attention_mask"],
        num_beams=num_beams,
        max_new_tokens=limit,
    )  # (1, 1 + T)
    output_ids = sequences[0, 1:].tolist()
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    end = next((i + 1 for i, token in enumerate(output_ids) if token in eos_ids), len(output_ids))
    output_ids = output_ids[:end]
    if not output_ids:
        raise ValueError("The model generated no tokens, so there is no attention to show.")
    decoder_input_ids = sequences[:, : len(output_ids)]  # (1, T): start token + output[:-1]
    outputs = model(
        input_ids=input_ids,
        attention_mask=encoded["attention_mask"],
        decoder_input_ids=decoder_input_ids,
        output_attentions=True,
        use_cache=False,
        return_dict=True,
    )
    weights = outputs.cross_attentions[-1][0].float().cpu().numpy()  # (N, T, S)
    source_tokens = tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
    output_tokens = tokenizer.convert_ids_to_tokens(output_ids)
    return weights, source_tokens, output_tokens


__all__ = [
    "TRANSLATE_DEFAULTS",
    "Translation",
    "attention_for",
    "check_config_file",
    "check_model_type",
    "load_model_and_tokenizer",
    "resolve_device",
    "translate",
]
