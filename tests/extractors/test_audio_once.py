"""Audio decoded once per file and sample rate: the next extractor at the same rate gets the same chunks from
memory; another rate, a changed file or a stream too long to keep is decoded again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from extractors import stages
from pipeline.media import iter_audio
from tests.helpers.media_factory import make_wav


@pytest.fixture()
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The (file name, rate) of every real decode; the memo starts empty."""
    calls: list[tuple[str, int]] = []

    def counting(path, sample_rate, chunk_seconds=30.0):
        calls.append((Path(path).name, sample_rate))
        return iter_audio(path, sample_rate, chunk_seconds)

    monkeypatch.setattr(stages, "iter_audio", counting)
    monkeypatch.setattr(stages, "_audio_memo", type(stages._audio_memo)())
    return calls


def test_same_rate_is_served_again_in_the_same_chunks(tmp_path: Path, decodes: list) -> None:
    wav = make_wav(tmp_path / "a.wav", seconds=2.5, sample_rate=44100, tone_hz=220.0, silent=False)
    first = list(stages.decoded_audio(wav, 16000, 1.0))
    assert [len(c) for c in first] == [16000, 16000, 8000]
    first[0][:] = 0.0                                  # a caller changing its chunk in place changes nothing kept
    again = list(stages.decoded_audio(wav, 16000, 1.0))
    rechunked = list(stages.decoded_audio(wav, 16000, 2.0))
    assert decodes == [("a.wav", 16000)]
    fresh = list(iter_audio(wav, 16000, 1.0))
    assert len(again) == len(fresh) and all(np.array_equal(a, b) for a, b in zip(again, fresh))
    assert float(np.abs(again[0]).max()) > 0.1
    assert [len(c) for c in rechunked] == [32000, 8000]
    assert np.array_equal(np.concatenate(rechunked), np.concatenate(fresh))
    list(stages.decoded_audio(wav, 22050, 1.0))        # another rate: decoded
    assert decodes == [("a.wav", 16000), ("a.wav", 22050)]


def test_changed_file_partial_reads_and_long_streams_are_decoded_again(tmp_path: Path, decodes: list,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    wav = make_wav(tmp_path / "a.wav", seconds=2.0, sample_rate=16000, tone_hz=220.0, silent=False)
    list(stages.decoded_audio(wav, 16000, 1.0))
    make_wav(wav, seconds=1.0, sample_rate=16000, tone_hz=440.0, silent=False)    # rewritten in place
    st = os.stat(wav)
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert sum(len(c) for c in stages.decoded_audio(wav, 16000, 1.0)) == 16000
    assert len(decodes) == 2
    other = make_wav(tmp_path / "b.wav", seconds=3.0, sample_rate=16000, tone_hz=220.0, silent=False)
    it = stages.decoded_audio(other, 16000, 1.0)
    next(it)
    it.close()                                          # read in part: nothing kept
    list(stages.decoded_audio(other, 16000, 1.0))
    assert [d for d in decodes if d[0] == "b.wav"] == [("b.wav", 16000)] * 2
    monkeypatch.setattr(stages, "AUDIO_MEMO_ENTRY_BYTES", 16000 * 4)          # one second: too long to keep
    long = make_wav(tmp_path / "c.wav", seconds=2.0, sample_rate=16000, tone_hz=220.0, silent=False)
    list(stages.decoded_audio(long, 16000, 1.0))
    list(stages.decoded_audio(long, 16000, 1.0))
    assert [d for d in decodes if d[0] == "c.wav"] == [("c.wav", 16000)] * 2
