"""`python -m hf_seq2seq_attn COMMAND ...`: the same as the `seq2seq-attn` console command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
