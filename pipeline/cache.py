"""Content-addressed feature cache: safetensors + JSON metadata per entry, atomic writes, verify and gc.

Every read checks what it serves: the metadata's own checksum and consistency, the tensors file's size and
safetensors header against the metadata (always, cheap), and the tensors' SHA-256 the first time this process
uses the file. A corrupt entry is never served: `load` raises CacheError, and the runner recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pipeline.claims import Claim, ClaimTable, current_owner, tag_owner_gone
from pipeline.config import stable_hash
from pipeline.errors import SentiFlowError, os_reason
from pipeline.files import atomic_write_json, json_dumps

log = logging.getLogger(__name__)

TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"
FAILURE_LOG = "failures.jsonl"
STATUS_OK = "ok"
STATUS_MISSING = "missing"   # the modality is absent from the source (e.g. no audio stream): a cached fact
STATUSES = (STATUS_OK, STATUS_MISSING)
META_CHECKSUM = "meta_sha256"   # SHA-256 of the rest of the metadata (entries written before it lack it)
_HASH_CHUNK = 1 << 20
_MAX_HEADER = 100 << 20      # safetensors' own limit on the header size
_hashed: set[tuple[str, int, int, int]] = set()   # tensors files whose full hash matched in this process


class CacheError(SentiFlowError):
    """The cache directory cannot be used, or an entry is corrupt."""


def hash_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_CHUNK):
            h.update(block)
    return h.hexdigest()


def hash_text(text: str) -> str:
    """Content hash of a transcript-only item (stands in for the media hash of a video)."""
    return "text-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def feature_key(media_hash: str, extractor: str, version: str, config: dict[str, Any]) -> str:
    """Cache key of one extractor's output for one media file under one config."""
    return stable_hash({"media": media_hash, "extractor": extractor, "version": version, "config": config}, 40)


@dataclass
class CacheEntry:
    """One cached feature set: its metadata and where its tensors live."""

    key: str
    path: Path
    meta: dict[str, Any]

    @property
    def status(self) -> str:
        """'ok' or 'missing' (the modality is absent from the source)."""
        return self.meta.get("status", STATUS_OK)

    def problem(self, full_hash: bool = False) -> str | None:
        """Why this entry must not be served, or None: metadata checksum and consistency, tensors file size and
        header always; the tensors' SHA-256 with `full_hash` or the first time this process checks the file."""
        return _check_entry(self, full_hash)

    def load(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Load the entry's tensors (no pickle involved), after checking them (see `problem`)."""
        why = self.problem()
        if why is not None:
            raise CacheError(f"cache entry {self.key} is corrupt: {why}; it is recomputed on the next extraction "
                             "(or run `sentiflow cache verify --fix`)")
        if self.status != STATUS_OK:
            return {}
        try:
            return load_file(str(self.path / TENSORS_FILE), device=str(device))
        except (SafetensorError, OSError) as exc:
            raise CacheError(f"cache entry {self.key} is unreadable: {exc}; run `sentiflow cache verify --fix`") from exc


@dataclass
class VerifyReport:
    """Outcome of `verify`: healthy entries, corrupt ones with reasons, stale temporary dirs."""

    ok: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    temp_dirs: list[str] = field(default_factory=list)
    stale_claims: list[str] = field(default_factory=list)   # claims of dead owners (`gc` removes them)


class FeatureCache:
    """A directory of feature entries addressed by (media hash, extractor, version, config)."""

    def __init__(self, root: str | os.PathLike, create: bool = True) -> None:
        self.root = Path(root)
        if create:
            try:
                for sub in ("objects", "tmp", "media"):
                    (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(f"cannot create cache directory {self.root}: {exc.strerror or exc}") from exc
        elif not (self.root / "objects").is_dir():
            raise CacheError(f"{self.root} is not a SentiFlow cache (no objects/ directory)")
        self.claims = ClaimTable(self.root / "claims")   # leases on entries being computed (pipeline/claims.py)

    # ---- layout
    def _entry_dir(self, key: str) -> Path:
        return self.root / "objects" / key[:2] / key

    def check_writable(self) -> None:
        """Raise CacheError if entries cannot be written here (e.g. a read-only directory)."""
        probe = self.root / "tmp" / f".probe-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise CacheError(f"cache directory {self.root} is not writable: {exc.strerror or exc}") from exc

    # ---- read
    def get(self, key: str) -> CacheEntry | None:
        """The entry for `key`, or None when absent (a half-written entry is never visible)."""
        d = self._entry_dir(key)
        meta_path = d / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:   # ValueError: bad JSON or bad UTF-8
            raise CacheError(f"cache entry {key} has unreadable metadata: {exc}") from exc
        if not isinstance(meta, dict):
            raise CacheError(f"cache entry {key} has unreadable metadata: not a JSON object")
        return CacheEntry(key=key, path=d, meta=meta)

    def remove(self, key: str) -> None:
        """Delete a (corrupt) entry: renamed out of objects/ first, so readers see it whole or not at all."""
        d = self._entry_dir(key)
        aside = self.root / "tmp" / f"{key}.{current_owner().tag}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(d, aside)
        except OSError:
            aside = d
        shutil.rmtree(aside, ignore_errors=True)

    def __contains__(self, key: str) -> bool:
        return (self._entry_dir(key) / META_FILE).is_file()

    def entries(self) -> Iterator[CacheEntry]:
        """All committed entries."""
        objects = self.root / "objects"
        if not objects.is_dir():
            return
        for shard in sorted(objects.iterdir()):
            if not shard.is_dir():
                continue
            for d in sorted(shard.iterdir()):
                try:
                    entry = self.get(d.name)
                except CacheError:
                    entry = CacheEntry(key=d.name, path=d, meta={"status": "unreadable"})
                if entry is not None:
                    yield entry

    # ---- write
    def put(
        self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any], status: str = STATUS_OK,
    ) -> CacheEntry:
        """Atomically store an entry: write into tmp/, then rename the whole directory into place."""
        final = self._entry_dir(key)
        if (final / META_FILE).is_file():
            return self.get(key)  # type: ignore[return-value]
        tmp = self.root / "tmp" / f"{key}.{current_owner().tag}.{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            meta = dict(meta)
            meta.update(key=key, status=status, created=time.time())
            if status == STATUS_OK:
                clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
                save_file(clean, str(tmp / TENSORS_FILE))
                meta["tensors"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                                   for k, v in clean.items()}
                meta["tensors_sha256"] = hash_file(tmp / TENSORS_FILE)
                meta["tensors_bytes"] = (tmp / TENSORS_FILE).stat().st_size
            meta[META_CHECKSUM] = meta_checksum(meta)
            atomic_write_json(tmp / META_FILE, meta)
            _fsync_dir(tmp)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if (final / META_FILE).is_file():  # another process committed the same entry first
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    raise
            _fsync_dir(final.parent)
        except (OSError, SafetensorError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CacheError(f"cannot write cache entry under {self.root}: {write_reason(exc)}") from exc
        return CacheEntry(key=key, path=final, meta=meta)

    def put_media_record(self, media_hash: str, record: dict[str, Any]) -> None:
        """Remember where a media hash came from (paths, probe), merged with earlier records; CacheError when
        it cannot be written (a full disk)."""
        path = self.root / "media" / f"{media_hash}.json"
        old: dict[str, Any] = {}
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                old = {}
            if not isinstance(old, dict):
                old = {}
        sources = sorted(set(old.get("sources", [])) | set(record.get("sources", [])))
        merged = {**old, **record, "sources": sources}
        try:
            atomic_write_json(path, merged, tmp_dir=self.root / "tmp", owner=current_owner().tag)
        except OSError as exc:
            raise CacheError(f"cannot write the media record under {self.root}: {os_reason(exc)}") from exc

    def media_record(self, media_hash: str) -> dict[str, Any] | None:
        """The record written by `put_media_record`, if any."""
        path = self.root / "media" / f"{media_hash}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def log_failure(self, record: dict[str, Any]) -> None:
        """Append one failure (path, extractor, reason) to the cache's failure log (best effort: a full disk
        loses the log line, never the run; the run's summary still has the failure)."""
        line = json_dumps({"time": time.time(), **record}) + "\n"
        try:
            with open(self.root / FAILURE_LOG, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            log.warning("cannot append to %s: %s", self.root / FAILURE_LOG, os_reason(exc))

    def failures(self) -> list[dict[str, Any]]:
        """All records of the failure log (a torn last line is skipped)."""
        path = self.root / FAILURE_LOG
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    # ---- maintenance
    def verify(self, fix: bool = False) -> VerifyReport:
        """Check every entry's tensors against its metadata; with fix, delete corrupt entries."""
        report = VerifyReport()
        for entry in self.entries():
            problem = _check_entry(entry, full_hash=True)
            if problem is None:
                report.ok += 1
                continue
            report.corrupt.append((entry.key, problem))
            if fix:
                shutil.rmtree(entry.path, ignore_errors=True)
        report.temp_dirs = [p.name for p in (self.root / "tmp").iterdir()] if (self.root / "tmp").is_dir() else []
        report.stale_claims = self.claims.stale()
        return report

    # ---- claims: one process computes an entry while others wait for it, on any host (pipeline/claims.py)
    def claim(self, key: str) -> bool:
        """Try to become the process that computes `key`; a claim of a dead owner (or expired lease) is taken over.

        False while a live owner holds the claim, and also when the entry is already committed: its writer may
        have committed and released between the caller's lookup and this claim.
        """
        if not self.claims.acquire(key):
            return False
        if key in self:
            self.claims.release(key)
            return False
        return True

    def claim_holder(self, key: str) -> Claim | None:
        """The claim on `key` (owner and lease), or None when unclaimed (or unreadable)."""
        return self.claims.holder(key)

    def release(self, key: str) -> None:
        """Drop this process's claim on `key`."""
        self.claims.release(key)

    def clean_stale_temp(self) -> int:
        """Remove claims of dead owners and this machine's temporary entries whose writing process is gone.

        Another machine's temporaries (a shared cache) are left to `gc`, which judges them by age.
        """
        removed = self.claims.clear_stale()
        tmp_root = self.root / "tmp"
        if not tmp_root.is_dir():
            return removed
        for p in tmp_root.iterdir():
            parts = p.name.split(".")
            if len(parts) < 3 or not tag_owner_gone(parts[-2]):
                continue
            _remove(p)
            removed += 1
        return removed

    def gc(self, temp_older_than_s: float = 3600.0, stale_versions: dict[str, str] | None = None) -> dict[str, int]:
        """Remove claims of dead owners, temporary leftovers older than the given age, corrupt entries, and entries
        of old versions."""
        removed = {"temp": 0, "corrupt": 0, "stale": 0, "claims": self.claims.clear_stale()}
        now = time.time()
        tmp_root = self.root / "tmp"
        if tmp_root.is_dir():
            for p in tmp_root.iterdir():
                if now - p.stat().st_mtime >= temp_older_than_s:
                    _remove(p)
                    removed["temp"] += 1
        for entry in list(self.entries()):
            if _check_entry(entry, full_hash=True) is not None:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed["corrupt"] += 1
            elif stale_versions is not None:
                name = entry.meta.get("extractor")
                if name in stale_versions and entry.meta.get("version") != stale_versions[name]:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed["stale"] += 1
        return removed


def _remove(path: Path) -> None:
    """Delete a file or a directory tree, ignoring what is already gone."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def meta_checksum(meta: dict[str, Any]) -> str:
    """SHA-256 of an entry's metadata without its own checksum field (any later edit of meta.json shows)."""
    rest = {k: v for k, v in meta.items() if k != META_CHECKSUM}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def write_reason(exc: BaseException) -> str:
    """Why a write failed, in words ('No space left on device'), also from safetensors' wrapped I/O errors."""
    if isinstance(exc, OSError):
        return os_reason(exc)
    m = re.search(r'message: "([^"]+)"', str(exc))
    return m.group(1) if m else str(exc)


def _check_entry(entry: CacheEntry, full_hash: bool = True) -> str | None:
    """Why `entry` must not be served, or None (see CacheEntry.problem)."""
    meta = entry.meta
    if meta.get("status") == "unreadable":
        return "metadata is not valid JSON"
    if meta.get("key") != entry.key:
        return "metadata key does not match the entry's directory"
    if META_CHECKSUM in meta and meta[META_CHECKSUM] != meta_checksum(meta):
        return "metadata checksum differs: meta.json was changed after it was written"
    status = meta.get("status", STATUS_OK)
    if status not in STATUSES:
        return f"metadata status {status!r} is not one of {', '.join(STATUSES)}"
    path = entry.path / TENSORS_FILE
    if status == STATUS_MISSING:
        if "tensors" in meta or "tensors_sha256" in meta or path.exists():
            return "metadata says the modality is missing, but the entry has tensors"
        if not str(meta.get("reason") or "").strip():
            return "metadata says the modality is missing but gives no reason"
        return None
    if not isinstance(meta.get("tensors"), dict) or not meta.get("tensors_sha256"):
        return "metadata lacks the tensors' list or checksum"
    try:
        size = path.stat().st_size
    except OSError:
        return "tensors file is missing"
    if "tensors_bytes" in meta and size != meta["tensors_bytes"]:
        return f"tensors file has {size} bytes, metadata says {meta['tensors_bytes']}"
    problem = _check_header(path, size, meta["tensors"])
    if problem:
        return problem
    st = path.stat()
    seen = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if full_hash or seen not in _hashed:
        if hash_file(path) != meta.get("tensors_sha256"):
            return "tensors file checksum differs from metadata"
        _hashed.add(seen)
    return None


def _check_header(path: Path, size: int, listed: dict[str, Any]) -> str | None:
    """Compare a safetensors file's header (names, shapes, data extent) with the metadata's tensor list."""
    try:
        with open(path, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            if n > min(_MAX_HEADER, size - 8):
                return "tensors file header is damaged (its length exceeds the file)"
            header = json.loads(fh.read(n))
    except (OSError, struct.error, ValueError, RecursionError) as exc:
        return f"tensors file header is unreadable ({exc})"
    if not isinstance(header, dict):
        return "tensors file header is damaged"
    header.pop("__metadata__", None)
    end = 0
    for name, spec in listed.items():
        got = header.get(name)
        if not isinstance(got, dict):
            return f"tensor {name} listed in metadata is absent"
        if list(got.get("shape", [])) != list(spec.get("shape", [])):
            return f"tensor {name} has shape {got.get('shape')}, metadata says {spec.get('shape')}"
        offsets = got.get("data_offsets") or [0, 0]
        end = max(end, int(offsets[1]))
    if 8 + n + end != size:
        return f"tensors file has {size} bytes, its header describes {8 + n + end}"
    return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
