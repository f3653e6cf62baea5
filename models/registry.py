"""The table of SentiFlow's models (name -> module:class) and building one from a spec and its options.

Adding a model: write `models/zoo/<name>.py` with a `SentimentModel` subclass and add one line to `MODELS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.registry import Registry

if TYPE_CHECKING:   # the table is read by `sentiflow --help`: no torch at import
    from models.base import ModelSpec, SentimentModel

DEFAULT_MODEL = "vae_amdt_small"   # VAE-AMDT at hidden 64 (the demo's); "vae_amdt" is the paper-sized one

MODELS: "Registry[SentimentModel]" = Registry("model", {
    "vae_amdt": "models.zoo.vae_amdt:VAEAMDT",
    "vae_amdt_small": "models.zoo.vae_amdt:VAEAMDTSmall",
    "fdmer": "models.zoo.fdmer:FDMER",
    "hybrid_modal": "models.zoo.hybrid_modal:HybridModal",
    "seq2seq": "models.zoo.seq2seq:Seq2Seq2Sentiment",
    "seq2seq_concat": "models.zoo.seq2seq:Seq2SeqConcat",
    "seq2seq_concat_out": "models.zoo.seq2seq:Seq2SeqConcatOut",
    "seq2seq_concat_both": "models.zoo.seq2seq:Seq2SeqConcatBoth",
    "seq2seq_hier": "models.zoo.seq2seq:Seq2SeqHier",
    "mctn": "models.zoo.mctn:MCTN",
    "mult": "models.zoo.mult:MulT",
    "adamml": "models.zoo.adamml:AdaMML",
    "multilogue": "models.zoo.multilogue:MultilogueNet",
    "crosslingual_nce": "models.zoo.multilogue:CrossLingualMultilogue",
    "unimodal": "models.zoo.baselines:UnimodalHead",
    "ef_lstm": "models.zoo.baselines:EarlyFusionLSTM",
    "word_lstm": "models.zoo.baselines:WordLSTM",
})


def get_model_class(name: str) -> "type[SentimentModel]":
    """The model class registered under `name`, or a ConfigError listing the known names."""
    return MODELS.get(name)


def build_model(name: str, spec: "ModelSpec", options: dict[str, Any] | None = None) -> "SentimentModel":
    """Instantiate a registered model with its config built from `options`."""
    cls = get_model_class(name)
    return cls(cls.Config.from_dict(options or {}, where=f"model.{name}"), spec)
