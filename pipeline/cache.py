"""Content-addressed feature cache: safetensors + JSON metadata per entry, atomic writes, verify and gc."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
from pipeline.errors import SentiFlowError
from pipeline.files import atomic_write_json

TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"
FAILURE_LOG = "failures.jsonl"
STATUS_OK = "ok"
STATUS_MISSING = "missing"   # the modality is absent from the source (e.g. no audio stream): a cached fact
_HASH_CHUNK = 1 << 20


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

    def load(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Load the entry's tensors (no pickle involved)."""
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
        except (OSError, json.JSONDecodeError) as exc:
            raise CacheError(f"cache entry {key} has unreadable metadata: {exc}") from exc
        return CacheEntry(key=key, path=d, meta=meta)

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
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CacheError(f"cannot write cache entry under {self.root}: {exc.strerror or exc}") from exc
        return CacheEntry(key=key, path=final, meta=meta)

    def put_media_record(self, media_hash: str, record: dict[str, Any]) -> None:
        """Remember where a media hash came from (paths, probe), merged with earlier records."""
        path = self.root / "media" / f"{media_hash}.json"
        old: dict[str, Any] = {}
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = {}
        sources = sorted(set(old.get("sources", [])) | set(record.get("sources", [])))
        merged = {**old, **record, "sources": sources}
        atomic_write_json(path, merged, tmp_dir=self.root / "tmp", owner=current_owner().tag)

    def media_record(self, media_hash: str) -> dict[str, Any] | None:
        """The record written by `put_media_record`, if any."""
        path = self.root / "media" / f"{media_hash}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def log_failure(self, record: dict[str, Any]) -> None:
        """Append one failure (path, extractor, reason) to the cache's failure log."""
        line = json.dumps({"time": time.time(), **record}, ensure_ascii=False) + "\n"
        with open(self.root / FAILURE_LOG, "a", encoding="utf-8") as fh:
            fh.write(line)

    def failures(self) -> list[dict[str, Any]]:
        """All records of the failure log (a torn last line is skipped)."""
        path = self.root / FAILURE_LOG
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
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
            problem = _check_entry(entry)
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
            if _check_entry(entry) is not None:
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


def _check_entry(entry: CacheEntry) -> str | None:
    meta = entry.meta
    if meta.get("status") == "unreadable":
        return "metadata is not valid JSON"
    if meta.get("key") != entry.key:
        return "metadata key does not match the entry's directory"
    if entry.status != STATUS_OK:
        return None
    path = entry.path / TENSORS_FILE
    if not path.is_file():
        return "tensors file is missing"
    if hash_file(path) != meta.get("tensors_sha256"):
        return "tensors file checksum differs from metadata"
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        return f"tensors file unreadable: {exc}"
    for name, spec in meta.get("tensors", {}).items():
        if name not in tensors:
            return f"tensor {name} listed in metadata is absent"
        if list(tensors[name].shape) != spec["shape"]:
            return f"tensor {name} has shape {list(tensors[name].shape)}, metadata says {spec['shape']}"
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
