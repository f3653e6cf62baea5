"""Sequence-to-sequence modality translation blocks (Seq2Seq2Sentiment, MCTN): encoder, attention decoder,
one translation level, and the recurrent head that reads encoder states (or a word-level feature sequence)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.nn.layers import RunningStandardizer
from models.nn.masking import last_valid, masked_softmax, valid_counts
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
        """Decode `steps` frames; returns (B, steps, output_dim) and attention weights (B, steps, T).

        Only the steps up to the batch's longest valid row are decoded (a frame depends on the earlier ones
        only); the frames after it, padding in every row, are zeros.
        """
        b = memory.shape[0]
        decoded = min(steps, int(valid_counts(memory_mask).max())) if b else 0
        keys = self.att_keys(memory)                                           # (B, T, H)
        invalid = memory_mask <= 0
        prev = memory.new_zeros(b, self.output_dim)
        outputs, weights = [], []
        h, c = state
        for t in range(decoded):
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
        if not decoded:
            return memory.new_zeros(b, steps, self.output_dim), memory.new_zeros(b, steps, memory.shape[1])
        after = (0, 0, 0, steps - decoded)
        return F.pad(torch.stack(outputs, 1), after), F.pad(torch.stack(weights, 1), after)


class SentimentRNN(nn.Module):
    """Recurrent regressor/classifier over a sequence (Seq2Seq2Sentiment Sec. 3, Eqs. 1-5): a K-layer LSTM, then
    its last valid state or, with `attention`, the soft attention pooling A = H^K alpha (Eqs. 3-4) with one weight
    vector W_alpha shared over the time steps, then dropout and the linear output y = W_Ay A + b_y (Eq. 5)."""

    def __init__(self, input_dim: int, hidden: int, n_outputs: int, dropout: float, n_layers: int = 1,
                 attention: bool = False) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_dim, hidden, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
        self.attention = nn.Linear(hidden, 1, bias=False) if attention else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, states: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Return (prediction (B, n_outputs), summary A (B, hidden), attention weights alpha (B, T) or None)."""
        out, _ = run_rnn(self.rnn, states, mask)
        if self.attention is None:
            summary, alpha = last_valid(out, mask), None
        else:
            alpha = masked_softmax(self.attention(out).squeeze(-1), mask)          # Eq. 3: over the T steps
            summary = torch.bmm(alpha.unsqueeze(1), out).squeeze(1)                 # Eq. 4: A = H^K alpha
        return self.head(self.dropout(summary)), summary, alpha


class Translator(nn.Module):
    """One translation level: encoder over the source, attention decoder to the target; optionally the source
    and the target standardised per feature (`RunningStandardizer`, for raw features of very unequal scales)."""

    def __init__(self, input_dim: int, output_dim: int, hidden: int, n_layers: int, dropout: float,
                 standardize_input: bool = False, standardize_target: bool = False) -> None:
        super().__init__()
        self.input_norm = RunningStandardizer(input_dim) if standardize_input else None
        self.target_norm = RunningStandardizer(output_dim) if standardize_target else None
        self.encoder = SequenceEncoder(input_dim, hidden, n_layers, dropout)
        self.decoder = AttentionDecoder(hidden, output_dim, n_layers, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None, teacher_forcing: float,
                decode: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Encoder states (B, T, H), the translation (B, T, D_out) and the target it approximates (standardised
        when the level standardises it); both None when decode is False."""
        if self.input_norm is not None:
            x = self.input_norm(x, mask)
        states, final = self.encoder(x, mask)
        if not decode or target is None:
            return states, None, None
        if self.target_norm is not None:
            target = self.target_norm(target, mask)
        translation, _ = self.decoder(states, mask, final, x.shape[1], target, teacher_forcing)
        return states, translation, target
