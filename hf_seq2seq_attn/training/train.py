"""`seq2seq-attn train`: train with `Seq2SeqTrainer`, then test, save, document and plot the model.

    seq2seq-attn train --recipe demo                       # the bundled demo, ~10 minutes on 2 CPU cores
    seq2seq-attn train --recipe bible --output_dir outputs/bible
    seq2seq-attn train --train_file train.jsonl --validation_file dev.jsonl --test_file test.jsonl \\
        --output_dir outputs/mine --tokenizer_kind bpe --max_train_minutes 30

Every `Seq2SeqAttnConfig` field and every `Seq2SeqTrainingArguments` flag is an option (`--help`); a
recipe file (`--recipe NAME|FILE.yaml`) sets many at once, and flags override it.

The path of a run: options ([`parse_train_args`]) -> splits ([`load_splits`]) -> tokenizer -> model ->
[`Seq2SeqAttnTrainer`] -> [`finish`]: save the model folder, score the test split, plot attention, write
the model card, push.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any, cast

import torch
from transformers import (
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    Seq2SeqTrainingArguments,
    set_seed,
)

from ..core.configuration_seq2seq_attn import Seq2SeqAttnConfig
from ..core.modeling_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
from ..core.tokenization_seq2seq_attn import check_tokenizer_matches_config, load_tokenizer
from ..tools.hub import CARD_TEMPLATE, CardFacts, push_folder, render_model_card
from ..tools.inference import check_model_type
from ..tools.metrics import task_metrics
from .arguments import FINE_TUNABLE_FIELDS, DataArguments, parse_train_args
from .corpus import configure_streaming, train_corpus_tokenizer
from .data import DataError, Splits, load_splits, tokenize_pairs
from .trainer import (
    NonFiniteLossError,
    Seq2SeqAttnTrainer,
    TimeBudget,
    check_output_dir,
    last_complete_checkpoint,
    metrics_function,
    model_bytes,
)

logger = logging.getLogger(__name__)

# With --torch_compile, batches are padded to a multiple of this many tokens (source and target): a compiled
# graph is specialised to its target length (the decoder loops over it in Python), so without buckets every
# new batch length would compile again. Padded targets are -100 and padded sources are masked: same loss.
COMPILE_LENGTH_MULTIPLE = 8


def build_tokenizer(data: DataArguments, splits: Splits, args: Seq2SeqTrainingArguments, resuming: bool):
    """Load, or train on the training split (main process first; the others load its result)."""
    output_dir = str(args.output_dir)
    saved = os.path.join(output_dir, "tokenizer.json")
    with args.main_process_first(local=False, desc="tokenizer"):
        if source := data.tokenizer_name or data.model_name_or_path:
            tokenizer = load_tokenizer(source)
            if args.should_save:
                tokenizer.save_pretrained(output_dir)
            return tokenizer
        if os.path.exists(saved) and (resuming or not args.should_save):
            return load_tokenizer(output_dir)
        tokenizer = train_corpus_tokenizer(  # both sides, a batch at a time; cached for an Arrow corpus
            splits.train,
            kind=data.tokenizer_kind,
            vocab_size=data.tokenizer_vocab_size,
            model_max_length=max(data.max_source_length, data.max_target_length),
        )
        if args.should_save:
            tokenizer.save_pretrained(output_dir)
        return tokenizer


def build_model(
    model_args: Any, tokenizer, start_from: str | None = None, command_line: frozenset[str] = frozenset()
) -> Seq2SeqAttnForConditionalGeneration:
    """A fresh model whose vocabulary and special tokens come from the tokenizer, or the trained model at
    `start_from` (see [`load_starting_model`])."""
    if start_from is not None:
        return load_starting_model(start_from, model_args, tokenizer, command_line)
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


def load_starting_model(
    name_or_path: str, model_args: Any, tokenizer, command_line: frozenset[str]
) -> Seq2SeqAttnForConditionalGeneration:
    """The model to fine-tune: its weights and architecture, with the dropouts the options ask for.

    Architecture options given on the command line (`command_line`: the option names typed there) must agree
    with the model's, or `DataError` names them; a recipe's architecture values give way to the model's (a
    recipe describes a model to train from scratch), and are logged.
    """
    check_model_type(name_or_path)  # config.json read as JSON first: no code from the folder runs
    model = Seq2SeqAttnForConditionalGeneration.from_pretrained(name_or_path, trust_remote_code=False)
    config = model.config
    declared = {f.name: f.default for f in dataclasses.fields(Seq2SeqAttnConfig)}
    conflicts: list[str] = []
    ignored: list[str] = []
    for name, value in dataclasses.asdict(model_args).items():
        if name in FINE_TUNABLE_FIELDS:
            if name in command_line or value != declared[name]:
                setattr(config, name, value)
        elif value != getattr(config, name) and (name in command_line or value != declared[name]):
            (conflicts if name in command_line else ignored).append(
                f"--{name} {value} (the model has {getattr(config, name)})"
            )
    if conflicts:
        raise DataError(
            f"--model_name_or_path {name_or_path}: options that contradict its architecture: "
            f"{', '.join(conflicts)}. Drop them; only {', '.join(sorted(FINE_TUNABLE_FIELDS))} may change."
        )
    if ignored:
        logger.info("The recipe's architecture gives way to the starting model's: %s", ", ".join(ignored))
    check_tokenizer_matches_config(tokenizer, config)
    # Dropout modules read their rate at construction; rebuild the model around the adjusted config.
    tuned = Seq2SeqAttnForConditionalGeneration(config)
    tuned.load_state_dict(model.state_dict())
    tuned.generation_config = model.generation_config
    return tuned


def set_generation_defaults(model, data: DataArguments, tokenizer) -> None:
    """The decoding the saved model uses by default: the test's beam and lengths, the tokenizer's ids."""
    gen = model.generation_config
    gen.num_beams = data.test_num_beams
    gen.length_penalty = data.length_penalty
    gen.max_new_tokens = data.max_target_length
    gen.max_length = None
    gen.early_stopping = (
        data.test_num_beams > 1
    )  # a beam-search flag: generation_config refuses it for greedy
    gen.decoder_start_token_id = tokenizer.bos_token_id
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )


def _resume_checkpoint(args: Seq2SeqTrainingArguments) -> str | None:
    """`--resume_from_checkpoint True|last` -> the newest complete checkpoint; a path stays a path."""
    resume = args.resume_from_checkpoint
    if resume in ("True", "true", "last"):
        resume = last_complete_checkpoint(str(args.output_dir))
        if resume is None:
            raise DataError(
                f"--resume_from_checkpoint: no checkpoint-* folder in {args.output_dir!r} to resume from."
            )
    return resume


def run(argv: list[str]) -> int:
    """Parse the options and train; returns the exit code."""
    model_args, data, args = parse_train_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if args.should_log else logging.WARNING,
    )
    set_seed(args.seed)
    if data.model_name_or_path:
        check_model_type(data.model_name_or_path)  # before reading data: a wrong model fails at once
    resume = _resume_checkpoint(args)
    if data.streaming:
        configure_streaming(args)  # refuses what a stream cannot do; shares it between processes
    splits = _read_splits(data, args)
    if args.should_save:
        os.makedirs(str(args.output_dir), exist_ok=True)
    tokenizer = build_tokenizer(data, splits, args, resuming=resume is not None)
    typed = frozenset(item[2:].split("=", 1)[0] for item in argv if item.startswith("--"))
    model = build_model(model_args, tokenizer, data.model_name_or_path, typed)
    set_generation_defaults(model, data, tokenizer)
    if args.should_save:
        check_output_dir(
            str(args.output_dir), needed_bytes=3 * model_bytes(model) * (2 + (args.save_total_limit or 3))
        )
    logger.info("Model: %s parameters; %d training pairs", f"{model.num_parameters():,}", len(splits.train))
    push_at_end, args.push_to_hub = args.push_to_hub, False  # we push the finished folder ourselves, once
    _set_evaluation_options(args, data)
    budget = TimeBudget(data.max_train_minutes) if data.max_train_minutes else None
    trainer = _build_trainer(model, tokenizer, args, data, splits, budget)
    started = time.monotonic()
    train_result = trainer.train(resume_from_checkpoint=resume)
    outcome = TrainingOutcome(
        minutes=(time.monotonic() - started) / 60,
        budget_minutes_used=budget.elapsed_seconds / 60 if budget is not None else None,
        metrics=dict(train_result.metrics),
    )
    if data.average_last_checkpoints:  # every rank: evaluation under DDP needs them all
        outcome.averaging = _average_last_checkpoints(trainer, data.average_last_checkpoints)
    if not args.should_save:  # non-main DDP ranks are done
        return 0
    finish(trainer, data, splits, tokenizer, outcome, push_at_end)
    return 0


def _read_splits(data: DataArguments, args: Seq2SeqTrainingArguments) -> Splits:
    """Read, check and limit the splits; the main process first, so the others reuse its Arrow cache."""
    with args.main_process_first(local=True, desc="reading the data"):
        splits = load_splits(
            data.dataset_name,
            data.train_file,
            data.validation_file,
            data.test_file,
            dataset_config_name=data.dataset_config_name,
            source_column=data.source_column,
            target_column=data.target_column,
            source_lang=data.source_lang,
            target_lang=data.target_lang,
            bad_rows=data.bad_rows,
            streaming=data.streaming,
        )
    splits.limit(data.max_train_samples, data.max_eval_samples, data.max_test_samples)
    if args.eval_strategy != "no" and splits.validation is None:
        raise DataError("Evaluation during training needs --validation_file (or pass --eval_strategy no).")
    return splits


def _set_evaluation_options(args: Seq2SeqTrainingArguments, data: DataArguments) -> None:
    """Validation scores come from `generate()` (BLEU needs text), at the lengths the data allows."""
    args.predict_with_generate = True
    args.generation_num_beams = args.generation_num_beams or 1
    args.generation_max_length = data.max_target_length
    args.remove_unused_columns = False  # the collator needs `labels`, which the model's forward names


def _build_trainer(
    model: Seq2SeqAttnForConditionalGeneration,
    tokenizer,
    args: Seq2SeqTrainingArguments,
    data: DataArguments,
    splits: Splits,
    budget: TimeBudget | None,
) -> Seq2SeqAttnTrainer:
    """Tokenize the training and validation splits and put them, the model and the callbacks together."""
    with args.main_process_first(local=True, desc="tokenizing"):  # the others reuse its cached token ids
        limits = (data.max_source_length, data.max_target_length)
        tokenized = {
            part: tokenize_pairs(pairs, tokenizer, *limits, data.long_rows, seed=args.seed)
            for part, pairs in (("train", splits.train), ("validation", splits.validation))
            if pairs is not None
        }
    callbacks = [EarlyStoppingCallback(data.early_stopping_patience)] if data.early_stopping_patience else []
    return Seq2SeqAttnTrainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("validation"),
        data_collator=DataCollatorForSeq2Seq(
            tokenizer,
            model=model,
            label_pad_token_id=-100,
            padding=True,
            pad_to_multiple_of=COMPILE_LENGTH_MULTIPLE if args.torch_compile else None,
        ),
        processing_class=tokenizer,
        compute_metrics=metrics_function(tokenizer, data.task, splits.validation_refs or [])
        if "validation" in tokenized
        else None,
        callbacks=callbacks,
        time_budget=budget,
    )


@dataclass
class TrainingOutcome:
    """What `train()` reported, for `results.json` and the model card."""

    minutes: float  # wall-clock minutes of this process's `train()` call
    budget_minutes_used: float | None  # the time budget's clock: all runs of a resumed training together
    metrics: dict[str, Any]
    averaging: dict[str, Any] | None = None

    def results(self, world_size: int) -> dict[str, Any]:
        """The training half of `results.json`."""
        results: dict[str, Any] = {
            "train_minutes": round(self.minutes, 2),
            "world_size": world_size,
            **self.metrics,
        }
        if self.budget_minutes_used is not None:
            results["budget_minutes_used"] = round(self.budget_minutes_used, 3)
        if self.averaging is not None:
            results["checkpoint_averaging"] = self.averaging
        return results


def _average_last_checkpoints(trainer: Seq2SeqAttnTrainer, count: int) -> dict[str, Any]:
    """Average the last `count` checkpoints; keep the average only if validation says it is no worse."""
    from ..tools.averaging import average_and_keep_best  # only runs that average need it

    report = average_and_keep_best(trainer, count).to_dict()
    # Names, not paths: results.json is shared with the model, and a path would tell where it was trained.
    report["checkpoints"] = [os.path.basename(os.path.normpath(c)) for c in report.get("checkpoints", [])]
    return report


@dataclass
class HeldOutScores:
    """The test split's scores, and the first few (source, reference, prediction) triples to print."""

    metrics: dict[str, float]
    samples: list[tuple[str, str, str]]


def finish(
    trainer: Seq2SeqAttnTrainer,
    data: DataArguments,
    splits: Splits,
    tokenizer,
    outcome: TrainingOutcome,
    push: bool,
) -> None:
    """Save everything, score the test split, draw attention, write the model card, push."""
    args = trainer.args
    model = cast(Seq2SeqAttnForConditionalGeneration, trainer.model).eval()
    output_dir = str(args.output_dir)  # set at parse time (recipe, flag or the default)
    set_generation_defaults(model, data, tokenizer)  # Seq2SeqTrainer writes its eval lengths into it
    trainer.save_model(output_dir)  # weights, config, code, pipeline, and (as processing_class) the tokenizer
    trainer.save_state()  # trainer_state.json: the log history (learning rate, loss, budget used per step)
    results = outcome.results(args.world_size)
    test = _score_test_split(model, tokenizer, splits, data, output_dir, args.per_device_eval_batch_size)
    results.update({f"test_{k}": round(v, 2) for k, v in test.metrics.items()})
    examples = (splits.validation or splits.test or splits.train).sources[: data.num_attention_plots]
    _plot_examples(model, tokenizer, examples, output_dir, data.max_target_length)
    with open(os.path.join(output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    repo_id: str = args.hub_model_id or os.path.basename(os.path.abspath(output_dir))
    _write_model_card(
        trainer, data, splits, tokenizer, outcome, test.metrics, examples, repo_id if push else output_dir
    )
    _print_summary(splits.name, trainer.state.global_step, outcome.minutes, test, output_dir)
    if push:
        push_folder(output_dir, repo_id, token=args.hub_token, private=args.hub_private_repo)
        print(f"Pushed to https://huggingface.co/{repo_id}")


def _score_test_split(
    model: Seq2SeqAttnForConditionalGeneration,
    tokenizer,
    splits: Splits,
    data: DataArguments,
    output_dir: str,
    batch_size: int,
) -> HeldOutScores:
    """Translate the test split with the test's generation settings, score it, save the predictions."""
    from ..tools.inference import translate

    if splits.test is None or splits.test_refs is None:
        return HeldOutScores({}, [])
    results = translate(
        model,
        tokenizer,
        splits.test.sources,
        batch_size=batch_size,
        num_beams=data.test_num_beams,
        length_penalty=data.length_penalty,
        max_new_tokens=data.max_target_length,
        progress=True,
    )
    predictions = [result.text for result in results]
    with open(os.path.join(output_dir, "test_predictions.txt"), "w", encoding="utf-8") as handle:
        handle.writelines(p + "\n" for p in predictions)
    samples = list(zip(splits.test.sources, splits.test.targets, predictions, strict=True))
    return HeldOutScores(
        task_metrics(data.task, predictions, splits.test_refs), samples[: data.num_samples_to_print]
    )


def _plot_examples(model, tokenizer, sources: list[str], output_dir: str, max_new_tokens: int) -> None:
    """Save `attention_<i>.png`: the attention of the model's own translation of each source."""
    from ..tools.inference import attention_for
    from ..tools.plotting import plot_attention

    for i, source in enumerate(sources):
        weights, source_tokens, output_tokens = attention_for(
            model, tokenizer, source, max_new_tokens=max_new_tokens
        )
        path = os.path.join(output_dir, f"attention_{i}.png")
        plot_attention(weights, source_tokens, output_tokens, path=path, title=f"example {i}")


def _print_summary(name: str, steps: int, minutes: float, test: HeldOutScores, output_dir: str) -> None:
    """What the run did, its test scores and a few predictions, for the person at the terminal."""
    print(f"\n== {name}: trained {steps} steps in {minutes:.1f} min ==")
    for metric, value in test.metrics.items():
        print(f"test {metric}: {value:.2f}")
    for source, reference, prediction in test.samples:
        print(f"\nsource:     {source}\nreference:  {reference}\nprediction: {prediction}")
    print(f"\nSaved model, tokenizer, model card and attention plots to {output_dir}")


def _write_model_card(trainer, data: DataArguments, splits: Splits, tokenizer, outcome: TrainingOutcome,
                      test_metrics: dict[str, float], examples: list[str], model_id: str) -> None:  # fmt: skip
    """Render `README.md` into the output folder; `model_id` is the Hub id when pushed, else the folder."""
    args, model = trainer.args, trainer.model
    names = ("learning_rate", "per_device_train_batch_size", "num_train_epochs", "label_smoothing_factor",
             "weight_decay", "max_grad_norm", "seed")  # fmt: skip
    hyper: dict[str, object] = {name: getattr(args, name) for name in names}
    hyper.update(
        max_train_minutes=data.max_train_minutes,
        tokenizer=f"{data.tokenizer_kind} {len(tokenizer)}",
        steps=trainer.state.global_step,
    )
    if outcome.averaging is not None:
        hyper["checkpoint_averaging"] = outcome.averaging.get("kept", "")
    hardware = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"{platform.machine()} CPU x{torch.get_num_threads()} threads"
    )
    facts = CardFacts(
        dataset_name=splits.name,
        source_lang=splits.source_lang,
        target_lang=splits.target_lang,
        task=data.task,
        repo_id=model_id,
        example_source=examples[0] if examples else "",
        test_metrics=test_metrics,
        hyperparameters=hyper,
        generation={"num_beams": data.test_num_beams, "length_penalty": data.length_penalty},
        num_train_examples=len(splits.train),
        max_source_length=data.max_source_length,
        train_minutes=outcome.budget_minutes_used or outcome.minutes,
        hardware=hardware,
        num_parameters=model.num_parameters(),
    )
    render_model_card(str(args.output_dir), str(CARD_TEMPLATE), model.config, facts)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `seq2seq-attn train`: user mistakes become one `error:` line and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    # ValueError: config validation and the like; FileNotFoundError: a missing starting model or tokenizer.
    except (DataError, NonFiniteLossError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: resume with --resume_from_checkpoint True (checkpoints are in --output_dir)",
            file=sys.stderr,
        )
        return 130
    finally:
        # Join the process group's threads before the interpreter exits: left to exit-time teardown, a
        # rank of a torchrun run could abort with "terminate called without an active exception".
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


__all__ = ["build_model", "build_tokenizer", "finish", "main", "run", "set_generation_defaults"]
