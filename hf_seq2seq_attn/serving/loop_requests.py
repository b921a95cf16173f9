"""Which `generate()` calls the ONNX Loop graphs reproduce exactly.

[`loop_request`] resolves a call's generation config as `generate()` does and says which Loop its search is
for (greedy: [`hf_seq2seq_attn.serving.onnx_loop`]; beam search:
[`hf_seq2seq_attn.serving.onnx_beam_loop`]) and whether that Loop serves it: a [`GreedyRequest`] or
[`BeamRequest`] holding the graph's inputs, or `(reason key, message)` when `GenerationMixin.generate()`
must decode it instead (sampling, logits processors the graphs lack, outputs they do not make).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# GenerationConfig fields whose values make greedy search differ from "argmax, pad after EOS, stop at EOS or
# max length" (transformers' generation modes, `_get_logits_processor`, `_get_stopping_criteria`), each with the
# values that leave it inactive. A field a transformers version lacks reads as None (inactive).
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "num_beams": (None, 1),
    "do_sample": (None, False),
    "num_return_sequences": (None, 1),
    "num_beam_groups": (None, 1),
    "penalty_alpha": (None, 0, 0.0),
    "constraints": (None,),
    "force_words_ids": (None,),
    "prompt_lookup_num_tokens": (None,),
    "assistant_early_exit": (None,),
    "use_mtp": (None, False),
    "dola_layers": (None,),  # greedy search with DoLa is a Hub `custom_generate` method
    "output_scores": (None, False),
    "output_logits": (None, False),
    "output_attentions": (None, False),
    "output_hidden_states": (None, False),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "sequence_bias": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "remove_invalid_values": (None, False),
    "renormalize_logits": (None, False),
    "exponential_decay_length_penalty": (None,),
    "guidance_scale": (None, 1, 1.0),
    "watermarking_config": (None,),
    "max_time": (None,),
    "stop_strings": (None,),
    "token_healing": (None, False),
    "cache_implementation": (None,),
}
# The fields of NEUTRAL_VALUES the beam-search graph serves whatever their value (checked in
# [`beam_request`]), and the fields beam search alone reads.
BEAM_SERVED = frozenset(
    {"num_beams", "num_return_sequences", "min_length", "min_new_tokens", "output_scores", "output_logits"}
)
BEAM_NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {"low_memory": (None, False)}  # `_beam_search` raises on it

GREEDY = "greedy"
BEAM_SEARCH = "beam-search"


@dataclass(frozen=True)
class LoopRequest:
    """What both Loop graphs need of a `generate()` call.

    Attributes:
        input_ids: `(B, S)` source ids; `attention_mask`: `(B, S)` or None (derived from the pad id).
        max_new_tokens: the Loop's trip count (>= 1).
        decoder_start_token_id, pad_token_id: as `generate()` resolves them (pad defaults to the first eos).
        eos_token_id: `(n_eos,)` int64, the ids that finish a row.
        return_dict: `return_dict_in_generate`.
        use_cache: whether a returned dict carries the final decoder state.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    max_new_tokens: int
    decoder_start_token_id: int
    eos_token_id: np.ndarray
    pad_token_id: int
    return_dict: bool
    use_cache: bool


@dataclass(frozen=True)
class GreedyRequest(LoopRequest):
    """A `generate()` call the greedy Loop graph serves exactly (a returned dict holds the sequences and the
    final cache only)."""


@dataclass(frozen=True)
class BeamRequest(LoopRequest):
    """A `generate()` call the beam-search Loop graph serves exactly; the extra fields are the graph's inputs
    ([`build_beam_graph`]).

    Attributes:
        num_beams, num_return_sequences: K and R (1 <= R <= K).
        min_new_tokens: the first steps in which the eos ids get -inf ([`_eos_blocked_steps`]).
        length_divisors, heuristic_divisors: `(max_new_tokens,)` float32, per iteration.
        early_stopping: `early_stopping is True` (False and "never" differ only in `heuristic_divisors`).
        fill_token_id: what positions after a hypothesis's end hold (`pad_token_id or eos_token_id[0]`).
        output_scores, output_logits: return the per-step scores (and `sequences_scores`) / raw logits.
    """

    num_beams: int
    num_return_sequences: int
    min_new_tokens: int
    length_divisors: np.ndarray
    heuristic_divisors: np.ndarray
    early_stopping: bool
    fill_token_id: int
    output_scores: bool
    output_logits: bool


# (reason key, message): the key is what is logged once per model.
Refusal = tuple[str, str]


@dataclass(frozen=True)
class _Call:
    """A `generate(inputs, generation_config, **kwargs)` call, its config resolved as `generate()` resolves it
    (`GenerationMixin._prepare_generation_config`: the model's `generation_config`, then the call's config and
    keyword arguments; what is left are `model_kwargs`)."""

    model: Any
    inputs: Any
    passed_config: Any
    kwargs: dict[str, Any]
    config: Any
    model_kwargs: dict[str, Any]

    @classmethod
    def resolve(cls, model: Any, inputs: Any, generation_config: Any, kwargs: dict[str, Any]) -> _Call:
        config, model_kwargs = model._prepare_generation_config(generation_config, **kwargs)
        return cls(model, inputs, generation_config, kwargs, config, model_kwargs)


def _token_ids(value: Any) -> list[int]:
    return [int(token) for token in torch.as_tensor(value).reshape(-1).tolist()]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    return any(value is option or (option is not None and value == option) for option in neutral)


def _new_tokens(model: Any, config: Any, passed_config: Any, kwargs: dict[str, Any]) -> int | None:
    """The number of new tokens `generate()` allows (`_prepare_generated_length` for one decoder start token);
    None when the model config caps lengths (`max_position_embeddings`), which this does not repeat."""
    if config.max_new_tokens is not None:
        return int(config.max_new_tokens)
    has_default_max_length = (
        kwargs.get("max_length") is None
        and (passed_config is None or passed_config.max_length is None)
        and model.generation_config.max_length is None
    )
    if has_default_max_length:
        if getattr(model.config, "max_position_embeddings", None) is not None:
            return None
        return int(config.max_length)  # generate() allows this many new tokens beyond the start token
    return int(config.max_length) - 1


def _loop_fields(
    call: _Call, served: frozenset[str] = frozenset(), extra_neutral: dict[str, tuple[Any, ...]] | None = None
) -> dict[str, Any] | Refusal:
    """The [`LoopRequest`] fields of `call`, or why neither Loop serves it: a field of NEUTRAL_VALUES (less
    `served`, plus `extra_neutral`) is active, an extra argument, no 2-D `input_ids`, or special tokens or a
    length that `generate()` resolves in ways the graphs do not repeat."""
    config, model_kwargs = call.config, call.model_kwargs
    for name, neutral in {**NEUTRAL_VALUES, **(extra_neutral or {})}.items():
        value = getattr(config, name, None)
        if name not in served and not _is_neutral(value, neutral):
            return name, f"{name}={value!r}"
    extra = sorted(set(model_kwargs) - {"input_ids", "attention_mask"})
    if extra:
        return "arguments", f"arguments {extra}"
    input_ids = model_kwargs.get("input_ids") if call.inputs is None else call.inputs
    if call.inputs is not None and "input_ids" in model_kwargs:
        return "arguments", "both `inputs` and `input_ids`"
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        return "inputs", "no 2-D `input_ids` tensor"
    start = (
        config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
    )
    if start is None or config.eos_token_id is None:
        return "special_tokens", "no decoder start or eos token id"
    eos = _token_ids(config.eos_token_id)
    pad = _token_ids(config.pad_token_id)[0] if config.pad_token_id is not None else eos[0]
    start = _token_ids(start)[0]
    vocab = call.model.config.resolved_decoder_vocab_size
    # generate() reports these as errors (or warnings) itself
    if not eos or min(eos) < 0 or not (0 <= start < vocab and 0 <= pad < vocab):
        return "special_tokens", f"token ids outside the vocabulary (start {start}, pad {pad}, eos {eos})"
    new_tokens = _new_tokens(call.model, config, call.passed_config, call.kwargs)
    if new_tokens is None or new_tokens < 1:
        return "max_length", f"max length {config.max_length} / max_new_tokens {config.max_new_tokens}"
    return dict(
        input_ids=input_ids,
        attention_mask=model_kwargs.get("attention_mask"),
        max_new_tokens=new_tokens,
        decoder_start_token_id=start,
        eos_token_id=np.asarray(eos, dtype=np.int64),
        pad_token_id=pad,
        return_dict=bool(config.return_dict_in_generate),
        use_cache=config.use_cache is not False,
    )


def _greedy_request(call: _Call) -> GreedyRequest | Refusal:
    fields = _loop_fields(call)
    return fields if isinstance(fields, tuple) else GreedyRequest(**fields)


def greedy_request(
    model: Any, inputs: Any, generation_config: Any, kwargs: dict[str, Any]
) -> GreedyRequest | Refusal:
    """A [`GreedyRequest`] when `model.generate(inputs, generation_config, **kwargs)` is plain greedy search,
    else `(reason key, message)`."""
    return _greedy_request(_Call.resolve(model, inputs, generation_config, kwargs))


def _eos_blocked_steps(config: Any) -> int | None:
    """How many first steps the MinLength / MinNewTokensLength processors give the eos ids -inf; None unless
    both fields are ints (or None).

    At iteration t (0-based) the sequence holds 1 + t ids: MinLength masks while `1 + t < min_length`,
    MinNewTokensLength while `t < min_new_tokens`; `_prepare_generated_length` first sets `min_length =
    min_new_tokens + 1` when `min_new_tokens` is given. Each processor exists only when its field is > 0.
    """
    min_new, min_length = config.min_new_tokens, config.min_length
    if not all(value is None or _is_int(value) for value in (min_new, min_length)):
        return None
    if min_new is not None:
        min_length = min_new + 1
    blocked = 0
    if min_length is not None and min_length > 0:
        blocked = max(blocked, min_length - 1)
    if min_new is not None and min_new > 0:
        blocked = max(blocked, min_new)
    return blocked


def _divisors(lengths: list[int], length_penalty: float) -> np.ndarray:
    """`length ** length_penalty` for each length, in Python as `_beam_search` computes it, then rounded to
    float32 as torch does when it divides a float32 tensor by that Python number."""
    with np.errstate(over="ignore"):  # inf in float32, as in torch
        return np.array([float(length**length_penalty) for length in lengths], dtype=np.float32)


def _beam_request(call: _Call) -> BeamRequest | Refusal:
    fields = _loop_fields(call, BEAM_SERVED, BEAM_NEUTRAL_VALUES)
    if isinstance(fields, tuple):
        return fields
    config = call.config
    num_beams = config.num_beams
    returned = 1 if config.num_return_sequences is None else config.num_return_sequences
    if not (_is_int(num_beams) and _is_int(returned) and 1 <= returned <= num_beams):
        # generate() raises on more hypotheses than beams
        return "num_return_sequences", f"num_return_sequences={returned!r} with num_beams={num_beams!r}"
    early_stopping = config.early_stopping
    if not (early_stopping is None or isinstance(early_stopping, bool) or early_stopping == "never"):
        return "early_stopping", f"early_stopping={early_stopping!r}"
    penalty = config.length_penalty
    if not isinstance(penalty, (int, float)) or isinstance(penalty, bool) or not math.isfinite(penalty):
        return "length_penalty", f"length_penalty={penalty!r}"
    blocked = _eos_blocked_steps(config)
    if blocked is None:
        return "min_length", f"min_length={config.min_length!r}, min_new_tokens={config.min_new_tokens!r}"
    if not fields["use_cache"]:
        return "use_cache", "use_cache=False"
    eos = fields["eos_token_id"]
    keep = max(2, 1 + len(eos)) * num_beams
    vocab = call.model.config.resolved_decoder_vocab_size
    if vocab - len(eos) < keep:  # see "Tie order" in `build_beam_graph`
        return "vocabulary", (
            f"{vocab} ids, fewer than beams_to_keep={keep} besides the eos ids: beams would be chosen among tied "
            "masked scores, whose order torch.topk leaves open"
        )
    new_tokens = fields["max_new_tokens"]
    lengths = list(range(1, new_tokens + 1))  # iteration t: cur_len + 1 - prompt length = t + 1
    hypothetical = [new_tokens] * new_tokens if early_stopping == "never" and penalty > 0.0 else lengths
    try:
        length_divisors, heuristic_divisors = _divisors(lengths, penalty), _divisors(hypothetical, penalty)
    except OverflowError:
        return "length_penalty", f"length_penalty={penalty!r} (length ** length_penalty overflows)"
    return_dict = fields["return_dict"]
    # `_beam_search` fills with `pad_token_id or eos_token_id[0]`: a pad id of 0 is falsy, so eos fills then
    fill = fields["pad_token_id"] or int(eos[0])
    return BeamRequest(
        **fields,
        num_beams=num_beams,
        num_return_sequences=returned,
        min_new_tokens=blocked,
        length_divisors=length_divisors,
        heuristic_divisors=heuristic_divisors,
        early_stopping=early_stopping is True,
        fill_token_id=fill,
        output_scores=return_dict and bool(config.output_scores),
        output_logits=return_dict and bool(config.output_logits),
    )


def beam_request(
    model: Any, inputs: Any, generation_config: Any, kwargs: dict[str, Any]
) -> BeamRequest | Refusal:
    """A [`BeamRequest`] when `model.generate(inputs, generation_config, **kwargs)` is beam search that the
    beam-search graph reproduces, else `(reason key, message)`.

    Served: any `num_beams > 1`, `num_return_sequences <= num_beams`, `length_penalty` (finite),
    `early_stopping` False / True / "never", `max_new_tokens` / `max_length`, `min_length` / `min_new_tokens`,
    `return_dict_in_generate` with `output_scores` / `output_logits`. Everything else (sampling, other logits
    processors, stopping criteria, attentions) is refused, as for greedy search.
    """
    call = _Call.resolve(model, inputs, generation_config, kwargs)
    if not (call.config.num_beams is not None and call.config.num_beams > 1):
        return "num_beams", f"num_beams={call.config.num_beams!r}"
    return _beam_request(call)


def loop_request(
    model: Any, inputs: Any, generation_config: Any, kwargs: dict[str, Any]
) -> tuple[str, GreedyRequest | BeamRequest | Refusal]:
    """`(GREEDY or BEAM_SEARCH, the request or why not)`: which Loop the call's search is for (`num_beams`
    above 1 is beam search), and whether that Loop serves it."""
    call = _Call.resolve(model, inputs, generation_config, kwargs)
    num_beams = call.config.num_beams
    if num_beams is not None and num_beams > 1:
        return BEAM_SEARCH, _beam_request(call)
    return GREEDY, _greedy_request(call)


__all__ = [
    "BEAM_SEARCH",
    "GREEDY",
    "BeamRequest",
    "GreedyRequest",
    "LoopRequest",
    "beam_request",
    "greedy_request",
    "loop_request",
]
