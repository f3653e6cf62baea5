"""CMU-MultimodalSDK computational sequences (`.csd`): HDF5 files read with h5py and written in the SDK's layout.

Layout (the SDK's documented format): one top-level group named after the sequence (its "root name") holding
`data/<entry id>/features` (rows x dims) and `data/<entry id>/intervals` (rows x 2: start, end in seconds), and
`metadata/<key>`: one variable-length string each, JSON-encoded ("root name", "dimension names", "dataset name",
...). Entry ids are videos (`<video>`), segments (`<video>_<n>`) or, after the SDK's `align`, `<video>[<i>]`:
the i-th interval (from 0) of the reference sequence, e.g. the i-th opinion segment of the labels.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from pipeline.files import atomic_write
from pipeline.interop import InteropError

OVERLAP_EPSILON = 1e-5    # seconds: interval ends closer than this do not overlap (the SDK's own tolerance)
SDK_KEY = re.compile(r"^(?P<video>.+)\[(?P<index>\d+)\]$")
METADATA_KEYS = ("root name", "computational sequence description", "dimension names",
                 "computational sequence version", "alignment compatible", "dataset name", "dataset version",
                 "creator", "contact", "featureset bib citation", "dataset bib citation")


def sdk_key_to_id(key: str, index_base: int = 1) -> str:
    """SentiFlow's segment id of an SDK entry id: `<video>[<i>]` -> `<video>_<i + index_base>`; others unchanged."""
    m = SDK_KEY.match(key)
    return f"{m['video']}_{int(m['index']) + index_base}" if m else key


def id_to_sdk_key(segment_id: str, index_base: int = 1) -> str:
    """The SDK's aligned entry id of a SentiFlow id: `<video>_<n>` -> `<video>[<n - index_base>]`."""
    video, _, n = segment_id.rpartition("_")
    if not video or not n.isdigit() or int(n) < index_base:
        raise InteropError(f"segment id {segment_id!r} is not <video>_<n> with n >= {index_base}: it has no SDK "
                           "[<i>] form (export with SentiFlow's ids instead)")
    return f"{video}[{int(n) - index_base}]"


@dataclass
class Segment:
    """One entry of a computational sequence: its id, feature rows and their intervals."""

    key: str
    features: np.ndarray
    intervals: np.ndarray


@dataclass
class ComputationalSequence:
    """An open `.csd` file: root name, decoded metadata and entry ids; entries are read one at a time."""

    path: Path
    root: str
    metadata: dict[str, Any]
    keys: list[str]
    _file: Any = field(repr=False, default=None)

    def segment(self, key: str) -> Segment:
        """Entry `key`'s features (rows, dims) and intervals (rows, 2); InteropError when malformed."""
        where = f"{self.path}: entry {key!r}"
        group = self._file[self.root]["data"].get(key)
        if group is None or not hasattr(group, "keys"):
            raise InteropError(f"{where} is not a group with 'features' and 'intervals'")
        missing = [k for k in ("features", "intervals") if k not in group]
        if missing:
            raise InteropError(f"{where} lacks {' and '.join(missing)}")
        features = np.asarray(group["features"][()])
        intervals = np.asarray(group["intervals"][()])
        if features.dtype.kind not in "biuf":
            raise InteropError(f"{where}: features are {features.dtype}, not numbers: import a numeric sequence (for "
                               "words, the SDK's word vectors, e.g. CMU_MOSI_TimestampedWordVectors)")
        if intervals.ndim != 2 or intervals.shape[1] != 2:
            raise InteropError(f"{where}: intervals have shape {intervals.shape}, expected (rows, 2)")
        if features.ndim == 1:
            features = features[:, None]
        elif features.ndim > 2:
            features = features.reshape(features.shape[0], -1)
        if features.shape[0] != intervals.shape[0]:
            raise InteropError(f"{where}: {features.shape[0]} feature rows but {intervals.shape[0]} intervals")
        return Segment(key, features, intervals.astype(np.float64))

    def entries(self) -> Iterator[tuple[str, Segment | InteropError]]:
        """Every entry id with its segment, or the error that says why it cannot be read."""
        for key in self.keys:
            try:
                yield key, self.segment(key)
            except InteropError as exc:
                yield key, exc

    def close(self) -> None:
        """Close the HDF5 file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "ComputationalSequence":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode_metadata(group: Any) -> dict[str, Any]:
    """Metadata values: JSON strings as the SDK writes them, else the plain string."""
    out: dict[str, Any] = {}
    for key in group.keys():
        try:
            raw = group[key][()]
            raw = raw[0] if getattr(raw, "shape", ()) else raw
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        except (TypeError, ValueError, IndexError, OSError):
            continue
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def open_csd(path: str | Path) -> ComputationalSequence:
    """Open a computational sequence for reading (InteropError when it is not one)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InteropError(f"computational sequence not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InteropError(f"{path}: not an HDF5 file, so not a CMU-MultimodalSDK computational sequence "
                           f"({exc})") from None
    try:
        roots = [k for k in handle.keys() if hasattr(handle[k], "keys")]
        if len(roots) != 1:
            raise InteropError(f"{path}: expected one top-level group (the sequence's root name), found "
                               f"{', '.join(roots) or 'none'}")
        root = roots[0]
        if "data" not in handle[root]:
            raise InteropError(f"{path}: group {root!r} has no 'data' group of entries")
        metadata = _decode_metadata(handle[root]["metadata"]) if "metadata" in handle[root] else {}
        keys = sorted(handle[root]["data"].keys())
    except BaseException:
        handle.close()
        raise
    return ComputationalSequence(path, root, metadata, keys, handle)


def write_csd(path: str | Path, root: str, segments: Iterable[Segment], metadata: dict[str, Any]) -> Path:
    """Write a computational sequence in the SDK's layout (atomically); entry ids must not contain '/'."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as fh:
            group = fh.create_group(root)
            data = group.create_group("data")
            for seg in segments:
                if "/" in seg.key:
                    raise InteropError(f"entry id {seg.key!r} contains '/', which HDF5 reads as a sub-group")
                entry = data.create_group(seg.key)
                entry.create_dataset("features", data=np.asarray(seg.features))
                entry.create_dataset("intervals", data=np.asarray(seg.intervals, dtype=np.float64))
            meta = group.create_group("metadata")
            for key, value in metadata.items():
                ds = meta.create_dataset(key, (1,), dtype=h5py.string_dtype())
                ds[0] = json.dumps(value)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, write)


def cut_segment(features: np.ndarray, intervals: np.ndarray, start: float, end: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a whole-video sequence that overlap [start, end) by more than `OVERLAP_EPSILON` seconds,
    intervals clipped to it (as the SDK's align without collapsing)."""
    keep = (intervals[:, 0] < end - OVERLAP_EPSILON) & (intervals[:, 1] > start + OVERLAP_EPSILON)
    return features[keep], np.clip(intervals[keep], start, end)
