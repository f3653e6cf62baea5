"""Importing the SDK's and MMSA's feature files into the cache, finding them from label rows, exporting them back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from extractors.config import SentiFlowConfig, load_config
from extractors.keys import FeatureLookup, media_item_for_row
from extractors.runner import ExtractionRunner
from models.data import DataConfig, build_dataset, modality_coverage, read_data_config
from models.interop.csd import export_csd, import_csd
from models.interop.mmsa import export_mmsa, import_mmsa
from models.interop.store import FEATURES_FILE, IMPORTS_DIR, OPTIONS_FILE
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.interop.mmsa import load_mmsa
from pipeline.labels import LabelRow, read_labels
from tests.helpers.interop_files import (
    SEGMENT_IDS,
    mmsa_splits,
    word_aligned_entries,
    write_mmsa_pickle,
    write_sdk_csd,
    write_word_aligned_set,
)
from tests.helpers.paths import SAMPLES


def _import_set(tmp_path):
    files = write_word_aligned_set(tmp_path)
    cache = tmp_path / "cache"
    summaries = {m: import_csd([files[m]], cache, m, aligned=True) for m in ("audio", "visual", "text")}
    return files, cache, summaries


def _configs(cache):
    folder = cache / IMPORTS_DIR
    return load_config(str(folder / FEATURES_FILE)), read_data_config(folder / OPTIONS_FILE)


def _entries(cache):
    return {(e.meta["extractor"], e.meta["segment_id"]): e for e in FeatureCache(cache).entries()}


def test_word_aligned_sdk_import_is_found_by_label_rows_and_packs_as_the_aligned_kind(tmp_path):
    files, cache, summaries = _import_set(tmp_path)
    assert all(s.counts == {"done": 3, "cached": 0, "missing": 0} and not s.failed for s in summaries.values())
    config, data = _configs(cache)
    assert config.extraction.options["imported_audio"] == {"feature_set": "toy_COVAREP", "aligned": True,
                                                           "seq_len": 0, "fit": "pool"}
    assert data.modalities == ["text", "audio", "visual"]
    assert data.sources["visual"].extractor == data.aligned_sources["visual"].extractor == "imported_visual"
    labels = read_labels(files["labels"])             # id,label,mode: no media, no transcript
    source = word_aligned_entries(5, seed=1)

    data.aligned = True                                # word-aligned models (Seq2Seq, MCTN, hybrid-modal)
    ds = build_dataset(config, FeatureCache(cache), labels, data, require_modalities=True)
    assert not ds.skipped and ds.dims == {"text": 12, "audio": 5, "visual": 7}
    assert ds.seq_lens == {"text": 50, "audio": 50, "visual": 50}
    train = ds.splits["train"]
    row = train.ids.index("vidA_2")
    np.testing.assert_array_equal(train.tensors["aligned_audio"][row, :6].numpy(), source["vidA[1]"][0])
    assert train.tensors["aligned_audio"][row, 6:].abs().sum() == 0
    assert train.tensors["aligned_mask"][row].tolist() == [1.0] * 6 + [0.0] * 44
    assert ds.splits["valid"].ids == ["vid_B2_1"]

    data.aligned = False                               # unaligned models (FDMER, as its paper) read the same words
    ds = build_dataset(config, FeatureCache(cache), labels, data)
    assert ds.splits["train"].tensors["audio"].shape == (2, 50, 5)

    entry = _entries(cache)[("imported_audio", "vidA_1")]
    t = entry.load()
    np.testing.assert_array_equal(t["word_times"][:4].numpy(), source["vidA[0]"][1])
    assert entry.meta["feature_names"] == [f"toy_COVAREP_{i}" for i in range(5)]
    assert entry.meta["imported"]["entry"] == "vidA[0]" and entry.meta["imported"]["root"] == "toy_COVAREP"
    assert entry.meta["imported"]["file_sha256"] and entry.meta["source"].endswith("toy_COVAREP.csd#vidA[0]")

    rows = list(labels) + [LabelRow(id="vidZ_9", text="", label=0.0)]
    coverage = dict(modality_coverage(config, FeatureCache(cache), rows, data))
    assert coverage["vidA_1"] == {"text": "ok", "audio": "ok", "visual": "ok"}
    assert coverage["vidZ_9"]["audio"] == "no cached 'imported_audio' features (not imported)"


def test_bad_entries_are_recorded_and_the_rest_imported(tmp_path):
    entries = word_aligned_entries(3, seed=4)
    feats, iv = entries["vidA[1]"]
    feats = feats.copy()
    feats[2, 1] = np.nan
    feats[3, 0] = -np.inf
    entries["vidA[1]"] = (feats, iv)
    entries["vidA[2]"] = (np.zeros((4, 3), np.float32), np.zeros((3, 2)))      # rows and intervals disagree
    entries["vidA[3]"] = (np.zeros((0, 3), np.float32), np.zeros((0, 2)))      # no rows
    path = write_sdk_csd(tmp_path / "bad.csd", "toy_bad", entries)
    cache = tmp_path / "cache"
    s = import_csd([path], cache, "audio", aligned=True)
    assert s.counts == {"done": 3, "cached": 0, "missing": 1}
    assert list(s.failed) == ["vidA[2]"] and "4 feature rows but 3 intervals" in s.failed["vidA[2]"]
    got = _entries(cache)
    assert got[("imported_audio", "vidA_4")].status == "missing"
    assert got[("imported_audio", "vidA_4")].meta["reason"] == "no rows in the imported entry"
    cleaned = got[("imported_audio", "vidA_2")]
    assert cleaned.meta["non_finite_zeroed"] == 2 and torch.isfinite(cleaned.load()["sequence"]).all()
    assert cleaned.load()["sequence"][2, 1] == 0 and cleaned.load()["sequence"][3, 0] == 0
    assert any(f["path"] == "vidA[2]" and f["extractor"] == "imported_audio" for f in FeatureCache(cache).failures())


def test_reimport_is_cached_and_other_content_needs_replace(tmp_path):
    files, cache, _ = _import_set(tmp_path)
    again = import_csd([files["audio"]], cache, "audio", aligned=True)
    assert again.counts["cached"] == 3 and again.counts["done"] == 0
    other = write_sdk_csd(tmp_path / "other.csd", "toy_COVAREP", word_aligned_entries(5, seed=9))
    refused = import_csd([other], cache, "audio", aligned=True)
    assert len(refused.failed) == 3 and "pass --replace" in refused.failed["vidA[0]"]
    replaced = import_csd([other], cache, "audio", aligned=True, replace=True)
    assert replaced.counts["done"] == 3
    seq = _entries(cache)[("imported_audio", "vidA_1")].load()["sequence"].numpy()
    np.testing.assert_array_equal(seq, word_aligned_entries(5, seed=9)["vidA[0]"][0])


def test_whole_video_sequences_are_cut_into_the_reference_segments(tmp_path):
    t = np.arange(30) * 0.1
    video = {"vidA": (np.arange(60, dtype=np.float32).reshape(30, 2), np.stack([t, t + 0.1], axis=1)),
             "vidQ": (np.ones((2, 2), np.float32), np.array([[0.0, 0.1], [0.1, 0.2]]))}
    features = write_sdk_csd(tmp_path / "video.csd", "toy_video", video)
    labels = write_sdk_csd(tmp_path / "labels.csd", "toy_Opinion_Labels",
                           {"vidA": (np.array([[1.0], [-2.0]], np.float32), np.array([[0.0, 1.0], [1.5, 2.5]]))})
    cache = tmp_path / "cache"
    s = import_csd([features], cache, "audio", segments=labels)
    assert s.counts["done"] == 2 and "has no segments for video 'vidQ'" in s.failed["vidQ"]
    got = _entries(cache)
    first, second = got[("imported_audio", "vidA_1")].load(), got[("imported_audio", "vidA_2")].load()
    np.testing.assert_array_equal(first["sequence"].numpy(), video["vidA"][0][:10])
    np.testing.assert_array_equal(second["sequence"].numpy(), video["vidA"][0][15:25])
    assert first["intervals"][0].tolist() == [0.0, pytest.approx(0.1)]
    assert got[("imported_audio", "vidA_1")].meta["imported"]["entry"] == "vidA[0]"


def test_csd_export_then_import_equals_the_cache(tmp_path):
    files, cache, _ = _import_set(tmp_path)
    config, data = _configs(cache)
    opts = cache / IMPORTS_DIR / OPTIONS_FILE
    cfg = cache / IMPORTS_DIR / FEATURES_FILE
    again = tmp_path / "again"
    for m, root in (("audio", "toy_COVAREP"), ("visual", "toy_Facet"), ("text", "toy_GloVe")):
        out = tmp_path / f"{m}.csd"
        s = export_csd(cache, files["labels"], m, out, config_path=cfg, options_path=opts, aligned=True, sdk_ids=True,
                       root=root)
        assert s.written == 3 and not s.skipped
        assert import_csd([out], again, m, aligned=True).counts["done"] == 3
    before, after = _entries(cache), _entries(again)
    assert set(before) == set(after) and len(before) == 9
    for key, entry in before.items():
        a, b = entry.load(), after[key].load()
        assert set(a) == set(b)
        for name in a:
            assert torch.equal(a[name], b[name]), (key, name)


def test_extracted_features_export_as_a_sequence_and_import_back_equal(tmp_path):
    clips = [SAMPLES / "astro_front" / "01.mp4", SAMPLES / "astro_mirror" / "02.mp4"]
    if not all(p.is_file() for p in clips):
        pytest.skip("sample_videos/ is not there")
    config = SentiFlowConfig.from_dict({"extraction": {"isolate": False, "options": {"opensmile": {"threads": 1}}}})
    cache = FeatureCache(tmp_path / "cache")
    ExtractionRunner(config, cache, only=["opensmile"]).run([str(p) for p in clips], progress=False)
    config.to_yaml(tmp_path / "features.yaml")
    (tmp_path / "opts.yaml").write_text(yaml.safe_dump({"data": {"sources": {"audio": {"extractor": "opensmile"}}}}))
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,clip_id,text,label,mode\nastro_front,01,,1.0,train\nastro_mirror,02,,-1.0,train\n"
                      "astro_cool,03,,0.0,train\n")
    s = export_csd(tmp_path / "cache", labels, "audio", tmp_path / "os.csd", config_path=tmp_path / "features.yaml",
                   options_path=tmp_path / "opts.yaml", media_root=SAMPLES)
    assert s.written == 2 and "no cached 'opensmile' features (not extracted)" in s.skipped["astro_cool_03"]
    imported = import_csd([tmp_path / "os.csd"], tmp_path / "imp", "audio")
    assert imported.counts["done"] == 2 and imported.feature_set == "SentiFlow_opensmile_audio"
    lookup = FeatureLookup(config, cache)
    back = _entries(tmp_path / "imp")
    for row in read_labels(labels, SAMPLES).rows[:2]:
        item = media_item_for_row(row)
        original = lookup.entry("opensmile", item.media_hash, item).load()
        got = back[("imported_audio", row.id)].load()
        for name in ("sequence", "fixed", "mask", "length"):
            assert torch.equal(got[name], original[name]), name
        torch.testing.assert_close(got["times"], original["times"])


def test_mmsa_import_then_export_equals_the_file_and_reimports_equal(tmp_path):
    splits = mmsa_splits()
    src = write_mmsa_pickle(tmp_path / "unaligned_50.pkl", splits)
    cache = tmp_path / "cache"
    summaries = import_mmsa(src, cache, labels_out=tmp_path / "labels.csv")
    assert [(s.modality, s.counts["done"], s.aligned) for s in summaries] == [
        ("text", 5, False), ("audio", 5, False), ("visual", 5, False)]
    first_label = splits["train"]["regression_labels"][0]
    assert (tmp_path / "labels.csv").read_text().splitlines()[:2] == [
        "video_id,clip_id,text,label,mode", f"vidA,1,clip vidA$_$1 says something,{first_label},train"]
    config, data = _configs(cache)
    assert config.extraction.options["imported_audio"]["seq_len"] == 9
    ds = build_dataset(config, FeatureCache(cache), read_labels(tmp_path / "labels.csv"), data)
    assert len(ds.splits["train"]) == 3 and len(ds.splits["valid"]) == 2
    np.testing.assert_array_equal(ds.splits["train"].tensors["audio"].numpy(), splits["train"]["audio"])
    assert ds.splits["train"].tensors["visual_mask"].sum(1).tolist() == [5.0, 8.0, 3.0]

    out = tmp_path / "exported.pkl"
    s = export_mmsa(cache, tmp_path / "labels.csv", out, config_path=cache / IMPORTS_DIR / FEATURES_FILE,
                    options_path=cache / IMPORTS_DIR / OPTIONS_FILE)
    assert s.written == 5
    back = load_mmsa(out)
    for split, part in splits.items():
        got = back[split]
        assert list(got["id"]) == part["id"] and list(got["raw_text"]) == part["raw_text"]
        for key in ("text", "audio", "vision", "text_bert", "regression_labels"):
            np.testing.assert_array_equal(got[key], part[key], err_msg=f"{split}.{key}")
        assert got["audio_lengths"] == part["audio_lengths"] and got["vision_lengths"] == part["vision_lengths"]

    again = tmp_path / "again"
    import_mmsa(out, again, name="unaligned_50")
    before, after = _entries(cache), _entries(again)
    assert set(before) == set(after)
    for key, entry in before.items():
        a, b = entry.load(), after[key].load()
        assert all(torch.equal(a[n], b[n]) for n in a) and set(a) == set(b), key


def test_imported_features_are_never_extracted(tmp_path):
    with pytest.raises(ConfigError, match="'imported_audio' holds features imported with `sentiflow import`"):
        ExtractionRunner(SentiFlowConfig(), FeatureCache(tmp_path / "c"), only=["imported_audio"])
    lookup = FeatureLookup(SentiFlowConfig(), FeatureCache(tmp_path / "c"))
    with pytest.raises(ConfigError, match="is not a label row, and they cannot be extracted from media"):
        lookup.key("imported_text", "abc")
    row = LabelRow(id="lonely_1", text="", label=0.0)
    with pytest.raises(ConfigError, match="no labelled row has cached features") as err:
        build_dataset(SentiFlowConfig(), FeatureCache(tmp_path / "c"), [row], DataConfig(modalities=["audio"]))
    assert "has neither a media file nor a transcript" in str(err.value)


def test_import_refuses_what_it_cannot_name(tmp_path):
    a = write_sdk_csd(tmp_path / "a.csd", "seq_a", word_aligned_entries(2, 0))
    b = write_sdk_csd(tmp_path / "b.csd", "seq_b", word_aligned_entries(2, 1))
    with pytest.raises(ConfigError, match=r"different sequences \(seq_a, seq_b\).*--name"):
        import_csd([a, b], tmp_path / "cache", "audio")
    with pytest.raises(ConfigError, match="--as 'smell'"):
        import_csd([a], tmp_path / "cache", "smell")
    both = import_csd([a, b], tmp_path / "cache", "audio", name="ab", aligned=True)   # the same ids twice
    assert both.counts["done"] == 3 and len(both.failed) == 3
    assert "ab already holds other features for vidA_1 (from " in both.failed["vidA[0]"]
    assert set(SEGMENT_IDS.values()) == {k[1] for k in _entries(tmp_path / "cache")}
