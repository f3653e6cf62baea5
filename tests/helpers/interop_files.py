"""Small feature files in other tools' layouts, written here with h5py and pickle directly (not with SentiFlow's
writers): CMU-MultimodalSDK computational sequences and MMSA feature pickles."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

# Two videos, three opinion segments, in the SDK's aligned-key form; words per segment.
SDK_SEGMENTS = {"vidA[0]": 4, "vidA[1]": 6, "vid_B2[0]": 3}
SEGMENT_IDS = {"vidA[0]": "vidA_1", "vidA[1]": "vidA_2", "vid_B2[0]": "vid_B2_1"}   # index base 1
WORD_SECONDS = 0.4


def write_sdk_csd(path: Path, root: str, entries: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  metadata: Mapping[str, Any] | None = None) -> Path:
    """A computational sequence as the SDK writes it: <root>/data/<id>/{features,intervals}, <root>/metadata/<key>
    holding one JSON-encoded variable-length string."""
    with h5py.File(path, "w") as fh:
        group = fh.create_group(root)
        data = group.create_group("data")
        for key, (features, intervals) in entries.items():
            entry = data.create_group(key)
            entry.create_dataset("features", data=features)
            entry.create_dataset("intervals", data=intervals)
        meta = group.create_group("metadata")
        for key, value in {"root name": root, "dataset name": "toy", **(metadata or {})}.items():
            ds = meta.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            ds[0] = json.dumps(value)
    return path


def word_aligned_entries(dim: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per segment of SDK_SEGMENTS: one random row per word, word intervals 0.35 s long every 0.4 s."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, n in SDK_SEGMENTS.items():
        starts = np.arange(n) * WORD_SECONDS
        out[key] = (rng.normal(size=(n, dim)).astype(np.float32), np.stack([starts, starts + 0.35], axis=1))
    return out


def write_word_aligned_set(folder: Path) -> dict[str, Path]:
    """Word-aligned COVAREP (5-d), Facet (7-d) and GloVe (12-d) sequences, and an id,label,mode CSV of the segments."""
    files = {}
    for modality, root, dim, seed in (("audio", "toy_COVAREP", 5, 1), ("visual", "toy_Facet", 7, 2),
                                      ("text", "toy_GloVe", 12, 3)):
        names = {"dimension names": [f"{root}_{i}" for i in range(dim)]}
        files[modality] = write_sdk_csd(folder / f"{root}.csd", root, word_aligned_entries(dim, seed), names)
    labels = folder / "labels.csv"
    labels.write_text("id,label,mode\nvidA_1,1.5,train\nvidA_2,-2.0,train\nvid_B2_1,0.5,valid\n", encoding="utf-8")
    files["labels"] = labels
    return files


def mmsa_splits(seed: int = 0) -> dict[str, dict[str, Any]]:
    """An MMSA-layout dict: train (3 clips) and valid (2), unaligned, audio 5-d / vision 4-d with lengths, text
    6-d with `text_bert` token masks, zero padding after each length."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, ids, lengths in (("train", ["vidA$_$1", "vidA$_$2", "vid_B2$_$1"], [(3, 7, 5), (6, 2, 8), (1, 9, 3)]),
                                ("valid", ["vidC$_$4", "vidC$_$5"], [(6, 9, 8), (2, 4, 1)])):
        n = len(ids)
        text, audio, vision = np.zeros((n, 6, 6), np.float32), np.zeros((n, 9, 5), np.float32), \
            np.zeros((n, 8, 4), np.float32)
        bert = np.zeros((n, 3, 6), np.float32)
        for i, (lt, la, lv) in enumerate(lengths):
            text[i, :lt] = rng.normal(size=(lt, 6))
            audio[i, :la] = rng.normal(size=(la, 5))
            vision[i, :lv] = rng.normal(size=(lv, 4))
            bert[i, 0, :lt] = rng.integers(100, 2000, lt)
            bert[i, 1, :lt] = 1
        labels = rng.uniform(-3, 3, n).astype(np.float32)
        out[split] = {"id": ids, "raw_text": [f"clip {k} says something" for k in ids], "text": text,
                      "text_bert": bert, "audio": audio, "vision": vision,
                      "audio_lengths": [la for _, la, _ in lengths], "vision_lengths": [lv for _, _, lv in lengths],
                      "regression_labels": labels, "annotations": ["Positive"] * n}
    return out


def write_mmsa_pickle(path: Path, splits: Mapping[str, Any]) -> Path:
    """Pickle the splits as MMSA does."""
    with open(path, "wb") as fh:
        pickle.dump(dict(splits), fh)
    return path
