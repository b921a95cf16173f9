#!/usr/bin/env python
"""Translate sentences, one per line: the same as `seq2seq-attn translate` (see `hf_seq2seq_attn/cli.py`)."""

import sys

from hf_seq2seq_attn.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["translate", *sys.argv[1:]]))
