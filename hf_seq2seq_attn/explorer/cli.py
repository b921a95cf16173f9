"""`seq2seq-attn explore`: the options, and `main`.

Imports only the standard library, so `seq2seq-attn explore --help` answers without loading torch,
transformers or gradio; `main` imports the explorer's modules once the options are parsed.
"""

from __future__ import annotations

import argparse
import os
import sys

EPILOG = """examples:
  seq2seq-attn explore --model outputs/demo
  seq2seq-attn explore --model outputs/additive --model outputs/dot --port 7861
  seq2seq-attn explore --model outputs/demo --neighbors data/train.jsonl   # nearest training pairs
  seq2seq-attn explore --model outputs/demo --write_space my_space     # app.py + requirements.txt
  seq2seq-attn explore --model you/demo-model --push_space you/demo-explorer
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq-attn explore",
        description="Open the attention explorer: translate in the browser and hover the attention heat-map.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", action="append", required=True, help="model folder or Hub id; give it twice to compare two"
    )
    parser.add_argument("--port", type=int, default=7860, help="local port (default 7860)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--neighbors",
        metavar="FILE",
        help="a training file (JSON Lines/CSV/TSV, source and target columns): list the training pairs "
        "whose encoder states are closest to the typed sentence (encoded once, cached beside the model)",
    )
    parser.add_argument(
        "--neighbors_max",
        type=int,
        default=30_000,
        metavar="N",
        help="with --neighbors: encode the first N pairs (default 30000)",
    )
    parser.add_argument("--write_space", metavar="DIR", help="write a Hugging Face Space folder and exit")
    parser.add_argument("--push_space", metavar="REPO_ID", help="upload the Space to REPO_ID and exit")
    parser.add_argument("--private", action="store_true", help="with --push_space: create a private Space")
    return parser


def _fail(message: str) -> int:
    """Print `error: message` for a user mistake and return the exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def _argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line, checked before any model loads (None when nothing is)."""
    from ..tools.inference import check_model_type
    from .models import MAX_MODELS, friendly_error

    if len(args.model) > MAX_MODELS:
        return f"give --model at most {MAX_MODELS} times (got {len(args.model)})."
    if not 1 <= args.port <= 65535:
        return f"--port must be between 1 and 65535, got {args.port}."
    if args.neighbors_max < 1:
        return f"--neighbors_max must be at least 1, got {args.neighbors_max}."
    if args.neighbors is not None and not os.path.isfile(args.neighbors):
        return f"--neighbors: no such file: {args.neighbors}"
    for name in args.model:
        try:
            check_model_type(name)  # before anything of it loads: no code from the folder or repo runs
        except (OSError, ValueError) as err:
            return friendly_error(err)
    return None


def _publish_space(args: argparse.Namespace) -> None:
    """`--write_space DIR` (which wins when both are given) or `--push_space REPO_ID`."""
    from .space import push_space, write_space

    if args.write_space:
        write_space(args.model, args.write_space)
        print(
            f"Wrote a Space to {args.write_space}: upload it with `huggingface-cli upload --repo-type space "
            f"REPO_ID {args.write_space}` or use --push_space."
        )
    else:
        print(f"Space: {push_space(args.model, args.push_space, private=args.private)}")


def main(argv: list[str] | None = None) -> int:
    """`seq2seq-attn explore`: returns an exit code; user mistakes print `error: ...` and return 2."""
    args = build_parser().parse_args(argv)
    # torch and transformers load from here on, gradio in `build_app`: `--help` above needs none of them.
    from .app import build_app, launch_app
    from .models import friendly_error

    problem = _argument_problem(args)
    if problem is not None:
        return _fail(problem)
    try:
        if args.write_space or args.push_space:
            _publish_space(args)
            return 0
        demo = build_app(args.model, neighbors=args.neighbors, neighbors_max=args.neighbors_max)
    except ImportError as err:
        return _fail(str(err))
    except (OSError, ValueError) as err:
        return _fail(friendly_error(err))
    try:
        launch_app(demo, server_name=args.host, server_port=args.port, inbrowser=False)
    except OSError as err:
        return _fail(f"could not start the server on {args.host}:{args.port}: {err}")
    return 0
