"""The model core: the files a saved model folder carries as remote code.

`configuration_seq2seq_attn`, `modeling_seq2seq_attn`, `tokenization_seq2seq_attn` and
`pipeline_seq2seq_attn` import only each other (relatively), torch and transformers, so
`save_pretrained` can copy them flat into a folder that loads with `trust_remote_code=True` where this
package is absent. Nothing here imports from the rest of the package.
"""
