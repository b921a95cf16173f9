"""`python -m hf_seq2seq_attn.benchmark ...`: the same as `seq2seq-attn benchmark ...` (how
`training.measure_memory` starts its fresh `--memory-child` processes)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
