"""Feature cache: atomic entries, content keys, verify/gc, failure log."""

import json
from pathlib import Path

import pytest
import torch

from pipeline.cache import CacheError, FeatureCache, feature_key, hash_text


def test_put_get_roundtrip_is_exact(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    x = torch.randn(5, 3)
    key = feature_key("abc", "logmel", "1", {"n_mels": 128})
    entry = cache.put(key, {"x": x, "n": torch.tensor([5])}, {"extractor": "logmel"})
    assert key in cache
    got = cache.get(key)
    assert got is not None and got.meta["tensors"]["x"]["shape"] == [5, 3]
    assert torch.equal(got.load()["x"], x)
    assert entry.meta["status"] == "ok"
    assert not any((tmp_path / "c" / "tmp").iterdir())


def test_key_depends_on_every_part() -> None:
    base = feature_key("m", "logmel", "1", {"n_mels": 128})
    assert base != feature_key("m2", "logmel", "1", {"n_mels": 128})
    assert base != feature_key("m", "acoustic", "1", {"n_mels": 128})
    assert base != feature_key("m", "logmel", "2", {"n_mels": 128})
    assert base != feature_key("m", "logmel", "1", {"n_mels": 64})
    assert base == feature_key("m", "logmel", "1", {"n_mels": 128})
    assert hash_text("hello").startswith("text-") and hash_text("hello") != hash_text("hello ")


def test_half_written_entry_is_invisible_and_collected(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    key = feature_key("m", "logmel", "1", {})
    # a crash mid-write leaves only a temporary directory behind
    leftover = tmp_path / "c" / "tmp" / f"{key}.123.deadbeef"
    leftover.mkdir()
    (leftover / "tensors.safetensors").write_bytes(b"partial")
    assert cache.get(key) is None
    assert cache.verify().temp_dirs == [leftover.name]
    assert cache.gc(temp_older_than_s=0)["temp"] == 1
    assert not leftover.exists()


def test_verify_detects_and_fixes_corruption(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    key = feature_key("m", "logmel", "1", {})
    entry = cache.put(key, {"x": torch.arange(100, dtype=torch.float32)}, {})
    f = entry.path / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    report = cache.verify()
    assert report.ok == 0 and report.corrupt[0][0] == key
    assert "checksum" in report.corrupt[0][1]
    cache.verify(fix=True)
    assert cache.get(key) is None


def test_missing_fact_is_cached_without_tensors(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    entry = cache.put("k" * 40, {}, {"reason": "no audio stream"}, status="missing")
    assert entry.status == "missing" and cache.get("k" * 40).load() == {}
    assert cache.verify().ok == 1


def test_failure_log_skips_torn_lines(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    cache.log_failure({"path": "a.mp4", "reason": "bad"})
    with open(tmp_path / "c" / "failures.jsonl", "a") as fh:
        fh.write('{"path": "b.mp4", "rea')
    assert [f["path"] for f in cache.failures()] == ["a.mp4"]


def test_stale_versions_are_collected(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    cache.put("a" * 40, {"x": torch.zeros(1)}, {"extractor": "logmel", "version": "0"})
    cache.put("b" * 40, {"x": torch.zeros(1)}, {"extractor": "logmel", "version": "1"})
    removed = cache.gc(stale_versions={"logmel": "1"})
    assert removed["stale"] == 1 and cache.get("a" * 40) is None and cache.get("b" * 40) is not None


def test_unusable_cache_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match="cannot create cache directory"):
        FeatureCache(blocker / "cache")
    with pytest.raises(CacheError, match="not a SentiFlow cache"):
        FeatureCache(tmp_path, create=False)


def test_media_record_merges_sources(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    cache.put_media_record("h", {"sources": ["/a.mp4"], "probe": {"duration": 1}})
    cache.put_media_record("h", {"sources": ["/b.mp4"]})
    rec = cache.media_record("h")
    assert rec["sources"] == ["/a.mp4", "/b.mp4"] and rec["probe"] == {"duration": 1}
    json.dumps(rec)


def test_claim_is_refused_for_a_committed_entry(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    key = feature_key(hash_text("clip"), "logmel", "1", {})
    assert cache.claim(key)                    # nobody holds it, nothing committed: ours to compute
    assert cache.claim_holder(key) is not None
    cache.put(key, {"x": torch.zeros(2)}, {"extractor": "logmel"})
    cache.release(key)
    assert not cache.claim(key)                # committed meanwhile: nothing left to compute
    assert not any((cache.root / "claims").iterdir())


# ---- verify on read, metadata consistency, names that are not UTF-8 (issue 19, items 2, 6, 7)
def test_a_corrupt_tensor_is_never_served(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    key = feature_key("m", "logmel", "1", {})
    entry = cache.put(key, {"x": torch.arange(1000, dtype=torch.float32)}, {"extractor": "logmel"})
    f = entry.path / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    data[-100:-92] = b"\xff" * 8                   # NaN bytes in the data: the header still parses
    f.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="corrupt: tensors file checksum differs"):
        cache.get(key).load()                      # checked on first use in this process, without `verify`
    f.write_bytes(bytes(data[:-4]))
    with pytest.raises(CacheError, match="bytes, metadata says"):
        cache.get(key).load()                      # the size is checked on every read
    cache.remove(key)
    assert cache.get(key) is None and list((tmp_path / "c" / "tmp").iterdir()) == []


def test_forged_metadata_fails_verify(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c")
    ok = cache.put("a" * 40, {"x": torch.zeros(3)}, {"extractor": "logmel"})
    meta = json.loads((ok.path / "meta.json").read_text())
    meta["status"] = "missing"                     # forged: claims the source lacks the modality
    (ok.path / "meta.json").write_text(json.dumps(meta))
    legacy = cache.put("b" * 40, {"x": torch.zeros(3)}, {"extractor": "logmel"})
    meta = json.loads((legacy.path / "meta.json").read_text())
    meta.pop("meta_sha256")                        # an entry written before the checksum, then forged
    meta["status"] = "missing"
    (legacy.path / "meta.json").write_text(json.dumps(meta))
    problems = dict(cache.verify().corrupt)
    assert "metadata checksum differs" in problems["a" * 40]
    assert "says the modality is missing, but the entry has tensors" in problems["b" * 40]
    with pytest.raises(CacheError, match="corrupt"):
        cache.get("a" * 40).load()


def test_paths_that_are_not_utf8_are_stored_and_read_back(tmp_path: Path) -> None:
    import os

    name = os.fsdecode(b"/videos/bad\xff\xfe.mp4")
    cache = FeatureCache(tmp_path / "c")
    cache.log_failure({"path": name, "reason": "x"})
    cache.put_media_record("h", {"sources": [name]})
    entry = cache.put("c" * 40, {"x": torch.zeros(1)}, {"source": name})
    assert cache.failures()[0]["path"] == name and cache.media_record("h")["sources"] == [name]
    assert cache.get("c" * 40).meta["source"] == name and entry.problem(full_hash=True) is None
