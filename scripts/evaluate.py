#!/usr/bin/env python
"""Score a model on a test file: the same as `seq2seq-attn evaluate` (see `hf_seq2seq_attn/cli.py`)."""

import sys

from hf_seq2seq_attn.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["evaluate", *sys.argv[1:]]))
