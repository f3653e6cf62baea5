"""The text path through the extraction runner: transcripts, word timings, encoder and word-aligned features."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch

from extractors.base import FeatureUnavailable, MediaItem
from extractors.config import SentiFlowConfig
from extractors.registry import build_extractor
from extractors.runner import ExtractionRunner
from extractors.text.words import split_words
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.media import MediaConfig, probe
from tests.helpers.media_factory import make_clip
from tests.helpers.paths import ROOT

SAMPLE = ROOT / "sample_videos"


def _config(**aligned) -> SentiFlowConfig:
    cfg = SentiFlowConfig()
    cfg.extraction.extractors = ["aligned"]
    cfg.extraction.options = {"aligned": {"audio_sources": ["acoustic"], "visual_sources": [], **aligned}}
    if hasattr(cfg.extraction, "isolate"):
        cfg.extraction.isolate = False
    return cfg


def _sample_clip() -> tuple[Path, str]:
    labels = SAMPLE / "labels.csv"
    if not labels.is_file():
        pytest.skip("sample_videos/ is not present")
    with open(labels, encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    return SAMPLE / row["video_id"] / f"{row['clip_id']}.mp4", row["text"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("text_clips")
    clip, text = _sample_clip()
    make_clip(d / "silent.mp4", seconds=2.0, silent=True)
    make_clip(d / "silent_known.mp4", seconds=2.0, silent=True)
    (d / "silent_known.txt").write_text("hello there my friend\n", encoding="utf-8")
    make_clip(d / "mute_known.mp4", seconds=1.0, audio=False)
    (d / "mute_known.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello there\n", encoding="utf-8")
    make_clip(d / "mute.mp4", seconds=1.0, audio=False)
    shutil.copy(clip, d / "wrong.mp4")
    (d / "wrong.txt").write_text("The quarterly tax report lists seven new bridges over the northern river.",
                                 encoding="utf-8")
    cache = FeatureCache(d / "cache")
    runner = ExtractionRunner(_config(), cache, device="cpu")
    summary = runner.run([clip, d], progress=False)
    outcomes = {Path(o.path).name if o.path != str(clip) else "sample": o for o in summary.items}
    return cache, outcomes, text, clip


def _entry(run, name: str, extractor: str):
    cache, outcomes, *_ = run
    return cache.get(outcomes[name].keys[extractor])


def test_sample_clip_transcript_from_labels_with_word_timings(run):
    _, outcomes, text, clip = run
    assert outcomes["sample"].status == "done", outcomes["sample"].notes()
    tr = _entry(run, "sample", "transcript")
    assert tr.meta["source"] == "labels:labels.csv" and tr.meta["words"] == split_words(text)
    assert tr.meta["alignment"] in ("pocketsphinx", "whisper") and tr.meta["aligned"] is True
    t = tr.load()
    n = len(split_words(text))
    assert t["word_times"].shape == (n, 2) and t["word_times"].dtype == torch.float64
    assert torch.all(t["word_times"][:, 1] >= t["word_times"][:, 0])
    assert torch.all(torch.diff(t["word_times"][:, 0]) >= 0)
    assert t["word_times"].max() <= probe(clip).duration + 0.05
    assert torch.all((t["word_confidence"] > 0) & (t["word_confidence"] <= 1))


def test_sample_clip_aligned_and_unaligned_shapes_and_masks(run):
    _, _, text, _ = run
    n = len(split_words(text))
    txt = _entry(run, "sample", "text").load()
    ac = _entry(run, "sample", "acoustic").load()
    al = _entry(run, "sample", "aligned")
    a = al.load()
    assert al.meta["sources"] == {"text": "ok", "audio_acoustic": "ok"}
    # unaligned: independent fixed lengths
    assert txt["fixed"].shape == (100, 384) and ac["fixed"].shape[0] == ac["mask"].shape[0]
    # aligned: one step per word for every modality, same mask
    assert a["text"].shape == (50, 384) and a["audio_acoustic"].shape == (50, ac["sequence"].shape[1])
    assert a["mask"].sum() == n == a["length"].item()
    assert torch.equal(a["mask_text"], a["mask"]) and torch.equal(a["mask_audio_acoustic"], a["mask"])
    assert a["text"][n:].abs().sum() == 0 and a["audio_acoustic"][n:].abs().sum() == 0
    # word 0's text vector is the mean of its tokens; its audio vector the mean of its frames
    sel = txt["word_index"] == 0
    assert torch.allclose(a["text"][0], txt["fixed"][sel].mean(0), atol=1e-5)
    s, e = a["word_times"][1].tolist()
    inside = (ac["times"] >= s) & (ac["times"] < e)
    if inside.any():
        assert torch.allclose(a["audio_acoustic"][1], ac["sequence"][inside].float().mean(0), atol=1e-4)


def test_known_transcript_on_silence_is_kept_with_failed_alignment(run):
    tr = _entry(run, "silent_known.mp4", "transcript")
    assert tr.meta["source"] == "sidecar:.txt" and tr.meta["words"] == ["hello", "there", "my", "friend"]
    assert tr.meta["alignment"] == "failed: no speech detected in the audio"
    assert torch.isnan(tr.load()["word_times"]).all()                      # never spread uniformly
    al = _entry(run, "silent_known.mp4", "aligned")
    assert al.status == "missing" and "no word timings" in al.meta["reason"]
    assert _entry(run, "silent_known.mp4", "text").status == "ok"          # the text itself is still encoded


def test_no_audio_stream(run):
    tr = _entry(run, "mute_known.mp4", "transcript")
    assert tr.meta["source"] == "sidecar:.srt" and tr.meta["alignment"] == "failed: no audio stream"
    assert _entry(run, "mute.mp4", "transcript").meta["reason"] == "no transcript and no audio stream to recognise"


def test_silence_without_transcript_is_no_speech(run):
    tr = _entry(run, "silent.mp4", "transcript")
    assert tr.status == "missing" and tr.meta["reason"] == "no speech detected"
    assert _entry(run, "silent.mp4", "text").status == "missing"


def test_transcript_that_does_not_match_the_audio(run):
    tr = _entry(run, "wrong.mp4", "transcript")
    assert tr.meta["alignment"].startswith("failed:") and "does not match the audio" in tr.meta["alignment"]
    assert torch.isnan(tr.load()["word_times"]).all()


def _item(path: Path, **extras) -> MediaItem:
    from pipeline.cache import hash_file

    return MediaItem(path=str(path), media_hash=hash_file(path), info=probe(path), extras=extras)


def test_long_transcript_is_truncated_with_a_flag():
    clip, _ = _sample_clip()
    ex = build_extractor("transcript", {"max_words": 5}, MediaConfig(), "cpu")
    (f,) = ex.extract([_item(clip, transcript="one two three four five six seven eight")])
    assert f.meta["truncated"] is True and f.meta["words"] == ["one", "two", "three", "four", "five"]
    assert f.tensors["word_times"].shape == (5, 2)


def test_non_english_needs_a_multilingual_model_named_in_the_message():
    clip, _ = _sample_clip()
    # without a multilingual model the English-only default cannot align Spanish, and says which setting to change
    ex = build_extractor("transcript", {"multilingual_asr_model": ""}, MediaConfig(), "cpu")
    (f,) = ex.extract([_item(clip, transcript="me gusta mucho esta película", language="es")])
    assert f.meta["language"] == "es" and f.meta["alignment"].startswith("failed:")
    assert "extraction.options.transcript.multilingual_asr_model" in f.meta["alignment"]
    asr_only = build_extractor("transcript", {"language": "fr", "sources": ["asr"], "multilingual_asr_model": ""},
                               MediaConfig(), "cpu")
    (res,) = asr_only.extract([_item(clip)])
    assert isinstance(res, FeatureUnavailable) and "English-only" in str(res)
    assert "extraction.options.transcript.multilingual_asr_model" in str(res)


def test_bad_config_values():
    with pytest.raises(ConfigError, match="sources: 'youtube'"):
        build_extractor("transcript", {"sources": ["youtube"]}, MediaConfig(), "cpu")
    with pytest.raises(ConfigError, match="aligned.visual_sources: unknown extractor 'nosuch'"):
        build_extractor("aligned", {"visual_sources": ["nosuch"]}, MediaConfig(), "cpu")


@pytest.mark.shared
def test_speech_recognition_on_a_real_clip(shared_clips: Path):
    clip = shared_clips / "Pose_Source_00067.mp4"
    ex = build_extractor("transcript", {}, MediaConfig(), "cpu")
    (f,) = ex.extract([_item(clip)])
    assert f.meta["source"] == "asr" and f.meta["alignment"] == "whisper" and f.meta["language"] == "en"
    assert len(f.meta["words"]) >= 5 and not math.isnan(float(f.tensors["word_times"].sum()))
    assert f.tensors["word_times"][-1, 1] <= probe(clip).duration + 0.1


def test_lookup_with_the_rows_item_finds_entries_keyed_by_its_transcript(tmp_path: Path):
    from extractors.keys import FeatureLookup, media_item_for_row
    from pipeline.labels import LabelRow

    clip, _ = _sample_clip()
    media = tmp_path / "v" / "c.mp4"
    media.parent.mkdir()
    shutil.copy(clip, media)
    cfg = _config()
    cfg.extraction.extractors = ["text"]
    cache = FeatureCache(tmp_path / "cache")
    row = LabelRow(id="v_c", text="I absolutely loved this movie.", label=2.0, path=str(media))
    ExtractionRunner(cfg, cache, device="cpu").run([media], progress=False,
                                                   extras={str(media): {"transcript": row.text}})
    item = media_item_for_row(row)
    entry = FeatureLookup(cfg, cache).entry("text", item.media_hash, item)
    assert entry is not None and entry.status == "ok" and entry.meta["n_words"] == 5
    other = media_item_for_row(LabelRow(id="v_c", text="A different text.", label=2.0, path=str(media)))
    assert FeatureLookup(cfg, cache).entry("text", other.media_hash, other) is None   # edited text: new entry
