"""The `seq2seq-attn` command: one entry point, a subcommand per job.

    seq2seq-attn train --recipe demo                  # train, test, save, plot (see `train --help`)
    seq2seq-attn recipes [--show NAME]                # the shipped recipes; copy one, edit it, pass its path
    echo "Y dijo Dios" | seq2seq-attn translate --model outputs/demo
    seq2seq-attn evaluate --model outputs/demo --test_file test.jsonl
    seq2seq-attn plot --model outputs/demo --source "Sea la luz." --output light.png
    seq2seq-attn benchmark --quick

Each subcommand is a `main(argv) -> int` function in the module that owns the job (`COMMANDS`); this file
parses the options of the small inference commands (translate, evaluate, plot, recipes), and defines the
model and generation options every inference command shares (`g2p` too), and nothing more.

It imports only the standard library: `seq2seq-attn --help`, `COMMAND --help` (for the commands defined
here and `g2p`) and `recipes` answer without loading torch or transformers; each command imports what it
needs once its options are parsed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from .tools.inference import Translation

# name -> ("module:function", one-line help). Modules are imported only when their command runs, so
# `seq2seq-attn translate` does not pay for the trainer, and optional extras are needed only by their command.
from .tools.options import (  # noqa: E402  (re-exported: the commands' shared options)
    add_generation_arguments,
    add_model_arguments,
    generation_kwargs_from_args,
)

COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "training.train:main",
        "train a model from a recipe and/or options, then test, save and plot it",
    ),
    "recipes": ("cli:recipes_main", "list the shipped recipes or print one (to copy and edit)"),
    "translate": ("cli:translate_main", "translate sentences, one per line"),
    "evaluate": ("cli:evaluate_main", "score a model on a test file (BLEU/chrF, or WER/PER for G2P)"),
    "plot": ("cli:plot_main", "draw the attention of one translation as a heat-map"),
    "benchmark": ("benchmark:main", "time training and generation, with ratios measured in the same run"),
    "export": ("cli:export_main", "export to ONNX Runtime graphs, optionally int8 ([onnx] extra)"),
    "average": ("cli:average_main", "average checkpoints into one model folder"),
    "g2p": (
        "tools.g2p:main",
        "pronounce words: lexicon first, the model for the rest, n-best with probabilities",
    ),
    "explore": ("explorer.cli:main", "open the interactive attention explorer in the browser ([app] extra)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    return (
        "usage: seq2seq-attn COMMAND [options]   (seq2seq-attn COMMAND --help for its options)\n\ncommands:\n"
        + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> int:
    """Dispatch `seq2seq-attn COMMAND ...` to the command's `main`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name = COMMANDS[name][0].split(":")
    module = importlib.import_module(f"{__package__}.{module_name}")
    return int(getattr(module, function_name)(rest))


def _parser(prog: str, doc: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"seq2seq-attn {prog}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _fail(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 2


def load_for_inference(args: argparse.Namespace):
    """`(model, tokenizer)` for `--model` on `--backend` (pytorch for a command without that option).

    Raises `ValueError` for a `--device` the backend cannot use.
    """
    if getattr(args, "backend", "pytorch") == "onnx":
        from .serving.modeling_ort import load_onnx_model_and_tokenizer
        from .tools.inference import resolve_device

        # The ONNX sessions run on the CPU: a GPU asked for would otherwise be ignored without a word.
        if resolve_device(args.device).type != "cpu":
            raise ValueError(
                f"--device {args.device}: the onnx backend runs on the CPU only; drop --device or use "
                "--backend pytorch."
            )
        return load_onnx_model_and_tokenizer(args.model)
    from .tools.inference import load_model_and_tokenizer

    return load_model_and_tokenizer(args.model, device=args.device)


# --------------------------------------------------------------------------------------------
# translate
# --------------------------------------------------------------------------------------------
TRANSLATE_DOC = """Translate sentences (one per line) with a saved model.

    seq2seq-attn translate --model outputs/demo --input test.src --output test.hyp --num_beams 5
    echo "hola mundo" | seq2seq-attn translate --model outputs/demo --n_best 3 --scores

    echo "Y dijo Dios" | seq2seq-attn translate --model outputs/demo --alignments      # text ||| 0-0 1-1 2-2
    seq2seq-attn translate --model outputs/demo --input test.src --alignments soft --alignment_head 0

Writes one line per input sentence, or `--n_best` consecutive lines per sentence (best first); with
`--scores` each line is `score<TAB>text`. With `--alignments`, each line is `translation ||| i-j ...`
(Pharaoh/Moses pairs of 0-based source and target *word* indices, from the attention of the returned
hypothesis, subwords merged into words); `--alignments soft` appends the target x source word attention
as JSON. A progress bar goes to stderr when reading a file.
"""


def read_sentences(path: str | None) -> list[str]:
    """One sentence per line of `path` (stdin when None); a non-UTF-8 line is reported by number."""
    from .training.data import utf8_lines

    raw: list[bytes] | list[str]
    if path is None:
        name, raw = "stdin", getattr(sys.stdin, "buffer", sys.stdin).readlines()  # bytes when possible
    else:
        with open(path, "rb") as handle:
            name, raw = path, handle.readlines()
    if raw and isinstance(raw[0], str):  # a text stream without a byte buffer (e.g. a test's StringIO)
        lines = [str(line) for line in raw]
    else:
        lines = [text for _, text in utf8_lines(cast("list[bytes]", raw), name)]
    sentences = [line.rstrip("\r\n") for line in lines]
    if sentences and sentences[0].startswith("\ufeff"):  # a byte-order mark is not part of the text
        sentences[0] = sentences[0][1:]
    return sentences


def format_lines(results: Sequence[Translation]) -> list[str]:
    """Output lines for [`inference.translate`] results: each hypothesis's text, or `score<TAB>text`
    when the results carry scores (`output_scores=True`)."""
    lines: list[str] = []
    for result in results:
        if result.scores is None:
            lines.extend(result.texts)
        else:
            lines.extend(
                f"{score:.4f}\t{text}" for text, score in zip(result.texts, result.scores, strict=True)
            )
    return lines


def translate_main(argv: list[str] | None = None) -> int:
    parser = _parser("translate", TRANSLATE_DOC)
    add_model_arguments(parser)
    parser.add_argument("--input", default=None, help="UTF-8 file, one sentence per line (default: stdin)")
    parser.add_argument("--output", default=None, help="where to write translations (default: stdout)")
    parser.add_argument("--scores", action="store_true", help="prefix each line with its score and a tab")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--alignments",
        nargs="?",
        const="hard",
        choices=("hard", "soft"),
        default=None,
        help="append word alignments from the attention: `hard` (i-j pairs) or `soft` (plus the matrix as JSON)",
    )
    parser.add_argument(
        "--alignment_head", type=int, default=None, help="align with this head (default: average)"
    )
    add_generation_arguments(parser)
    args = parser.parse_args(argv)
    from .tools.inference import translate

    try:
        sentences = read_sentences(args.input)
        model, tokenizer = load_for_inference(args)
        if args.alignments is not None:
            return _print_alignments(model, tokenizer, sentences, args)
        results = translate(
            model,
            tokenizer,
            sentences,
            progress=args.input is not None and not args.no_progress,
            output_scores=args.scores,
            **generation_kwargs_from_args(args),
        )
        text = "".join(line + "\n" for line in format_lines(results))
        if args.output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
    except (OSError, ValueError, ImportError) as error:
        return _fail(error)
    return 0


def _print_alignments(model, tokenizer, sentences: list[str], args: argparse.Namespace) -> int:
    from .tools.alignment import align, format_line

    if args.n_best != 1 or args.do_sample:
        raise ValueError(
            "--alignments aligns the one returned translation: use it without --n_best / --do_sample."
        )
    alignments = align(
        model,
        tokenizer,
        sentences,
        num_beams=args.num_beams,
        head=args.alignment_head,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        length_penalty=args.length_penalty,
    )
    text = "".join(format_line(a, soft=args.alignments == "soft") + "\n" for a in alignments)
    if args.output is None:
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------
EVALUATE_DOC = """Score a saved model on a test file and print the metrics as JSON.

    seq2seq-attn evaluate --model outputs/demo --test_file test.jsonl --num_beams 5
    seq2seq-attn evaluate --model outputs/g2p --test_file g2p_test.tsv --task g2p --predictions_file p.jsonl

`--task translation`: corpus BLEU and chrF (sacrebleu defaults), one reference per row.
`--task g2p` (also for character tasks such as copy / reverse): rows with the same source are one item
whose targets are all accepted; reports WER (% items matching no accepted target), PER (symbol error
rate against the closest one) and exact match, as training does.
The test file is JSON lines, CSV or TSV with a header row (optionally .gz), chosen by extension.
"""


def write_predictions(
    path: str, sources: list[str], predictions: list[str], references: list[list[str]]
) -> None:
    """JSON lines `{"source", "prediction", "references"}` for `.jsonl`, else one prediction per line."""
    with open(path, "w", encoding="utf-8") as handle:
        for source, prediction, options in zip(sources, predictions, references, strict=True):
            if path.endswith(".jsonl"):
                record = {"source": source, "prediction": prediction, "references": options}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                handle.write(prediction + "\n")


def evaluate_main(argv: list[str] | None = None) -> int:
    from .tools.metrics import TASKS, task_metrics
    from .training.data import BAD_ROW_POLICIES, group_references, read_parallel

    parser = _parser("evaluate", EVALUATE_DOC)
    add_model_arguments(parser)
    parser.add_argument("--test_file", required=True, help="test set: .jsonl, .csv or .tsv with a header")
    parser.add_argument("--source_column", default="source")
    parser.add_argument("--target_column", default="target")
    parser.add_argument("--source_lang", default=None, help="for nested columns such as translation.es")
    parser.add_argument("--target_lang", default=None, help="for nested columns such as translation.en")
    parser.add_argument("--bad_rows", choices=BAD_ROW_POLICIES, default="error", help="rows with empty text")
    parser.add_argument("--task", choices=TASKS, default="translation")
    parser.add_argument(
        "--predictions_file", default=None, help="also write predictions (.jsonl: with sources)"
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_generation_arguments(parser)
    args = parser.parse_args(argv)
    if args.n_best != 1:
        return _fail(ValueError("--n_best must be 1 when evaluating (one prediction per source)."))
    from .tools.inference import translate

    try:
        data = read_parallel(
            args.test_file,
            args.source_column,
            args.target_column,
            source_lang=args.source_lang,
            target_lang=args.target_lang,
            bad_rows=args.bad_rows,
        )
        if args.task == "g2p":
            sources, references = group_references(data.sources, data.targets)
        else:
            sources, references = data.sources, [[target] for target in data.targets]
        model, tokenizer = load_for_inference(args)
        results = translate(
            model, tokenizer, sources, progress=not args.no_progress, **generation_kwargs_from_args(args)
        )
        predictions = [result.text for result in results]
        metrics: dict[str, float] = task_metrics(args.task, predictions, references)
        metrics["num_examples"] = len(sources)
        if args.predictions_file is not None:
            write_predictions(args.predictions_file, sources, predictions, references)
    except (OSError, ValueError, ImportError) as error:
        return _fail(error)
    print(json.dumps(metrics, indent=2))
    return 0


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------
PLOT_DOC = """Plot the attention of a saved model while it translates one sentence.

    seq2seq-attn plot --model outputs/demo --source "hola mundo" --output attention.png

Source tokens run across, output tokens down; a multi-head model gets one panel per head.
"""


def plot_main(argv: list[str] | None = None) -> int:
    parser = _parser("plot", PLOT_DOC)
    add_model_arguments(parser, model_help="model folder (save_pretrained) or cached Hub id", backend=False)
    parser.add_argument("--source", required=True, help="the sentence to translate")
    parser.add_argument("--output", default="attention.png", help="image file (format from the extension)")
    parser.add_argument("--title", default=None, help="figure title (default: the translation)")
    add_generation_arguments(
        parser,
        ("num_beams", "max_new_tokens"),
        {"num_beams": {"default": 1, "help": "beam width of the translation shown"}},
    )
    args = parser.parse_args(argv)
    if args.num_beams < 1:
        return _fail(ValueError(f"--num_beams must be >= 1, got {args.num_beams}."))
    from .tools.inference import attention_for
    from .tools.plotting import plot_attention

    try:
        model, tokenizer = load_for_inference(args)
        weights, source_tokens, output_tokens = attention_for(
            model, tokenizer, args.source, **generation_kwargs_from_args(args)
        )
        title = args.title
        if title is None:
            special = set(tokenizer.all_special_tokens)
            title = tokenizer.convert_tokens_to_string(
                [token for token in output_tokens if token not in special]
            )
        plot_attention(weights, source_tokens, output_tokens, path=args.output, title=title)
    except (OSError, ValueError) as error:
        return _fail(error)
    print(
        f"Saved {weights.shape[0]}-head attention ({len(output_tokens)} x {len(source_tokens)}) to {args.output}"
    )
    return 0


# --------------------------------------------------------------------------------------------
# export (the ONNX code loads only once the options are parsed: `export --help` stays instant)
# --------------------------------------------------------------------------------------------
EXPORT_EPILOG = """examples:
  seq2seq-attn export --model outputs/demo --output outputs/demo-onnx
  seq2seq-attn export --model outputs/demo --output outputs/demo-onnx --int8

then translate with ONNX Runtime (int8 graphs when the folder has them):
  echo "Y dijo Dios: Sea la luz." | seq2seq-attn translate --model outputs/demo-onnx --backend onnx
"""


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq-attn export",
        description="Export a saved Seq2SeqAttn model to ONNX graphs (encoder, decoder init, decoder step) "
        "with its tokenizer and generation config, for CPU serving with ONNX Runtime.",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="folder written by save_pretrained (model and tokenizer)"
    )
    parser.add_argument("--output", required=True, help="folder for the ONNX graphs (created if needed)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write int8 graphs (ONNX Runtime dynamic quantization of the weights)",
    )
    return parser


def export_main(argv: list[str] | None = None) -> int:
    """`seq2seq-attn export --model DIR --output DIR [--int8]`; returns the exit code."""
    args = export_parser().parse_args(argv)
    from .serving.onnx_export import export_onnx, require

    try:
        require("onnx")
        if args.int8:
            require("onnxruntime")
        from .tools.inference import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(args.model)
        output = export_onnx(model, args.output, tokenizer=tokenizer, int8=args.int8)
    except (ImportError, FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sizes = {path.name: path.stat().st_size for path in sorted(output.glob("*.onnx"))}
    for name, size in sizes.items():
        print(f"{name}\t{size / 1e6:.2f} MB")
    print(f"wrote {output}")
    return 0


# --------------------------------------------------------------------------------------------
# average
# --------------------------------------------------------------------------------------------
AVERAGE_EPILOG = """examples:
  seq2seq-attn average --checkpoints outputs/bible/checkpoint-3000 outputs/bible/checkpoint-4500 \\
      outputs/bible/checkpoint-6000 --output outputs/bible-avg
  seq2seq-attn average --last 3 --run_dir outputs/bible --output outputs/bible-avg

The output is a normal model folder (safetensors weights, config, code, tokenizer, generation config,
model card): AutoModelForSeq2SeqLM.from_pretrained(folder) loads it where hf_seq2seq_attn is imported;
elsewhere its own code files load it (trust_remote_code=True).
Keep enough checkpoints while training: --save_strategy steps --save_total_limit N.
"""


def average_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq-attn average",
        description="Average the weights of several checkpoints of one training run into a new model folder.",
        epilog=AVERAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", nargs="+", metavar="DIR", help="checkpoint folders to average")
    source.add_argument(
        "--last", type=int, metavar="N", help="average the newest N checkpoint-* folders of --run_dir"
    )
    parser.add_argument("--run_dir", help="training output folder holding checkpoint-* folders (with --last)")
    parser.add_argument("--output", required=True, help="new folder for the averaged model")
    return parser


def average_main(argv: list[str] | None = None) -> int:
    """`seq2seq-attn average ...`: returns 0, or 2 with `error: ...` on stderr for a user mistake."""
    parser = average_parser()
    args = parser.parse_args(argv)
    from .tools.averaging import CARD_NAME, average_checkpoints, last_checkpoints

    try:
        if args.last is not None:
            if not args.run_dir:
                raise ValueError("--last needs --run_dir, the training output folder.")
            folders = last_checkpoints(args.run_dir, args.last)
            card_source = args.run_dir if os.path.isfile(os.path.join(args.run_dir, CARD_NAME)) else None
        else:
            if args.run_dir:
                raise ValueError(
                    "--run_dir goes with --last; with --checkpoints name the folders themselves."
                )
            folders, card_source = args.checkpoints, None
        average_checkpoints(folders, args.output, card_source=card_source)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Averaged {len(folders)} checkpoints ({', '.join(folders)}) into {args.output}")
    return 0


# --------------------------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------------------------
RECIPES_DOC = """List the recipes shipped with the package, or print one to copy and edit.

    seq2seq-attn recipes
    seq2seq-attn recipes --show bible > my_recipe.yaml      # edit it, then:
    seq2seq-attn train --recipe my_recipe.yaml --learning_rate 0.001   # flags override the file
"""


def recipes_main(argv: list[str] | None = None) -> int:
    from .training.data import DataError
    from .training.recipes import recipe_names, recipe_path

    parser = _parser("recipes", RECIPES_DOC)
    parser.add_argument("--show", default=None, metavar="NAME", help="print this recipe's file")
    args = parser.parse_args(argv)
    if args.show is None:
        for name in recipe_names():
            first = recipe_path(name).read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
            print(f"{name:<12} {first}")
        return 0
    try:
        print(recipe_path(args.show).read_text(encoding="utf-8"), end="")
    except DataError as error:
        return _fail(error)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
