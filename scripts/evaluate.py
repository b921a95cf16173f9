"""Score a saved Seq2SeqAttn model on a test file and print the metrics as JSON.

    python scripts/evaluate.py --model out/model --test_file test.jsonl --num_beams 5
    python scripts/evaluate.py --model out/g2p --test_file g2p_test.tsv --task g2p --predictions_file p.jsonl

`--task translation`: corpus BLEU and chrF (sacrebleu defaults), one reference per row.
`--task g2p` (also for character tasks such as copy / reverse): rows with the same source are one item
whose targets are all accepted; reports WER (% items matching no accepted target), PER (symbol error
rate against the closest one) and exact match, as the train script does.
The test file is JSON lines, CSV or TSV with a header row (optionally .gz), chosen by extension.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import hf_seq2seq_attn  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_seq2seq_attn.data import BAD_ROW_POLICIES, read_parallel  # noqa: E402
from hf_seq2seq_attn.inference import (  # noqa: E402
    add_generation_arguments,
    generation_kwargs_from_args,
    group_references,
    load_model_and_tokenizer,
    translate,
)
from hf_seq2seq_attn.training import TASKS, task_metrics  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or cached Hub id")
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
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    add_generation_arguments(parser)
    return parser.parse_args(argv)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.n_best != 1:
        print("error: --n_best must be 1 when evaluating (one prediction per source).", file=sys.stderr)
        return 2
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
        model, tokenizer = load_model_and_tokenizer(args.model, device=args.device)
        predictions = translate(
            model, tokenizer, sources, progress=not args.no_progress, **generation_kwargs_from_args(args)
        )
        metrics = task_metrics(args.task, predictions, references)
        metrics["num_examples"] = len(sources)
        if args.predictions_file is not None:
            write_predictions(args.predictions_file, sources, predictions, references)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
