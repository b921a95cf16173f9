"""hf_seq2seq_attn: attention RNN sequence-to-sequence models for the Hugging Face stack.

Importing the package registers the classes with `AutoConfig`, `AutoModel` and
`AutoModelForSeq2SeqLM`, and marks them for remote code so `save_pretrained` writes `auto_map`
plus the model files (loadable with `trust_remote_code=True` where this package is absent).
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .configuration_seq2seq_attn import Seq2SeqAttnConfig
from .modeling_seq2seq_attn import (
    Seq2SeqAttnCache,
    Seq2SeqAttnForConditionalGeneration,
    Seq2SeqAttnModel,
    Seq2SeqAttnPreTrainedModel,
)

__version__ = "0.1.0"

AutoConfig.register(Seq2SeqAttnConfig.model_type, Seq2SeqAttnConfig, exist_ok=True)
AutoModel.register(Seq2SeqAttnConfig, Seq2SeqAttnModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration, exist_ok=True)
Seq2SeqAttnConfig.register_for_auto_class()
Seq2SeqAttnModel.register_for_auto_class("AutoModel")
Seq2SeqAttnForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")

__all__ = [
    "Seq2SeqAttnCache",
    "Seq2SeqAttnConfig",
    "Seq2SeqAttnForConditionalGeneration",
    "Seq2SeqAttnModel",
    "Seq2SeqAttnPreTrainedModel",
]
