"""Speed benchmark; see `hf_seq2seq_attn.benchmark` (also `seq2seq-attn benchmark --help`)."""

from hf_seq2seq_attn.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
