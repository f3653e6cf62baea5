"""Translation augmentation: a tiny random MarianMT model loaded through the real code, the labels' text_translation
column, cache keys, the offline hub error, and the word-level text of transcript-only rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from extractors.config import SentiFlowConfig
from extractors.keys import FeatureLookup, media_item_for_row
from extractors.text.encoder import token_word_means
from extractors.text.translation import PretrainedTranslator, TranslationModelUnavailable
from extractors.text_only import extract_transcript_table
from pipeline.cache import FeatureCache
from pipeline.labels import read_labels
from tests.helpers.translation import CORPUS, tiny_marian

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"num_beams": 1, "max_new_tokens": 12}


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_marian(tmp_path_factory.mktemp("marian"))


def _labels(tmp_path: Path, with_column: bool) -> Path:
    lines = ["id,text,label,mode" + (",text_translation" if with_column else "")]
    for i, (en, fr) in enumerate(CORPUS[:4]):
        lines.append(f"s_{i},{en},{i - 1.5},train" + (f",{fr}" if with_column and i != 3 else ("," if with_column
                                                                                             else "")))
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_tiny_marian_model_loads_and_translates_through_the_real_code(marian_dir):
    translator = PretrainedTranslator(str(marian_dir), torch.device("cpu"), **FAST, batch_size=2)
    texts = [en for en, _ in CORPUS[:3]]
    out = translator.translate(texts)
    assert len(out) == 3 and all(isinstance(t, str) and t for t in out)
    assert translator.translate(texts) == out                                       # greedy: deterministic
    letters = set("".join(en + fr for en, fr in CORPUS)) | {" "}
    assert set("".join(out)) <= letters                 # the random model writes pieces of its (shared) vocabulary


def test_transcripts_translate_into_the_cache_and_through_the_text_encoder(marian_dir, tmp_path):
    config = SentiFlowConfig.from_dict({"extraction": {"options": {"translation": {"model": str(marian_dir), **FAST}}}})
    cache = FeatureCache(tmp_path / "cache")
    table = read_labels(_labels(tmp_path, with_column=False))
    s = extract_transcript_table(table, cache, config, progress=False, also=["translation", "translated_text"])
    assert (s.done, s.failed) == (4, 0)
    assert s.others["translation"]["done"] == 4 and s.others["translated_text"]["done"] == 4
    look = FeatureLookup(config, cache)
    item = media_item_for_row(table.rows[0])
    tr = look.entry("translation", item.media_hash, item)
    assert tr.status == "ok" and tr.meta["source"] == "model" and tr.meta["translator"] == str(marian_dir)
    emb = look.entry("translated_text", item.media_hash, item)
    t = emb.load()
    assert t["fixed"].shape == (100, 384) and t["words"].shape == (50, 384)
    n = len(tr.meta["words"])
    assert emb.meta["n_words"] == n and t["words_mask"].sum().item() == n
    means, _ = token_word_means(t["fixed"], t["word_index"], n)
    assert torch.allclose(t["words"][:n], means)                                      # word = mean of its tokens
    again = extract_transcript_table(table, cache, config, progress=False, also=["translation", "translated_text"])
    assert again.others["translation"] == {"done": 0, "cached": 4, "failed": 0}      # cached like any feature
    other = SentiFlowConfig.from_dict({"extraction": {"options": {"translation": {"model": str(marian_dir),
                                                                                  "num_beams": 2}}}})
    assert FeatureLookup(other, cache).key("translation", item.media_hash, item) != \
        look.key("translation", item.media_hash, item)                               # its config is in the key
    assert FeatureLookup(other, cache).key("translated_text", item.media_hash, item) != \
        look.key("translated_text", item.media_hash, item)                           # and in its readers' keys


def test_the_labels_column_is_the_translation_and_part_of_the_key(tmp_path):
    config = SentiFlowConfig()
    cache = FeatureCache(tmp_path / "cache")
    path = _labels(tmp_path, with_column=True)
    table = read_labels(path)
    assert table.rows[0].translation == CORPUS[0][1] and table.rows[3].translation == ""
    assert "text_translation" not in table.rows[0].targets
    s = extract_transcript_table(table, cache, config, progress=False, also=["translation"])
    assert s.others["translation"] == {"done": 4, "cached": 0, "failed": 0}
    look = FeatureLookup(config, cache)
    first, last = (media_item_for_row(r) for r in (table.rows[0], table.rows[3]))
    entry = look.entry("translation", first.media_hash, first)
    assert entry.meta["text"] == CORPUS[0][1] and entry.meta["source"] == "labels"
    missing = look.entry("translation", last.media_hash, last)        # neither a column value nor a model
    assert missing.status == "missing"
    assert "text_translation column" in missing.meta["reason"] and \
        "extraction.options.translation.model" in missing.meta["reason"]
    edited = path.read_text(encoding="utf-8").replace(CORPUS[0][1], "j'ai beaucoup aimé ce film")
    path.write_text(edited, encoding="utf-8")
    row = read_labels(path).rows[0]
    item = media_item_for_row(row)
    assert look.key("translation", item.media_hash, item) != look.key("translation", first.media_hash, first)


def test_a_hub_name_offline_fails_with_one_line_naming_the_model_and_the_setting(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TranslationModelUnavailable) as err:
        PretrainedTranslator("Helsinki-NLP/opus-mt-fr-es", torch.device("cpu"))
    message = str(err.value)
    assert "\n" not in message
    assert "'Helsinki-NLP/opus-mt-fr-es'" in message and "HF_HUB_OFFLINE" in message
    assert "extraction.options.translation.model" in message and "text_translation column" in message


def test_transcript_only_rows_get_word_level_text_without_times(tmp_path):
    config = SentiFlowConfig()
    cache = FeatureCache(tmp_path / "cache")
    table = read_labels(_labels(tmp_path, with_column=False))
    s = extract_transcript_table(table, cache, config, progress=False, also=["aligned"])
    assert s.others["aligned"] == {"done": 4, "cached": 0, "failed": 0}
    look = FeatureLookup(config, cache)
    item = media_item_for_row(table.rows[1])
    entry = look.entry("aligned", item.media_hash, item)
    t = entry.load()
    words = CORPUS[1][0].split()
    assert entry.meta["words"] == words and t["mask"].sum().item() == len(words)
    assert t["text"].shape == (50, 384) and torch.isnan(t["word_times"]).all()
    text = look.entry("text", item.media_hash, item).load()
    means, _ = token_word_means(text["fixed"], text["word_index"], len(words))
    assert torch.allclose(t["text"][: len(words)], means)
    assert entry.meta["sources"]["audio_acoustic"].startswith("missing: a transcript-only row has no media")
