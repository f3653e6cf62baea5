"""Hybrid-modal attention (Lin & Hu, IEEE TMM 2024): Multimodal Shifting Gates inside and after a fine-tuned
BERT-architecture encoder, Masked Bimodal Adjustment of the final text, and the Shifting Huber loss.

The paper is the spec (../shared/papers/hybrid-modal-attention.md); docs/fidelity/hybrid_modal.md maps every
component to its equation and says where and why SentiFlow differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.base import ModelOutput, ModelSpec, SentimentModel
from models.nn.masking import last_valid, masked_softmax, valid_counts
from models.nn.modalities import present_column, require_keys
from models.nn.rnn import run_rnn
from models.nn.text_encoder import PACKAGED_MINILM, TextEncoder
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU}
NONVERBAL = ("audio", "visual")
PAIRINGS = ("crossed", "matched")
SETTING = "model.hybrid_modal"
XI = 1e-6     # Eq. 8's xi; also keeps Eqs. 11-12's division finite for an all-zero position


@dataclass
class HybridModalConfig(ConfigBase):
    """Hybrid-modal attention settings: the paper's where it gives them, ours (said so) where it is silent."""

    text_model: str = PACKAGED_MINILM    # BERT architecture; the paper fine-tunes BERT-base (a local directory)
    msg_t_after_layer: int = 2           # MSG-T on hidden state k: after encoder layer k (0 = embedding output)
    gradient_checkpointing: bool = False
    rnn: str = "lstm"                    # Table VI: lstm | gru, uni- or bidirectional (sLSTM is the BERT row)
    bidirectional: bool = False
    rnn_hidden: int = 0                  # 0: each modality's own input width (Eqs. 1-2: F_m in R^{N_m x d_m})
    mu_init: float = 1.0                 # Eq. 8's threshold mu (learnable; the paper cross-validates it)
    mba_dim: int = 128                   # d of Eqs. 9-10 (ours: the paper does not give it)
    mba_text_kernel: int = 3             # k_t of Eq. 9 (ours)
    mba_other_kernel: int = 3            # k_a, k_v of Eq. 10 (ours)
    mba_pairing: str = "crossed"         # crossed: M_tv* -> MSG-A, M_ta* -> MSG-V (III-C2's "respectively")
    max_tokens: int = 100                # N_t of W_pt, W_pv (N x N, Eqs. 13-14): the longest token sequence
    fusion_dim: int = 0                  # width of the fully connected layer on M* (0 = the encoder's width)
    dropout: float = 0.1                 # before the regression layer (ours: BERT's hidden dropout)
    huber_delta: float = 1.0             # delta of Eq. 19 (ours: the paper does not give it)
    shift_weight_text: float = 0.01      # alpha of Eq. 20 (grid-searched in the paper, values not given)
    shift_weight_audio: float = 0.01     # beta of Eq. 20
    shift_weight_visual: float = 0.01    # gamma of Eq. 20
    use_msg_t: bool = True
    use_msg_a: bool = True
    use_msg_v: bool = True
    use_mba: bool = True

    def shift_weight(self, modality: str) -> float:
        """Eq. 20's weight of the Shifting Huber loss of MSG-`modality` (alpha, beta, gamma)."""
        return {"text": self.shift_weight_text, "audio": self.shift_weight_audio,
                "visual": self.shift_weight_visual}[modality]


class MultimodalShiftingGate(nn.Module):
    """MSG (Eqs. 4-8): shift a main representation F by gated projections of the other modalities X_j.

    g_j = ReLU(W_gj [F; X_j] + b_gj) with a scalar b_gj (Eqs. 4-5); h_s = sum_j g_j * (W_j X_j) + b_h (Eq. 6);
    eta = min(mu ||F|| / (||h_s|| + xi), 1) per position, mu learnable (Eq. 8); F* = F + eta h_s (Eq. 7).
    """

    def __init__(self, main_dim: int, aux_dims: dict[str, int], mu_init: float) -> None:
        super().__init__()
        self.gates = nn.ModuleDict({m: nn.Linear(main_dim + d, main_dim, bias=False) for m, d in aux_dims.items()})
        self.gate_biases = nn.ParameterDict({m: nn.Parameter(torch.zeros(())) for m in aux_dims})
        self.projections = nn.ModuleDict({m: nn.Linear(d, main_dim, bias=False) for m, d in aux_dims.items()})
        self.shift_bias = nn.Parameter(torch.zeros(main_dim))
        self.mu = nn.Parameter(torch.tensor(float(mu_init)))

    def gated_terms(self, main: torch.Tensor, aux: dict[str, torch.Tensor],
                    keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """g_j * (W_j X_j) per auxiliary modality (B, T, D); zero where keep (B, T) is 0 (modality absent)."""
        return {m: F.relu(gate(torch.cat([main, aux[m]], dim=-1)) + self.gate_biases[m])
                * self.projections[m](aux[m]) * keep[m].unsqueeze(-1).to(main.dtype)
                for m, gate in self.gates.items()}

    def forward(self, main: torch.Tensor, aux: dict[str, torch.Tensor],
                keep: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """main (B, T, D), aux {modality: (B, T, D_j)}, keep {modality: (B, T)} -> (F*, h_s), both (B, T, D)."""
        shift = self.shift_bias.expand_as(main)
        for term in self.gated_terms(main, aux, keep).values():
            shift = shift + term
        eta = torch.clamp(main.norm(dim=-1, keepdim=True) / (shift.norm(dim=-1, keepdim=True) + XI) * self.mu,
                          max=1.0)
        return main + eta * shift, shift


class MaskedBimodalAdjustment(nn.Module):
    """MBA (Eqs. 9-17): the final text M_t* adjusted by a bimodal attention with one nonverbal modality F_m.

    M' = Conv1D(M_t*, k_t), F' = Conv1D(F_m, k_m), both of width d (Eqs. 9-10); M = M' / sqrt(||M'||) and
    F = F' / sqrt(||F'||) per position (Eqs. 11-12); p_t = tanh(W_pt (M M^T) + b_pt), p_m = tanh(W_pm (F F^T)
    + b_pm) with N x N matrices W and scalar b (Eqs. 13-14); p_att = p_t * p_m (Eq. 15); x_att = softmax(p_t +
    p_att + mask), the mask -inf on padded text positions (Eq. 16); M_tm* = M_t* + x_att M_t* (Eq. 17).
    Padded positions are zero before each convolution and in M and F, so padding never reaches a token; a
    sample without modality m gets p_att = 0 (its text attends by p_t alone).
    """

    def __init__(self, text_dim: int, other_dim: int, dim: int, text_kernel: int, other_kernel: int,
                 max_tokens: int) -> None:
        super().__init__()
        self.conv_text = nn.Conv1d(text_dim, dim, text_kernel, padding=text_kernel // 2, bias=False)
        self.conv_other = nn.Conv1d(other_dim, dim, other_kernel, padding=other_kernel // 2, bias=False)
        self.w_text = nn.Parameter(torch.empty(max_tokens, max_tokens))
        self.w_other = nn.Parameter(torch.empty(max_tokens, max_tokens))
        for w in (self.w_text, self.w_other):
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))     # nn.Linear's initialisation
        self.b_text = nn.Parameter(torch.zeros(()))
        self.b_other = nn.Parameter(torch.zeros(()))

    @staticmethod
    def _scaled(conv: nn.Conv1d, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Eqs. 9-12: conv over the sequence (padding zeroed), divided by the root of each position's norm."""
        k = keep.unsqueeze(-1).to(x.dtype)
        y = conv((x * k).transpose(1, 2)).transpose(1, 2)
        return y / torch.sqrt(y.norm(dim=-1, keepdim=True) + XI) * k

    def attention_parts(self, text: torch.Tensor, text_mask: torch.Tensor, other: torch.Tensor,
                        other_keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(p_t, p_att) of Eqs. 13-15, both (B, T, T)."""
        n = text.shape[1]
        if n > self.w_text.shape[0]:
            raise ValueError(f"hybrid_modal: {n} tokens but the MBA matrices are {self.w_text.shape[0]} wide; set "
                             f"{SETTING}.max_tokens to at least the text extractor's seq_len")
        m = self._scaled(self.conv_text, text, text_mask)
        f = self._scaled(self.conv_other, other, other_keep)
        p_t = torch.tanh(self.w_text[:n, :n] @ (m @ m.transpose(1, 2)) + self.b_text)
        p_m = torch.tanh(self.w_other[:n, :n] @ (f @ f.transpose(1, 2)) + self.b_other)
        has_other = (valid_counts(other_keep) > 0).to(p_m.dtype).view(-1, 1, 1)
        return p_t, p_t * p_m * has_other

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, other: torch.Tensor,
                other_keep: torch.Tensor) -> torch.Tensor:
        """text M_t* (B, T, D_t), text_mask (B, T), other F_m (B, T, D_m), other_keep (B, T) -> M_tm* (B, T, D_t)."""
        p_t, p_att = self.attention_parts(text, text_mask, other, other_keep)
        x_att = masked_softmax(p_t + p_att, text_mask.unsqueeze(1).expand_as(p_t), dim=-1)
        return text + x_att @ text


class HybridModal(SentimentModel):
    """Hybrid-modal attention on word-aligned audio/visual features and a fine-tuned text encoder (token ids).

    Stages (Section III, Fig. 2), with text: the audio and visual word features are laid on the word pieces
    (special tokens zero, as in the paper's MAG-BERT data) and an LSTM/GRU runs over each token sequence:
    F_a, F_v (Eqs. 1-2). The encoder's embeddings and first `msg_t_after_layer` layers give F_t (Eq. 3);
    MSG-T shifts it by F_a, F_v (Eqs. 4-8) and the remaining layers give M_t*. MBA adjusts M_t* with F_a and
    with F_v (Eqs. 9-17) into M_ta*, M_tv*, which replace M_t* as MSG-A's and MSG-V's text input (crossed as
    the text reads: M_tv* -> MSG-A, M_ta* -> MSG-V; `mba_pairing: matched` gives the other reading); MSG-A
    and MSG-V give M_a*, M_v*. M* = [M_t*; M_a*; M_v*] per token -> a fully connected layer -> M_f*, whose
    first ([CLS]) position goes through a linear regression layer (III-C3).
    Loss (Eqs. 18-20): the task loss (task.loss; the paper's recipe sets MSE) plus alpha, beta, gamma times
    the Shifting Huber loss of each MSG's shifting vector h_s (mean over the valid positions' elements).

    Subsets (Table IV): a modality the data lacks is left out of every stage; a bimodal MSG has one auxiliary
    modality; without the crossed partner an MSG takes its own modality's MBA. Without text (only A, only V,
    A+V) the stages run over the words and the prediction reads M_f* at the last valid word (the RNN's end
    state, Eqs. 1-2), as there is no [CLS]. Ablations (Table III): MSG-T/A/V and MBA switches, the weights.
    A sample lacking a modality (`present` 0) gets zero input for it, no gated shift from it and no p_att.
    Batch: "text_ids", "text_attention_mask", "text_word_index" (each token's word, -1 for special tokens;
    without it the aligned sequences must already be per token), "aligned_audio"/"aligned_visual" with
    "aligned_mask" (or per-modality "aligned_<m>_mask"), "present".
    """

    name = "hybrid_modal"
    Config = HybridModalConfig
    aligned = True
    uses_token_ids = True
    ablatable = ("use_msg_t", "use_msg_a", "use_msg_v", "use_mba")
    ablations = {     # Table III's rows: components added one by one, the Shifting Huber loss last
        "no proposed modules": {"use_msg_t": False, "use_msg_a": False, "use_msg_v": False, "use_mba": False,
                                "shift_weight_text": 0.0, "shift_weight_audio": 0.0, "shift_weight_visual": 0.0},
        "only MSG-T": {"use_msg_a": False, "use_msg_v": False, "use_mba": False, "shift_weight_text": 0.0,
                       "shift_weight_audio": 0.0, "shift_weight_visual": 0.0},
        "MSG-T&A": {"use_msg_v": False, "use_mba": False, "shift_weight_text": 0.0, "shift_weight_audio": 0.0,
                    "shift_weight_visual": 0.0},
        "MSG-T&V": {"use_msg_a": False, "use_mba": False, "shift_weight_text": 0.0, "shift_weight_audio": 0.0,
                    "shift_weight_visual": 0.0},
        "MSG-T&A&V": {"use_mba": False, "shift_weight_text": 0.0, "shift_weight_audio": 0.0,
                      "shift_weight_visual": 0.0},
        "MSG-T&A&V + MBA": {"shift_weight_text": 0.0, "shift_weight_audio": 0.0, "shift_weight_visual": 0.0},
    }

    def __init__(self, config: HybridModalConfig, spec: ModelSpec, text_encoder: TextEncoder | None = None) -> None:
        super().__init__(config, spec)
        self.used = [m for m in MODALITIES if spec.dims.get(m)]
        if not self.used:
            raise ConfigError(f"hybrid_modal needs text, audio or visual features; the data spec has "
                              f"{sorted(spec.dims) or 'none'}")
        if config.rnn not in RNN_TYPES:
            raise ConfigError(f"{SETTING}.rnn must be one of {', '.join(RNN_TYPES)}, got {config.rnn!r}")
        if config.mba_pairing not in PAIRINGS:
            raise ConfigError(f"{SETTING}.mba_pairing must be one of {', '.join(PAIRINGS)}, "
                              f"got {config.mba_pairing!r}")
        for key in ("mba_text_kernel", "mba_other_kernel"):
            if getattr(config, key) < 1 or getattr(config, key) % 2 == 0:
                raise ConfigError(f"{SETTING}.{key} must be an odd number >= 1 (the sequence keeps its length), "
                                  f"got {getattr(config, key)}")
        if config.max_tokens < 1 or config.mba_dim < 1 or config.rnn_hidden < 0 or config.fusion_dim < 0:
            raise ConfigError(f"{SETTING}: max_tokens and mba_dim must be >= 1, rnn_hidden and fusion_dim >= 0")
        self.has_text = "text" in self.used
        widths: dict[str, int] = {}
        if self.has_text:
            self.text_encoder = text_encoder or TextEncoder.from_pretrained(
                config.text_model, f"{SETTING}.text_model", config.gradient_checkpointing)
            self.text_encoder.check_layer(config.msg_t_after_layer, f"{SETTING}.msg_t_after_layer")
            widths["text"] = self.text_encoder.hidden_size
        rnn = RNN_TYPES[config.rnn]
        self.rnns = nn.ModuleDict()
        for m in self.used:
            if m in NONVERBAL:
                hidden = config.rnn_hidden or spec.dims[m]
                self.rnns[m] = rnn(spec.dims[m], hidden, batch_first=True, bidirectional=config.bidirectional)
                widths[m] = hidden * (2 if config.bidirectional else 1)
        switch = {"text": config.use_msg_t, "audio": config.use_msg_a, "visual": config.use_msg_v}
        self.msgs = nn.ModuleDict({
            m: MultimodalShiftingGate(widths[m], {o: widths[o] for o in self.used if o != m}, config.mu_init)
            for m in self.used if switch[m] and len(self.used) > 1})
        needed = {self.mba_for(m) for m in self.msgs if m in NONVERBAL} if config.use_mba and self.has_text else set()
        self.mbas = nn.ModuleDict({
            m: MaskedBimodalAdjustment(widths["text"], widths[m], config.mba_dim, config.mba_text_kernel,
                                       config.mba_other_kernel, config.max_tokens) for m in NONVERBAL if m in needed})
        fused = sum(widths.values())
        self.fusion = nn.Linear(fused, config.fusion_dim or widths.get("text", fused))
        self.dropout = nn.Dropout(config.dropout)
        self.regression = nn.Linear(self.fusion.out_features, spec.n_outputs)
        self.widths = widths

    def mba_for(self, modality: str) -> str:
        """Which nonverbal modality's MBA output is MSG-`modality`'s text input (see `mba_pairing`)."""
        partner = "visual" if modality == "audio" else "audio"
        if self.config.mba_pairing == "crossed" and partner in self.used:
            return partner
        return modality

    # --- inputs -------------------------------------------------------------------------------------------------
    @staticmethod
    def words_to_tokens(x: torch.Tensor, word_keep: torch.Tensor, word_index: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Lay word-level (B, T_w, D) on tokens (B, T_l, D) by each token's word (-1 or out of range: zero)."""
        valid = (word_index >= 0) & (word_index < x.shape[1])
        idx = word_index.clamp(0, x.shape[1] - 1).long()
        keep = torch.gather(word_keep, 1, idx) * valid.to(word_keep.dtype)
        gathered = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return gathered * keep.unsqueeze(-1), keep

    def _nonverbal(self, batch: dict[str, torch.Tensor], n_tokens: int, full_tokens: int
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per nonverbal modality: (input sequence, keep) on the tokens (with text) or the words (without)."""
        out = {}
        word_index = batch.get("text_word_index")
        for m in NONVERBAL:
            if m not in self.used:
                continue
            x = batch[f"aligned_{m}"].float()
            if x.dim() != 3 or x.shape[-1] != self.spec.dims[m]:
                raise ValueError(f"hybrid_modal: aligned_{m} must be (B, T_w, {self.spec.dims[m]}), "
                                 f"got {tuple(x.shape)}")
            words = batch.get(f"aligned_{m}_mask", batch.get("aligned_mask"))
            words = torch.ones(x.shape[:2], device=x.device) if words is None else words.float()
            words = words * present_column(batch, m).unsqueeze(1)
            if not self.has_text:
                out[m] = (x * words.unsqueeze(-1), words)
            elif word_index is not None:
                if word_index.shape[:1] != x.shape[:1] or word_index.shape[1] < n_tokens:
                    raise ValueError(f"hybrid_modal: text_word_index must be (B, T_l) like text_ids, "
                                     f"got {tuple(word_index.shape)}")
                out[m] = self.words_to_tokens(x, words, word_index[:, :n_tokens])
            elif x.shape[1] == full_tokens:
                out[m] = (x[:, :n_tokens] * words[:, :n_tokens, None], words[:, :n_tokens])
            else:
                raise ValueError(f"hybrid_modal: aligned sequences have {x.shape[1]} steps but text_ids has "
                                 f"{full_tokens} tokens; give 'text_word_index' (B, T_l) to map tokens to words")
        return out

    # --- model --------------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Predict from token ids and word-aligned audio/visual features (Fig. 2's stages)."""
        require_keys(batch, (["text_ids"] if self.has_text else ["aligned_mask"])
                     + [f"aligned_{m}" for m in self.used if m in NONVERBAL], self.name)
        present = {m: present_column(batch, m) for m in MODALITIES}
        if self.has_text:
            ids = batch["text_ids"].long()
            tok_mask = batch.get("text_attention_mask")
            tok_mask = torch.ones_like(ids, dtype=torch.float) if tok_mask is None else tok_mask.float()
            n = max(1, int(valid_counts(tok_mask).max()))     # the batch's longest text: padding beyond is inert
            full, ids, mask = ids.shape[1], ids[:, :n], tok_mask[:, :n]
        else:
            mask = batch["aligned_mask"].float()
            n = full = mask.shape[1]
        inputs = self._nonverbal(batch, n, full)
        states = {m: run_rnn(self.rnns[m], x, mask)[0] for m, (x, _) in inputs.items()}   # F_a, F_v (Eqs. 1-2)
        keep = {m: mask * present[m].unsqueeze(1) for m in self.used}
        shifts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        extras: dict[str, Any] = {}

        if self.has_text:
            cut, encoder = self.config.msg_t_after_layer, self.text_encoder
            hidden = encoder.embed(ids, batch.get("text_token_type_ids", None))
            hidden = hidden * present["text"].view(-1, 1, 1)
            attention = encoder.attention_mask(hidden, mask)
            hidden = encoder.run_layers(hidden, mask, 0, cut, attention)                 # F_t (Eq. 3)
            if "text" in self.msgs:
                aux = {m: states[m] for m in states}
                if getattr(self, "collect_insights", False) and not self.training:
                    extras["modality_shift"] = self._shift_shares(hidden, aux, keep)     # models.insights
                hidden, h_s = self.msgs["text"](hidden, aux, keep)                       # F_t* (Eq. 7)
                shifts["text"] = (h_s, mask)
            states["text"] = encoder.run_layers(hidden, mask, cut, encoder.n_layers, attention)   # M_t*
        adjusted = {m: mba(states["text"], mask, states[m], keep[m]) for m, mba in self.mbas.items()}  # M_ta*, M_tv*
        final = dict(states)
        for m in NONVERBAL:
            if m in self.msgs:
                aux = {o: states[o] for o in self.used if o != m}
                if "text" in aux and self.mba_for(m) in adjusted:
                    aux["text"] = adjusted[self.mba_for(m)]
                shifted, h_s = self.msgs[m](states[m], aux, keep)                        # M_a*, M_v*
                final[m] = shifted * mask.unsqueeze(-1)
                shifts[m] = (h_s, mask)
        fused = self.fusion(torch.cat([final[m] for m in self.used], dim=-1))           # M_f* (III-C3)
        head = self.readout(fused, mask)
        extras["shifts"] = shifts
        return ModelOutput(prediction=self.regression(self.dropout(head)),
                           representations={**{m: self.readout(final[m], mask) for m in self.used}, "fused": head},
                           extras=extras)

    def readout(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The utterance's vector of a (B, T, D) sequence: [CLS] (position 0) with text, else the last valid step."""
        return x[:, 0] if self.has_text else last_valid(x, mask)

    @torch.no_grad()
    def _shift_shares(self, hidden: torch.Tensor, aux: dict[str, torch.Tensor],
                      keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per clip, each auxiliary modality's share of MSG-T's gated shift (norm ratio, mean over tokens)."""
        terms = self.msgs["text"].gated_terms(hidden, aux, keep)
        norms = torch.stack([t.float().norm(dim=-1) for t in terms.values()], -1)       # (B, T, n_aux)
        total = norms.sum(-1, keepdim=True)
        valid = keep["text"] * (total.squeeze(-1) > 0).float()
        shares = (norms / total.clamp_min(1e-12) * valid.unsqueeze(-1)).sum(1)
        shares = shares / valid.sum(1, keepdim=True).clamp_min(1.0)
        return {m: shares[:, i] for i, m in enumerate(terms)}

    def loss_terms(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        """Eq. 20: the task loss plus each MSG's weighted Shifting Huber loss (Eq. 19) on its h_s."""
        terms = {"task": self.task_loss(output.prediction, batch["label"])}
        for m, (h_s, mask) in output.extras["shifts"].items():
            weight = self.config.shift_weight(m)
            if weight > 0:
                terms[f"shift_{m}"] = weight * shifting_huber(h_s, mask, self.config.huber_delta)
        return terms


def shifting_huber(h_s: torch.Tensor, mask: torch.Tensor, delta: float) -> torch.Tensor:
    """Eq. 19: the mean over the valid positions' elements of Huber(h_s; delta) (1/2 h^2 within delta, linear out)."""
    per = F.huber_loss(h_s.float(), torch.zeros_like(h_s, dtype=torch.float), delta=delta, reduction="none")
    m = mask.to(per.dtype).unsqueeze(-1)
    return (per * m).sum() / (m.sum() * h_s.shape[-1]).clamp_min(1.0)
