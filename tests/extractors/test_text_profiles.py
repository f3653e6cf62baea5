"""The papers' text encoders by profile (`text.profile: paper`), tested offline with tiny random BERT and RoBERTa
copies saved with save_pretrained; the one-line error where no hub is reachable; long texts in overlapping windows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from extractors.config import SentiFlowConfig
from extractors.registry import build_extractor
from extractors.text.encoder import (
    TEXT_PROFILES,
    TextEncoderConfig,
    TextModelUnavailable,
    run_in_windows,
    window_starts,
)
from extractors.text_only import extract_transcript_table
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.labels import LabelRow, LabelTable
from tests.helpers.text_models import SENTENCES, tiny_bert, tiny_roberta

pytestmark = pytest.mark.usefixtures("one_thread")


def encode(tmp_path: Path, texts: list[str], **text_options) -> list:
    """Cache entries of the text extractor with `text_options` for each of `texts` (transcript-only rows)."""
    config = SentiFlowConfig()
    config.extraction.options = {"text": text_options}
    table = LabelTable([LabelRow(id=f"r{i}", text=t, label=0.0) for i, t in enumerate(texts)], "test")
    cache = FeatureCache(tmp_path / "cache")
    summary = extract_transcript_table(table, cache, config, progress=False)
    assert summary.failed == 0, summary.failures
    return [cache.get(summary.keys[f"r{i}"]) for i in range(len(texts))]


@pytest.mark.parametrize("make, profile", [(tiny_bert, "paper"), (tiny_roberta, "paper:vae_amdt")])
def test_a_paper_profile_loads_a_local_copy_and_the_fine_tuned_encoder_reads_the_same(make, profile, tmp_path):
    from models.nn.text_encoder import TextEncoder

    folder = make(tmp_path / "model")
    entries = encode(tmp_path, SENTENCES[:3], profile=profile, model=str(folder), seq_len=24)
    encoder = TextEncoder.from_pretrained(str(folder), "model.text_finetune.text_model").eval()
    assert (encoder.n_layers, encoder.hidden_size, encoder.max_tokens) == (2, 16, 64)   # RoBERTa: 66 - 2
    for entry in entries:
        t = entry.load()
        n = int(t["mask"].sum())
        assert t["fixed"].shape == (24, 16) and t["layers"].shape == (1, 24, 16)    # the profile's layers: [-1]
        assert entry.meta["model"] == str(folder) and entry.meta["dropped_tokens"] == 0 and n == entry.meta["n_tokens"]
        torch.testing.assert_close(t["layers"][0], t["fixed"])
        with torch.no_grad():
            states = encoder(t["token_ids"][None, :n], t["attention_mask"][None, :n].float())[0]
        torch.testing.assert_close(states, t["fixed"][:n], atol=1e-5, rtol=1e-4)


def test_offline_a_profile_fails_with_one_line_naming_the_model_the_setting_and_a_local_copy(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = TextEncoderConfig(profile="paper:vae_amdt")
    assert config.resolved() == ("roberta-large", [-1], True)
    with pytest.raises(TextModelUnavailable) as err:
        build_extractor("text", config.to_dict(), SentiFlowConfig().media, "cpu").extract([])
    message = str(err.value)
    assert "\n" not in message and "'roberta-large'" in message
    assert "extraction.options.text.profile: paper:vae_amdt" in message
    assert "set extraction.options.text.model to a local copy of 'roberta-large'" in message
    from models.nn.text_encoder import TextEncoder

    with pytest.raises(TextModelUnavailable, match=r"'bert-base-uncased'.*set model\.text_finetune\.text_model to a "
                                                   r"local copy"):
        TextEncoder.from_pretrained("bert-base-uncased", "model.text_finetune.text_model")
    with pytest.raises(ConfigError, match="unknown profile 'papers'; known: packaged, paper"):
        TextEncoderConfig(profile="papers").resolved()
    assert {"paper", "paper:vae_amdt", "paper:moseas"} <= set(TEXT_PROFILES)


def test_windows_cover_every_position_and_average_the_overlaps() -> None:
    assert window_starts(40, 16, 4) == [1, 12, 23, 25] and window_starts(10, 16, 4) == [1]
    with pytest.raises(ConfigError, match="window_overlap"):
        window_starts(40, 16, 15)
    table = torch.randn(50, 3)
    ids = torch.randint(1, 50, (2, 40), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 40)
    calls = []

    def local(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:   # each token's state is its own: no context
        calls.append(i.shape[1])
        return table[i] * m.unsqueeze(-1)

    torch.testing.assert_close(run_in_windows(local, ids, mask, 16, 4), local(ids, mask))
    assert calls[:-1] == [16, 16, 16, 16]


def test_a_long_text_is_encoded_in_windows_and_only_configured_truncation_drops_tokens(tmp_path) -> None:
    folder = tiny_bert(tmp_path / "bert", max_positions=16)
    long_text = " ".join(SENTENCES * 2)          # 58 words, 60 tokens with [CLS] and [SEP]: four 16-token windows
    whole, cut = encode(tmp_path / "a", [long_text], model=str(folder), seq_len=80, window_overlap=4)[0], \
        encode(tmp_path / "b", [long_text], model=str(folder), seq_len=24, window_overlap=4)[0]
    n = whole.meta["n_tokens"]
    assert n > 40 and whole.meta["dropped_tokens"] == 0 and not whole.meta["truncated"]
    t = whole.load()
    assert int(t["mask"].sum()) == n and (t["fixed"][:n].abs().sum(-1) > 0).all()
    assert cut.meta["truncated"] and cut.meta["dropped_tokens"] == n - 24
    with pytest.raises(ConfigError, match="window=32 exceeds the 16 positions"):
        encode(tmp_path / "c", [long_text], model=str(folder), seq_len=80, window=32)
