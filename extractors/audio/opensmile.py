"""openSMILE low-level descriptors (a sequence with times) and functionals (one vector per clip): eGeMAPS, ComParE.

The `opensmile` package ships the openSMILE library and the feature-set configs, and runs offline. Each clip is
one openSMILE run with two sinks (the package's own multi-level output config): the LLD level and the
functionals level come out of the same pass, equal to what `opensmile.Smile(...).process_signal` gives for each
level separately. Audio is streamed into openSMILE chunk by chunk as 16-bit samples (openSMILE keeps the
clip's samples: 2 bytes per sample, 115 MB per hour at 16 kHz). The clips of a batch run on `threads` threads
(the library releases the GIL while it computes).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import opensmile.core.smile as smile_module
import torch
from opensmile.core.config import config as smile_paths
from opensmile.core.define import FeatureSet
from opensmile.core.lib import OpenSMILE

from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem, sequence_features
from pipeline.config import ConfigBase, ConfigError
from pipeline.media import MediaError, iter_audio

FEATURE_SETS = ("eGeMAPSv02", "ComParE_2016")
LLD_SINK, FUNC_SINK, SOURCE = "extsinklld", "extsinkfunc", "extsource"


@dataclass
class OpenSmileConfig(ConfigBase):
    """eGeMAPSv02 (25 LLDs, 88 functionals) or ComParE_2016 (65 LLDs, 6,373 functionals) on 16 kHz speech."""

    feature_set: str = "eGeMAPSv02"
    seq_len: int = 128            # fixed length of the LLD sequence (T_a), 100 LLD frames per second
    fit: str = "pool"
    threads: int = 1              # clips of a batch processed at once (threads: openSMILE releases the GIL)
    loglevel: int = 0             # openSMILE's own log level (0: quiet)


class OpenSmileExtractor(Extractor):
    """Per clip: openSMILE LLDs at 100 Hz (`sequence`, `times`, `fixed`, `mask`, `length`) and the
    feature set's functionals (`functionals`, one vector)."""

    name = "opensmile"
    version = "1"
    modality = "audio"
    Config = OpenSmileConfig
    requires = frozenset({"audio"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c: OpenSmileConfig = self.config
        if c.feature_set not in FEATURE_SETS:
            raise ConfigError(f"extraction.options.opensmile.feature_set: {c.feature_set!r} is not one of "
                              f"{', '.join(FEATURE_SETS)}")
        if c.threads < 1:
            raise ConfigError("extraction.options.opensmile.threads must be at least 1")
        self.sample_rate = self.media.speech_sample_rate

    def media_settings(self) -> dict:
        return {"speech_sample_rate": self.media.speech_sample_rate}

    def _paths(self) -> tuple[str, dict[str, Any]]:
        """The feature set's config file and the options of a two-sink run on external audio."""
        root = os.path.join(os.path.dirname(os.path.realpath(smile_module.__file__)), smile_paths.CONFIG_ROOT)
        c: OpenSmileConfig = self.config
        options = {
            "source": os.path.join(root, smile_paths.EXTERNAL_INPUT_CONFIG),
            "sink": os.path.join(root, smile_paths.EXTERNAL_OUTPUT_MULTI_CONFIG),
            "sinkLevelLLD": "lld", "sinkLevelFunc": "func",
            "bufferModeRbConf": os.path.join(root, "shared/BufferModeRb.conf.inc"),
            "frameModeFunctionalsConf": os.path.join(root, "shared/FrameModeFunctionals.conf.inc"),
            "sampleRate": self.sample_rate, "nBits": 16,
        }
        return os.path.join(root, FeatureSet[c.feature_set].value + smile_paths.CONFIG_EXT), options

    def run_clip(self, path: str) -> Features:
        """openSMILE over one clip's audio: LLD sequence with frame-centre times, and the functionals."""
        c: OpenSmileConfig = self.config
        config_file, options = self._paths()
        smile = OpenSMILE()
        smile.initialize(config_file=config_file, options=options, loglevel=c.loglevel)
        lld: list[np.ndarray] = []
        starts: list[float] = []
        lengths: list[float] = []
        func: list[np.ndarray] = []

        def on_lld(data: np.ndarray, meta: Any) -> None:
            lld.append(data.copy())
            starts.append(meta.vIdx * meta.period)   # openSMILE repeats the time of the last, shortened frame
            lengths.append(meta.lengthSec)

        try:
            smile.external_sink_set_callback_ex(LLD_SINK, on_lld)
            smile.external_sink_set_callback_ex(FUNC_SINK, lambda data, meta: func.append(data.copy()))
            names = [smile.external_sink_get_element_name(LLD_SINK, i)
                     for i in range(smile.external_sink_get_num_elements(LLD_SINK))]
            func_names = [smile.external_sink_get_element_name(FUNC_SINK, i)
                          for i in range(smile.external_sink_get_num_elements(FUNC_SINK))]
            try:
                for chunk in iter_audio(path, self.sample_rate, self.media.audio_chunk_seconds):
                    samples = np.clip(np.asarray(chunk, np.float32) * 32768.0, -32768, 32767).astype(np.int16)
                    smile.external_audio_source_write_data(SOURCE, samples.tobytes())
            except MediaError as exc:
                raise ExtractionFailed(str(exc)) from exc
            smile.external_audio_source_set_eoi(SOURCE)
            smile.run()
        finally:
            smile.free()
        if not lld or not func:
            raise FeatureUnavailable("audio shorter than one openSMILE analysis frame")
        seq = torch.from_numpy(np.vstack(lld).astype(np.float32))
        functionals = torch.from_numpy(np.vstack(func)[0].astype(np.float32))
        bad = int((~torch.isfinite(seq)).sum()) + int((~torch.isfinite(functionals)).sum())
        frame_seconds = max(lengths)   # the last frames are cut short at the clip's end: centre on the full frame
        times = torch.tensor(starts, dtype=torch.float64) + frame_seconds / 2.0
        tensors = sequence_features(torch.nan_to_num(seq, nan=0.0, posinf=0.0, neginf=0.0), times, c.seq_len, c.fit)
        tensors["functionals"] = torch.nan_to_num(functionals, nan=0.0, posinf=0.0, neginf=0.0)
        return Features(tensors=tensors, meta={
            "rate_hz": 100.0, "frame_seconds": frame_seconds, "dim": seq.shape[1], "feature_set": c.feature_set,
            "feature_names": names,
            "functional_names": func_names, "non_finite_values_zeroed": bad})

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        def one(item: MediaItem) -> Features | Exception:
            try:
                return self.run_clip(item.path)
            except (FeatureUnavailable, ExtractionFailed) as exc:
                return exc

        threads = min(self.config.threads, len(batch))
        if threads <= 1:
            return [one(item) for item in batch]
        with ThreadPoolExecutor(threads, thread_name_prefix="opensmile") as pool:
            return list(pool.map(one, batch))
