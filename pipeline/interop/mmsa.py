"""MMSA feature files (`unaligned_50.pkl`, `aligned_50.pkl`, MMSA-FET's output): the layout, read safely, and written.

A pickled dict of splits (`train`, `valid`, `test`), each a dict of equal-length columns: `id` (`<video>$_$<clip>`),
`raw_text`, `text` (N, T_l, D_t), `audio` (N, T_a, D_a), `vision` (N, T_v, D_v), `audio_lengths` and
`vision_lengths` (unaligned files only), `text_bert` (N, 3, T_l: token ids, attention mask, segment ids),
`regression_labels` (N,), and often `classification_labels` and `annotations`. Sequences are zero-padded at the
end; a word-aligned file has no lengths and one word mask (`text_bert`'s attention mask). Reading goes through
the restricted unpickler only.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pipeline.files import atomic_write
from pipeline.interop import InteropError
from pipeline.interop.restricted_pickle import load_restricted

SPLITS = ("train", "valid", "test")
FEATURE_KEYS = {"text": "text", "audio": "audio", "visual": "vision"}     # SentiFlow modality -> MMSA column
LENGTH_KEYS = {"audio": "audio_lengths", "visual": "vision_lengths"}
ID_SEPARATOR = "$_$"


def split_mmsa_id(mmsa_id: str) -> tuple[str, str]:
    """(video_id, clip_id) of an MMSA id `<video>$_$<clip>` (a plain id is its own video, clip '')."""
    video, sep, clip = str(mmsa_id).partition(ID_SEPARATOR)
    return (video, clip) if sep else (str(mmsa_id), "")


def mmsa_id(video_id: str, clip_id: str) -> str:
    """MMSA's id of a clip."""
    return f"{video_id}{ID_SEPARATOR}{clip_id}" if clip_id else video_id


@dataclass
class MmsaSample:
    """One clip of an MMSA file: ids, split, transcript, label and each modality's valid rows (length, D)."""

    id: str                      # SentiFlow's id: <video>_<clip>
    video_id: str
    clip_id: str
    split: str
    text: str
    label: float | None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)   # modality -> why it could not be read
    tokens: np.ndarray | None = None     # the clip's `text_bert` rows (3, T_l) when the file has them


def load_mmsa(path: str | Path) -> dict[str, dict[str, Any]]:
    """The splits of an MMSA feature file, read with the restricted unpickler and checked for its layout."""
    path = Path(path)
    data = load_restricted(path)
    if not isinstance(data, dict) or not any(s in data for s in SPLITS):
        found = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise InteropError(f"{path}: not an MMSA feature file: expected a dict with train/valid/test splits, "
                           f"found {found or 'an empty dict'}")
    out: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        if split not in data:
            continue
        part = data[split]
        if not isinstance(part, dict) or "id" not in part:
            raise InteropError(f"{path}: split {split!r} is not a dict with an 'id' column")
        n = len(part["id"])
        for m, key in FEATURE_KEYS.items():
            if key not in part:
                continue
            arr = part[key]
            if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[0] != n or arr.dtype.kind not in "biuf":
                shape = getattr(arr, "shape", type(arr).__name__)
                raise InteropError(f"{path}: {split}.{key} must be a numeric array (N={n}, T, D), got {shape}")
        out[split] = part
    return out


def _lengths(part: dict[str, Any], modality: str, steps: int, aligned: bool) -> np.ndarray:
    """Valid rows per sample of one modality: its length column, else the word/token mask, else all steps."""
    n = len(part["id"])
    if not aligned and modality in LENGTH_KEYS and LENGTH_KEYS[modality] in part:
        return np.asarray(part[LENGTH_KEYS[modality]], dtype=np.int64).reshape(n)
    bert = part.get("text_bert")
    if _is_token_array(bert, part) and bert.shape[2] == steps:
        return np.asarray(bert[:, 1, :] > 0).sum(1).astype(np.int64)
    return np.full(n, steps, dtype=np.int64)


def _is_token_array(bert: Any, part: dict[str, Any]) -> bool:
    """True when `text_bert` is MMSA's (N, 3, T_l) token ids / attention mask / segment ids of the text column."""
    return (isinstance(bert, np.ndarray) and bert.ndim == 3 and bert.shape[0] == len(part["id"])
            and bert.shape[1] >= 2 and "text" in part and bert.shape[2] == part["text"].shape[1])


def is_aligned(part: dict[str, Any]) -> bool:
    """A split without length columns holds word-aligned sequences."""
    return not any(k in part for k in LENGTH_KEYS.values())


def iter_samples(splits: dict[str, dict[str, Any]], aligned: bool | None = None) -> Iterator[MmsaSample]:
    """Every clip of every split with its modalities' valid rows (views into the file's arrays)."""
    for split, part in splits.items():
        al = is_aligned(part) if aligned is None else aligned
        lengths = {m: _lengths(part, m, part[key].shape[1], al) for m, key in FEATURE_KEYS.items() if key in part}
        labels = part.get("regression_labels")
        texts = part.get("raw_text")
        bert = part.get("text_bert") if "text" in part and _is_token_array(part.get("text_bert"), part) else None
        for i, raw_id in enumerate(part["id"]):
            video, clip = split_mmsa_id(str(raw_id))
            label = None
            if labels is not None and i < len(labels):
                value = float(np.asarray(labels[i]).reshape(-1)[0])
                label = value if np.isfinite(value) else None
            sample = MmsaSample(id=f"{video}_{clip}" if clip else video, video_id=video, clip_id=clip, split=split,
                                text=str(texts[i]) if texts is not None and i < len(texts) else "", label=label,
                                tokens=bert[i] if bert is not None else None)
            for m, key in FEATURE_KEYS.items():
                if m not in lengths:
                    continue
                steps = part[key].shape[1]
                n = int(lengths[m][i])
                if not 0 <= n <= steps:
                    sample.problems[m] = f"{key} length {n} is outside 0..{steps}"
                    continue
                sample.features[m] = part[key][i, :n]
            yield sample


def write_mmsa(path: str | Path, splits: dict[str, dict[str, Any]]) -> Path:
    """Write splits in MMSA's layout as a pickle (for MMSA, which reads nothing else), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            pickle.dump(splits, fh, protocol=4)

    return atomic_write(path, write)
