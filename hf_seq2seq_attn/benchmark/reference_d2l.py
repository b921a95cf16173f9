"""Textbook seq2seq with Bahdanau attention: the baseline `benchmark` measures against.

Origin and license: the model follows the chapter "Bahdanau Attention" of *Dive into Deep
Learning* (Zhang, Lipton, Li and Smola, https://d2l.ai, source https://github.com/d2l-ai/d2l-en)
and its PyTorch `Seq2SeqEncoder`, `AdditiveAttention` and `masked_softmax`. The book's sample code
is released under the MIT No Attribution license (MIT-0, the repository's LICENSE-SAMPLECODE:
"Copyright 2019 Amazon.com, Inc. or its affiliates"); its text is CC BY-SA 4.0. This file was
condensed from the book's code for this project (one module, no `d2l` package helpers) and is
shipped unchanged from the project's baseline copy except for this docstring and code
formatting (`ruff format`), so the benchmark compares against the same code it always did.

It is kept as naive as the book:
  * encoder: Embedding -> (uni- or bi-directional) GRU, time-major
  * attention: additive, W_k applied to *all keys at every decoder step*
  * decoder: query = last layer hidden state of step t-1, context concat embedding
    -> GRU, one step at a time in Python; dense layer over all steps at the end
  * greedy prediction one sentence at a time (d2l.predict_seq2seq)
"""

import torch
from torch import nn


def masked_softmax(scores, valid_lens):
    # scores: (batch, queries, keys); valid_lens: (batch,)
    if valid_lens is None:
        return torch.softmax(scores, dim=-1)
    keys = scores.shape[-1]
    mask = torch.arange(keys, device=scores.device)[None, None, :] < valid_lens[:, None, None]
    return torch.softmax(scores.masked_fill(~mask, -1e6), dim=-1)


class AdditiveAttention(nn.Module):
    def __init__(self, key_size, query_size, num_hiddens, dropout):
        super().__init__()
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens):
        queries, keys = self.W_q(queries), self.W_k(keys)
        features = torch.tanh(queries.unsqueeze(2) + keys.unsqueeze(1))
        scores = self.w_v(features).squeeze(-1)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)


class Encoder(nn.Module):
    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, bidirectional=False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.bidirectional = bidirectional
        self.rnn = nn.GRU(embed_size, num_hiddens, num_layers, dropout=dropout, bidirectional=bidirectional)
        self.num_layers = num_layers
        if bidirectional:
            self.bridge = nn.Linear(2 * num_hiddens, num_hiddens)

    def forward(self, X):
        X = self.embedding(X).permute(1, 0, 2)
        output, state = self.rnn(X)
        if self.bidirectional:
            # (layers*2, B, H) -> (layers, B, 2H) -> bridge to decoder size
            L, B, H = self.num_layers, state.shape[1], state.shape[2]
            state = torch.tanh(self.bridge(state.view(L, 2, B, H).permute(0, 2, 1, 3).reshape(L, B, 2 * H)))
        return output, state


class Decoder(nn.Module):
    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, key_size=None):
        super().__init__()
        key_size = key_size or num_hiddens
        self.attention = AdditiveAttention(key_size, num_hiddens, num_hiddens, dropout)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + key_size, num_hiddens, num_layers, dropout=dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(self, enc_outputs, enc_valid_lens):
        outputs, hidden_state = enc_outputs
        return outputs.permute(1, 0, 2), hidden_state, enc_valid_lens

    def forward(self, X, state):
        enc_outputs, hidden_state, enc_valid_lens = state
        X = self.embedding(X).permute(1, 0, 2)
        outputs, self.attention_weights = [], []
        for x in X:
            query = hidden_state[-1].unsqueeze(1)
            context = self.attention(query, enc_outputs, enc_outputs, enc_valid_lens)
            x = torch.cat((context, x.unsqueeze(1)), dim=-1)
            out, hidden_state = self.rnn(x.permute(1, 0, 2), hidden_state)
            outputs.append(out)
            self.attention_weights.append(self.attention.attention_weights)
        outputs = self.dense(torch.cat(outputs, dim=0))
        return outputs.permute(1, 0, 2), [enc_outputs, hidden_state, enc_valid_lens]


class RefSeq2Seq(nn.Module):
    def __init__(
        self, src_vocab, tgt_vocab, embed_size, num_hiddens, num_layers, dropout=0.0, bidirectional=False
    ):
        super().__init__()
        self.encoder = Encoder(src_vocab, embed_size, num_hiddens, num_layers, dropout, bidirectional)
        key = 2 * num_hiddens if bidirectional else num_hiddens
        self.decoder = Decoder(tgt_vocab, embed_size, num_hiddens, num_layers, dropout, key_size=key)

    def forward(self, src, src_valid_lens, dec_input):
        state = self.decoder.init_state(self.encoder(src), src_valid_lens)
        return self.decoder(dec_input, state)[0]

    @torch.no_grad()
    def greedy_one(self, src_ids, bos, eos, max_len):
        """d2l.predict_seq2seq: one sentence, no batching, greedy."""
        src = torch.tensor([src_ids])
        valid = torch.tensor([len(src_ids)])
        state = self.decoder.init_state(self.encoder(src), valid)
        y = torch.tensor([[bos]])
        out = []
        for _ in range(max_len):
            logits, state = self.decoder(y, state)
            y = logits.argmax(dim=2)
            tok = int(y[0, 0])
            if tok == eos:
                break
            out.append(tok)
        return out
