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


def decode_lines(lines: list[bytes | str], name: str) -> list[str]:
    """Decode UTF-8 lines and drop line endings; `ValueError` names the first undecodable line."""
    sentences = []
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{name}: line {number} is not valid UTF-8 ({err.reason}).") from None
        sentences.append(line.rstrip("\r\n"))
    if sentences and sentences[0].startswith("\ufeff"):
        sentences[0] = sentences[0][1:]
    return sentences


def read_sentences(path: str | None) -> list[str]:
    if path is None:
        stream = getattr(sys.stdin, "buffer", sys.stdin)  # bytes when possible, to report bad lines
        return decode_lines(stream.readlines(), "stdin")
    with open(path, "rb") as handle:
        return decode_lines(handle.readlines(), path)


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
