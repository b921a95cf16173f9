"""Configuration of the attention RNN sequence-to-sequence model.

No torch import here: a config must load (and be validated) without building a model.
"""

from __future__ import annotations

from transformers import PretrainedConfig

RNN_TYPES = ("gru", "lstm", "rnn")
BRIDGES = ("linear", "zero")
# Canonical score functions; aliases map onto them (see `ATTENTION_ALIASES`).
ATTENTION_TYPES = ("additive", "dot", "general", "scaled_dot")
# `v^T tanh(W [s; h])` is the additive score: splitting W column-wise into [W_q | W_k] gives
# `v^T tanh(W_q s + W_k h)`, so Luong et al.'s "concat" names the same function; "bilinear" is `s^T W h`.
ATTENTION_ALIASES = {"concat": "additive", "bilinear": "general"}
DECODER_STYLES = ("bahdanau", "luong")
# Paper names that are decoder styles, not score functions: refused as `attention_type` with a pointer.
STYLE_NAMES_AS_SCORES = {
    "luong": "'luong' names a decoder_style; Luong's multiplicative score is attention_type='general' "
    "(or 'dot' / 'scaled_dot'), his 'concat' score is attention_type='additive'",
    "bahdanau": "'bahdanau' names a decoder_style; Bahdanau's score is attention_type='additive'",
}
PAD_REQUIRED = "`pad_token_id` is required: it marks source padding and masks it from attention."


def _choice(name: str, value: object, allowed: tuple[str, ...], aliases: dict[str, str] | None = None) -> str:
    """Return the canonical spelling of a string option or raise a `ValueError` that lists the choices."""
    aliases = aliases or {}
    if isinstance(value, str):
        key = value.lower()
        if key in allowed:
            return key
        if key in aliases:
            return aliases[key]
    choices = ", ".join(repr(v) for v in (*allowed, *aliases))
    raise ValueError(f"`{name}` must be one of {choices}; got {value!r}.")


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")


def _probability(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1); got {value!r}.")


class Seq2SeqAttnConfig(PretrainedConfig):
    r"""Configuration for [`Seq2SeqAttnModel`] and [`Seq2SeqAttnForConditionalGeneration`].

    The model is the classic attention encoder-decoder: a (bidirectional) RNN encoder, an RNN
    decoder that attends over the encoder states at every step, and a vocabulary projection.

    Args:
        vocab_size (`int`, defaults to 8000):
            Size of the (source) vocabulary; also the target vocabulary unless `decoder_vocab_size` is set.
        decoder_vocab_size (`int`, *optional*):
            V, the size of the target vocabulary. Left unset (`None`), it is set to `vocab_size` when the
            config is made (source and target share one vocabulary size).
        embedding_size (`int`, defaults to 256):
            Width E of the token embeddings, and of the decoder's read-out layer (so the output
            projection can be tied to the target embeddings).
        encoder_hidden_size (`int`, defaults to 256):
            Hidden size of the encoder RNN *per direction*. The encoder output width is
            K = 2 x this when `bidirectional`, else 1 x.
        decoder_hidden_size (`int`, defaults to 512):
            Hidden size H of the decoder RNN.
        encoder_layers (`int`, defaults to 1): Number of stacked encoder RNN layers.
        decoder_layers (`int`, defaults to 1): Number of stacked decoder RNN layers.
        rnn_type (`str`, defaults to `"gru"`): `"gru"`, `"lstm"` or `"rnn"` (Elman, tanh).
        bidirectional (`bool`, defaults to `True`):
            Run the encoder in both directions and concatenate the two states at each position.
        bridge (`str`, defaults to `"linear"`):
            How the decoder's initial state is made from the encoder: `"linear"` is
            `tanh(W [h_fwd_last; h_bwd_first])` (one projection producing every decoder layer's
            state); `"zero"` starts the decoder from zeros.
        attention_type (`str`, defaults to `"additive"`):
            The score function `score(s, h)` between a decoder query `s` and an encoder state `h`:
            - `"additive"` (alias `"concat"`): `v^T tanh(W_q s + W_k h)`
              (Bahdanau et al. 2015, eq. 6; Luong et al. 2015 eq. 8 "concat" is the same function,
              since `W [s; h] = W_q s + W_k h` with `W = [W_q | W_k]`). The tanh matters: a plain
              linear score `v^T W [s; h] = a(s) + b(h)` adds the same `a(s)` to every key, which
              the softmax cancels, so the weights would ignore the query entirely.
            - `"dot"`: `s^T h` (Luong eq. 8); needs query and key of equal width.
            - `"general"` (alias `"bilinear"`): `s^T W h` (Luong eq. 8).
            - `"scaled_dot"`: `s^T h / sqrt(d)` (Vaswani et al. 2017, eq. 1).
            `"bahdanau"` and `"luong"` are refused here: they name a `decoder_style`, not a score.
        attention_size (`int`, *optional*):
            Width A of the attention's hidden projections (the additive score's `tanh` layer and,
            with several heads, the concatenated head width). Left unset (`None`), it is set to
            `decoder_hidden_size` when the config is made.
        num_attention_heads (`int`, defaults to 1):
            1 is classic single-head attention over the raw encoder states. With N > 1, queries,
            keys and values get per-head projections (width A / N each), each head scores with
            `attention_type`, and the heads are concatenated and projected by `W_O` back to K.
        decoder_style (`str`, defaults to `"bahdanau"`):
            - `"bahdanau"`: the query is the previous state `s_{t-1}`; the context `c_t` is
              concatenated with the previous target embedding as RNN input; the read-out is
              `tanh(W_o [s_t; c_t; e_{t-1}])` (a tanh layer where the paper's appendix has a maxout).
            - `"luong"`: the RNN steps first; the query is the new state `s_t`; the attentional
              state is `tanh(W_c [c_t; s_t])`.
        input_feeding (`bool`, defaults to `False`):
            Luong style only: feed the previous attentional state into the RNN input. Without it
            the decoder RNN runs over the whole target sequence in one call during training.
        embedding_dropout (`float`, defaults to 0.2): Dropout on source and target embeddings.
        rnn_dropout (`float`, defaults to 0.0): Dropout between stacked RNN layers.
        attention_dropout (`float`, defaults to 0.0): Dropout on the attention weights.
        readout_dropout (`float`, defaults to 0.2): Dropout before the vocabulary projection.
        init_std (`float`, defaults to 0.1):
            Half-width of the uniform init of the embeddings and of the additive score's `v` (linear
            projections get Xavier-uniform weights and zero biases; RNN weights get orthogonal recurrent
            and Xavier input matrices; see `_init_weights`).
        tie_word_embeddings (`bool`, defaults to `True`):
            Share the vocabulary projection with the target embedding matrix.
        share_encoder_decoder_embeddings (`bool`, defaults to `False`):
            One embedding matrix for source and target (needs a shared vocabulary).
        pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id (`int`):
            Special token ids; the defaults match [`train_tokenizer`] (`<pad>=0 <s>=1 </s>=2 <unk>=3`).

    Examples:

    ```python
    >>> from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
    >>> config = Seq2SeqAttnConfig(vocab_size=1000, attention_type="general", num_attention_heads=4)
    >>> model = Seq2SeqAttnForConditionalGeneration(config)
    >>> model.config.attention_type
    'general'
    ```
    """

    model_type = "seq2seq_attn"
    # The decoder state is no prediction: `cache` from transformers 5.24 on, `past_key_values` before.
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {"hidden_size": "decoder_hidden_size", "num_hidden_layers": "decoder_layers"}

    vocab_size: int = 8000
    decoder_vocab_size: int | None = None
    embedding_size: int = 256
    encoder_hidden_size: int = 256
    decoder_hidden_size: int = 512
    encoder_layers: int = 1
    decoder_layers: int = 1
    rnn_type: str = "gru"
    bidirectional: bool = True
    bridge: str = "linear"
    attention_type: str = "additive"
    attention_size: int | None = None
    num_attention_heads: int = 1
    decoder_style: str = "bahdanau"
    input_feeding: bool = False
    embedding_dropout: float = 0.2
    rnn_dropout: float = 0.0
    attention_dropout: float = 0.0
    readout_dropout: float = 0.2
    init_std: float = 0.1
    tie_word_embeddings: bool = True
    share_encoder_decoder_embeddings: bool = False
    use_cache: bool = True
    is_encoder_decoder: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    decoder_start_token_id: int | None = 1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.rnn_type = _choice("rnn_type", self.rnn_type, RNN_TYPES)
        self.bridge = _choice("bridge", self.bridge, BRIDGES)
        if isinstance(self.attention_type, str) and self.attention_type.lower() in STYLE_NAMES_AS_SCORES:
            raise ValueError(
                f"`attention_type={self.attention_type!r}` is ambiguous: "
                f"{STYLE_NAMES_AS_SCORES[self.attention_type.lower()]}."
            )
        self.attention_type = _choice(
            "attention_type", self.attention_type, ATTENTION_TYPES, ATTENTION_ALIASES
        )
        self.decoder_style = _choice("decoder_style", self.decoder_style, DECODER_STYLES)
        for name in (
            "vocab_size",
            "embedding_size",
            "encoder_hidden_size",
            "decoder_hidden_size",
            "encoder_layers",
            "decoder_layers",
            "num_attention_heads",
        ):
            _positive_int(name, getattr(self, name))
        # One name per quantity: unset sizes are resolved here (old config.json files store `null`).
        self.decoder_vocab_size = self.resolved_decoder_vocab_size
        self.attention_size = self.resolved_attention_size
        for name in ("decoder_vocab_size", "attention_size"):
            _positive_int(name, getattr(self, name))
        for name in ("embedding_dropout", "rnn_dropout", "attention_dropout", "readout_dropout"):
            _probability(name, getattr(self, name))
        if not isinstance(self.init_std, (int, float)) or self.init_std <= 0:
            raise ValueError(f"`init_std` must be a positive number; got {self.init_std!r}.")
        self._validate_attention_shapes()
        self._validate_special_tokens()
        if self.share_encoder_decoder_embeddings and self.decoder_vocab_size != self.vocab_size:
            raise ValueError(
                "`share_encoder_decoder_embeddings=True` needs one vocabulary, but decoder_vocab_size="
                f"{self.decoder_vocab_size} differs from vocab_size={self.vocab_size}. Unset one of them."
            )

    # ----- typed reads for the model (properties: not stored in config.json) -----
    # These fields are `int | None`, but `__post_init__` resolves the sizes and requires `pad_token_id`,
    # so the model reads them here as plain `int`s instead of asserting at every use. Only
    # `decoder_start_token_id` may really be None; its property raises where the model needs it.
    @property
    def resolved_decoder_vocab_size(self) -> int:
        """V: `decoder_vocab_size`, or `vocab_size` when unset (the rule `__post_init__` applies)."""
        return self.vocab_size if self.decoder_vocab_size is None else self.decoder_vocab_size

    @property
    def resolved_attention_size(self) -> int:
        """A: `attention_size`, or `decoder_hidden_size` when unset (the rule `__post_init__` applies)."""
        return self.decoder_hidden_size if self.attention_size is None else self.attention_size

    @property
    def resolved_pad_token_id(self) -> int:
        """`pad_token_id`, which the model needs (it masks source padding); `ValueError` when unset."""
        if self.pad_token_id is None:
            raise ValueError(PAD_REQUIRED)
        return self.pad_token_id

    @property
    def resolved_decoder_start_token_id(self) -> int:
        """`decoder_start_token_id`, which the model needs to make `decoder_input_ids` from `labels`."""
        if self.decoder_start_token_id is None:
            raise ValueError(
                "`decoder_start_token_id` is unset, so `decoder_input_ids` cannot be made from `labels`: "
                "set it in the config (the tokenizer's <s> id) or pass `decoder_input_ids`."
            )
        return self.decoder_start_token_id

    @property
    def encoder_output_size(self) -> int:
        """K: width of one encoder state (both directions concatenated)."""
        return self.encoder_hidden_size * (2 if self.bidirectional else 1)

    def _validate_attention_shapes(self) -> None:
        heads, width = self.num_attention_heads, self.resolved_attention_size
        if heads > 1 and width % heads:
            raise ValueError(
                f"attention_size ({width}) must be divisible by num_attention_heads ({heads}); "
                f"pick e.g. attention_size={width // heads * heads or heads}."
            )
        direct = heads == 1 and self.attention_type in ("dot", "scaled_dot")
        if direct and self.decoder_hidden_size != self.encoder_output_size:
            raise ValueError(
                f"attention_type={self.attention_type!r} with one head compares the decoder state "
                f"(decoder_hidden_size={self.decoder_hidden_size}) with the encoder state "
                f"(encoder_output_size={self.encoder_output_size}) directly, so they must be equal. "
                "Use attention_type='general' or 'additive', num_attention_heads>1, or matching sizes."
            )

    def _validate_special_tokens(self) -> None:
        vocab = min(self.vocab_size, self.resolved_decoder_vocab_size)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if value is None and name == "pad_token_id":
                raise ValueError(PAD_REQUIRED)
            if value is not None and (not isinstance(value, int) or not 0 <= value < vocab):
                raise ValueError(f"`{name}`={value!r} is not a token id in a vocabulary of size {vocab}.")


__all__ = ["Seq2SeqAttnConfig"]
