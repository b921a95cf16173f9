"""Translate sentences (one per line) with a saved Seq2SeqAttn model.

    python scripts/translate.py --model out/model --input test.src --output test.hyp --num_beams 5
    echo "hola mundo" | python scripts/translate.py --model out/model --n_best 3 --scores

Writes one line per input sentence, or `--n_best` consecutive lines per sentence (best first); with
`--scores` each line is `score<TAB>text`. A progress bar goes to stderr when reading a file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import hf_seq2seq_attn  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_seq2seq_attn.data import utf8_lines  # noqa: E402
from hf_seq2seq_attn.inference import (  # noqa: E402
    add_generation_arguments,
    generation_kwargs_from_args,
    load_model_and_tokenizer,
    translate,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or cached Hub id")
    parser.add_argument("--input", default=None, help="UTF-8 file, one sentence per line (default: stdin)")
    parser.add_argument("--output", default=None, help="where to write translations (default: stdout)")
    parser.add_argument("--scores", action="store_true", help="prefix each line with its score and a tab")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    add_generation_arguments(parser)
    return parser.parse_args(argv)


def read_sentences(path: str | None) -> list[str]:
    """One sentence per line of `path` (stdin when None); a non-UTF-8 line is reported by number."""
    if path is None:
        name, raw = "stdin", getattr(sys.stdin, "buffer", sys.stdin).readlines()  # bytes when possible
    else:
        with open(path, "rb") as handle:
            name, raw = path, handle.readlines()
    lines = raw if raw and isinstance(raw[0], str) else [text for _, text in utf8_lines(raw, name)]
    sentences = [line.rstrip("\r\n") for line in lines]
    if sentences and sentences[0].startswith("\ufeff"):  # a byte-order mark is not part of the text
        sentences[0] = sentences[0][1:]
    return sentences


def format_lines(results: list, scores: bool) -> list[str]:
    lines = []
    for result in results:
        for hypothesis in result if isinstance(result, list) else [result]:
            if scores:
                text, score = hypothesis
                lines.append(f"{score:.4f}\t{text}")
            else:
                lines.append(hypothesis)
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sentences = read_sentences(args.input)
        model, tokenizer = load_model_and_tokenizer(args.model, device=args.device)
        results = translate(
            model,
            tokenizer,
            sentences,
            return_scores=args.scores,
            progress=args.input is not None and not args.no_progress,
            **generation_kwargs_from_args(args),
        )
        text = "".join(line + "\n" for line in format_lines(results, args.scores))
        if args.output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
