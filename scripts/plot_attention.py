#!/usr/bin/env python
"""Plot the attention of one translation: the same as `seq2seq-attn plot` (see `hf_seq2seq_attn/cli.py`)."""

import sys

from hf_seq2seq_attn.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["plot", *sys.argv[1:]]))
