"""Plot the attention of a saved Seq2SeqAttn model while it translates one sentence.

    python scripts/plot_attention.py --model out/model --source "hola mundo" --output attention.png

Source tokens run across, output tokens down; a multi-head model gets one panel per head.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import hf_seq2seq_attn  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_seq2seq_attn.inference import attention_for, load_model_and_tokenizer  # noqa: E402
from hf_seq2seq_attn.plotting import plot_attention  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or cached Hub id")
    parser.add_argument("--source", required=True, help="the sentence to translate")
    parser.add_argument("--output", default="attention.png", help="image file (format from the extension)")
    parser.add_argument("--num_beams", type=int, default=1, help="beam width of the translation shown")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="default: 2 * source tokens + 10")
    parser.add_argument("--title", default=None, help="figure title (default: the translation)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.num_beams < 1:
        print(f"error: --num_beams must be >= 1, got {args.num_beams}.", file=sys.stderr)
        return 2
    try:
        model, tokenizer = load_model_and_tokenizer(args.model, device=args.device)
        weights, source_tokens, output_tokens = attention_for(
            model, tokenizer, args.source, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams
        )
        title = args.title
        if title is None:
            special = set(tokenizer.all_special_tokens)
            title = tokenizer.convert_tokens_to_string(
                [token for token in output_tokens if token not in special]
            )
        plot_attention(weights, source_tokens, output_tokens, path=args.output, title=title)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"Saved {weights.shape[0]}-head attention ({len(output_tokens)} x {len(source_tokens)}) to {args.output}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
