"""Sequence-to-sequence modality translation blocks (Seq2Seq2Sentiment, MCTN): encoder, attention decoder,
one translation level, and the recurrent head that reads encoder states."""

from __future__ import annotations

import torch
from torch import nn

from models.nn.masking import last_valid
from models.nn.rnn import run_rnn


class SequenceEncoder(nn.Module):
    """LSTM encoder over the valid steps of a (B, T, D) sequence: states (B, T, H) and its final (h, c)."""

    def __init__(self, input_dim: int, hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_dim, hidden, n_layers, batch_first=True,
                           dropout=dropout if n_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Encode x; padded steps of the states are zeros."""
        out, state = run_rnn(self.rnn, x, mask)
        return out, state


class AttentionDecoder(nn.Module):
    """LSTM decoder with additive attention (Bahdanau et al., 2015) that emits a continuous sequence."""

    def __init__(self, hidden: int, output_dim: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.embed = nn.Linear(output_dim, hidden)
        self.rnn = nn.LSTM(2 * hidden, hidden, n_layers, batch_first=True,
                           dropout=dropout if n_layers > 1 else 0.0)
        self.att_keys = nn.Linear(hidden, hidden, bias=False)
        self.att_query = nn.Linear(hidden, hidden)
        self.att_score = nn.Linear(hidden, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, output_dim)

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                steps: int, target: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode `steps` frames; returns (B, steps, output_dim) and attention weights (B, steps, T)."""
        b = memory.shape[0]
        keys = self.att_keys(memory)                                           # (B, T, H)
        invalid = memory_mask <= 0
        prev = memory.new_zeros(b, self.output_dim)
        outputs, weights = [], []
        h, c = state
        for t in range(steps):
            query = self.att_query(h[-1]).unsqueeze(1)                        # (B, 1, H)
            scores = self.att_score(torch.tanh(keys + query)).squeeze(-1)     # (B, T)
            scores = scores.masked_fill(invalid, torch.finfo(scores.dtype).min)
            alpha = torch.softmax(scores, dim=-1)
            context = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)         # (B, H)
            step_in = torch.cat([self.dropout(self.embed(prev)), context], dim=-1).unsqueeze(1)
            out, (h, c) = self.rnn(step_in, (h, c))
            frame = self.out(torch.cat([out.squeeze(1), context], dim=-1))
            outputs.append(frame)
            weights.append(alpha)
            if target is not None and teacher_forcing > 0 and torch.rand(()) < teacher_forcing:
                prev = target[:, t]
            else:
                prev = frame
        return torch.stack(outputs, 1), torch.stack(weights, 1)


class SentimentRNN(nn.Module):
    """Recurrent regressor/classifier over encoder states: LSTM, last valid state, dropout, linear."""

    def __init__(self, input_dim: int, hidden: int, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_dim, hidden, 1, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (prediction (B, n_outputs), summary vector (B, hidden))."""
        out, _ = run_rnn(self.rnn, states, mask)
        summary = last_valid(out, mask)
        return self.head(self.dropout(summary)), summary


class Translator(nn.Module):
    """One translation level: encoder over the source, attention decoder to the target."""

    def __init__(self, input_dim: int, output_dim: int, hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.encoder = SequenceEncoder(input_dim, hidden, n_layers, dropout)
        self.decoder = AttentionDecoder(hidden, output_dim, n_layers, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None,
                teacher_forcing: float, decode: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder states (B, T, H) and the translation (B, T, D_out) (None when decode is False)."""
        states, final = self.encoder(x, mask)
        if not decode:
            return states, None
        translation, _ = self.decoder(states, mask, final, x.shape[1], target, teacher_forcing)
        return states, translation
