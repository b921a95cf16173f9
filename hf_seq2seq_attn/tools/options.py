"""The options every inference command shares (`--model`, `--device`, decoding), defined once.

argparse only (no torch): building a command's parser must stay instant. `cli` and `g2p` use these.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def add_model_arguments(
    parser: argparse.ArgumentParser,
    model_help: str = "model folder (save_pretrained, or `export` output) or cached Hub id",
    backend: bool = True,
) -> None:
    """`--model`, `--device` and (unless `backend=False`) `--backend`: which model runs, where, and on what."""
    parser.add_argument("--model", required=True, help=model_help)
    if not backend:  # commands that need the torch model itself (attention maps, scores by beam)
        parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
        return
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0 (pytorch backend)")
    parser.add_argument(
        "--backend",
        choices=("pytorch", "onnx"),
        default="pytorch",
        help="pytorch (a saved model folder) or onnx (a folder written by `seq2seq-attn export`, [onnx] extra)",
    )


@dataclass(frozen=True)
class GenerationOption:
    """One decoding option of the command line, and the [`inference.translate`] keyword it sets."""

    flag: str  # `--flag`, and the attribute of the parsed arguments
    keyword: str  # `translate()` keyword: `batch_size`, or a `generate()` option
    type: type  # `bool` is an on/off switch (`store_true`)
    default: Any  # None: not given, so `translate()` (or the command) decides
    help: str


# The decoding options of every inference command, defined once: [`add_generation_arguments`] adds them to a
# parser, [`generation_kwargs_from_args`] turns the parsed values into `translate()` keywords.
GENERATION_OPTIONS: tuple[GenerationOption, ...] = (
    GenerationOption("batch_size", "batch_size", int, 32, "sentences per generate() call"),
    GenerationOption("num_beams", "num_beams", int, 5, "beam width (1 = greedy)"),
    GenerationOption("length_penalty", "length_penalty", float, 1.0, "beam score = log p / length**this"),
    GenerationOption(
        "n_best", "num_return_sequences", int, 1, "hypotheses per sentence (<= num_beams unless sampling)"
    ),
    GenerationOption("do_sample", "do_sample", bool, False, "sample instead of searching"),
    GenerationOption("top_k", "top_k", int, None, "sample from the k most likely tokens"),
    GenerationOption("top_p", "top_p", float, None, "nucleus sampling threshold"),
    GenerationOption("temperature", "temperature", float, None, "sampling temperature"),
    GenerationOption(
        "max_new_tokens", "max_new_tokens", int, None, "output length limit (default: 2 * source tokens + 10)"
    ),
)


def add_generation_arguments(
    parser: argparse.ArgumentParser,
    flags: Sequence[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Add [`GENERATION_OPTIONS`] (all, or those named in `flags`) to a command's parser, in a "generation" group.

    Args:
        flags: the options this command offers (default: all of them).
        overrides: per flag, the `GenerationOption` fields this command changes, e.g.
            `{"num_beams": {"default": 1, "help": "beam width of the translation shown"}}`.
    """
    unknown = set(flags or ()) - {option.flag for option in GENERATION_OPTIONS}
    assert not unknown, f"not generation options: {sorted(unknown)}"  # a typo in this package's code
    group = parser.add_argument_group("generation")
    for option in GENERATION_OPTIONS:
        if flags is not None and option.flag not in flags:
            continue
        option = dataclasses.replace(option, **(overrides or {}).get(option.flag, {}))
        if option.type is bool:
            group.add_argument(f"--{option.flag}", action="store_true", help=option.help)
        else:
            group.add_argument(f"--{option.flag}", type=option.type, default=option.default, help=option.help)


def generation_kwargs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The [`inference.translate`] keywords of the generation options in `args` that have a value."""
    values = {option.keyword: getattr(args, option.flag, None) for option in GENERATION_OPTIONS}
    return {keyword: value for keyword, value in values.items() if value is not None}
