#!/usr/bin/env python
"""Train a model: the same as `seq2seq-attn train` (see `hf_seq2seq_attn/training/train.py`).

python scripts/train.py --recipe demo
"""

import sys

from hf_seq2seq_attn.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
