"""Claims on cache entries: one process computes an entry while the others wait for it, across hosts too.

A claim is a small JSON file `claims/<key>` naming its owner (host, kernel boot id, PID namespace, process id and
the process's start time) and a lease: an expiry the owner renews while it works (a background thread, every
quarter of the lease). Whether the owner still lives is decided by what can be known from here:

- the same machine (same host name, boot id and PID namespace): the process with that id exists *and* started at
  the recorded time. A process id reused after a crash (common in containers) names a process with another start
  time, so its claim is taken over at once; a claim from before a reboot has another boot id.
- another machine (a shared cache folder over NFS or similar): the lease has not expired. A host that dies stops
  renewing, and its claims are taken over once their leases end. Hosts' clocks must agree to well within a lease
  (NTP).

Claims are created complete (written to a temporary file, then hard-linked into place, which fails when the
name exists), so a reader never sees half a claim. A stale claim is moved aside before it is replaced; if what
was moved turns out to be a fresh claim (another process replaced the stale one first), it is put back. A claim
that is lost anyway (a lease that expired while its owner still worked) costs duplicated work, never a wrong
entry: cache entries are content-addressed and committed atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.system import boot_id, host_name, pid_alive, pid_namespace, process_start_time

DEFAULT_LEASE_SECONDS = 60.0
RENEWALS_PER_LEASE = 4          # the owner renews every lease / 4, so three renewals may fail before it expires
_TEMP_SUFFIX = ".tmp"
_ASIDE_SUFFIX = ".stale"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: a process on a machine (host name, boot, PID namespace)."""

    host: str
    boot_id: str
    pid_namespace: str
    pid: int
    start_time: int | None

    @classmethod
    def current(cls) -> "Owner":
        """This process."""
        pid = os.getpid()
        return cls(host_name(), boot_id(), pid_namespace(), pid, process_start_time(pid))

    @property
    def machine(self) -> str:
        """Short id of the machine part (host, boot, PID namespace): equal ids mean process ids are comparable."""
        return hashlib.sha256(f"{self.host}\0{self.boot_id}\0{self.pid_namespace}".encode()).hexdigest()[:8]

    @property
    def tag(self) -> str:
        """`<machine>-<pid>`: names this process's temporary files so a cleaner can tell whose they are."""
        return f"{self.machine}-{self.pid}"

    def same_machine(self, other: "Owner") -> bool:
        """True when `other`'s process id can be looked up from here (same host, boot and PID namespace)."""
        return bool(self.boot_id) and self.machine == other.machine

    def alive_here(self, pid: int, start_time: int | None) -> bool | None:
        """Whether the process (`pid`, `start_time`) of this machine lives; None when this system cannot tell."""
        if start_time is not None and self.start_time is not None:
            return process_start_time(pid) == start_time
        return None if pid_alive(pid) else False


@dataclass
class Claim:
    """One claim's record: the entry, its owner, the owner's token and the lease."""

    key: str
    owner: Owner
    token: str
    acquired: float
    expires: float
    lease_seconds: float

    def to_json(self) -> str:
        """The claim file's text."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Claim":
        """A record read back; ValueError when the text is not a claim."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("owner"), dict):
            raise ValueError("not a claim record")
        try:
            return cls(key=str(data["key"]), owner=Owner(**data["owner"]), token=str(data["token"]),
                       acquired=float(data["acquired"]), expires=float(data["expires"]),
                       lease_seconds=float(data["lease_seconds"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a claim record: {exc}") from exc

    def holder_alive(self, here: Owner, now: float) -> bool:
        """Whether this claim's owner may still be working, judged from process `here` at time `now`."""
        if here.same_machine(self.owner):
            alive = here.alive_here(self.owner.pid, self.owner.start_time)
            if alive is not None:
                return alive
            # the pid exists but this system cannot say since when: a live owner keeps renewing its lease
        return now < self.expires


class ClaimTable:
    """The claims of one cache folder, held and renewed by one owner (by default this process)."""

    def __init__(self, folder: str | os.PathLike, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 owner: Owner | None = None) -> None:
        self.folder = Path(folder)
        self.lease_seconds = lease_seconds
        self._owner = owner
        self._held: dict[str, str] = {}            # key -> token of the claims this table holds
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def owner(self) -> Owner:
        """The owner of this table's claims (this process unless given)."""
        return self._owner or current_owner()

    # ---- one entry
    def acquire(self, key: str) -> bool:
        """Become the one computing `key`: True when claimed, False while a live owner holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / key
        for _ in range(3):
            claim = self._new_claim(key)
            if self._create(path, claim):
                with self._lock:
                    self._held[key] = claim.token
                self._start_renewer()
                return True
            holder = self.holder(key)
            if holder is None and path.exists():
                if self._unreadable_is_live(path):
                    return False
            elif holder is not None and holder.holder_alive(self.owner, time.time()):
                return False
            self._move_aside(path, holder)
        return False

    def holder(self, key: str) -> Claim | None:
        """The claim on `key`, or None when unclaimed or unreadable."""
        return _read(self.folder / key)

    def release(self, key: str) -> None:
        """Drop this table's claim on `key` (a claim someone else took over is left alone)."""
        with self._lock:                 # not while a renewal rewrites it
            token = self._held.pop(key, None)
            held = self.holder(key)
            if token is not None and held is not None and held.token == token:
                (self.folder / key).unlink(missing_ok=True)

    def held(self) -> list[str]:
        """Keys this table holds now."""
        with self._lock:
            return sorted(self._held)

    # ---- maintenance
    def stale(self) -> list[str]:
        """Keys whose claims belong to owners that are gone (dead process, expired lease) or are unreadable."""
        if not self.folder.is_dir():
            return []
        now, here, out = time.time(), self.owner, []
        for p in sorted(self.folder.iterdir()):
            if p.name.startswith("."):
                continue
            claim = _read(p)
            if claim is None:
                if not self._unreadable_is_live(p):
                    out.append(p.name)
            elif not claim.holder_alive(here, now):
                out.append(p.name)
        return out

    def clear_stale(self) -> int:
        """Remove the claims of owners that are gone, and leftovers of interrupted claim writes; returns how many."""
        removed = 0
        for key in self.stale():
            self._move_aside(self.folder / key, self.holder(key))
            removed += 1
        if self.folder.is_dir():
            cutoff = time.time() - self.lease_seconds
            for p in self.folder.iterdir():
                if p.name.startswith(".") and p.name.endswith((_TEMP_SUFFIX, _ASIDE_SUFFIX)):
                    try:
                        if p.stat().st_mtime < cutoff:
                            p.unlink(missing_ok=True)
                            removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    def renew(self) -> None:
        """Extend the lease of every claim this table holds; a claim taken over meanwhile is dropped from it."""
        for key in self.held():
            with self._lock:             # a release waits, so it never races a rewrite back into place
                token = self._held.get(key)
                if token is not None:
                    self._renew_one(key, token)

    def _renew_one(self, key: str, token: str) -> None:
        path = self.folder / key
        current = _read(path)
        if current is None or current.token != token:
            self._held.pop(key, None)
            log.warning("the claim on cache entry %s was taken over (%s); it may be computed twice", key,
                        f"now held by {current.owner.host} pid {current.owner.pid}" if current else "removed")
            return
        current.expires = time.time() + self.lease_seconds
        current.lease_seconds = self.lease_seconds
        tmp = self.folder / f".{key}.{token}.renew{_TEMP_SUFFIX}"
        try:
            tmp.write_text(current.to_json(), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("cannot renew the claim on cache entry %s: %s", key, exc)

    # ---- internals
    def _new_claim(self, key: str) -> Claim:
        now = time.time()
        return Claim(key=key, owner=self.owner, token=uuid.uuid4().hex, acquired=now,
                     expires=now + self.lease_seconds, lease_seconds=self.lease_seconds)

    def _create(self, path: Path, claim: Claim) -> bool:
        """Write the claim whole, then link it into place: False when a claim already exists there."""
        tmp = path.with_name(f".{path.name}.{claim.token}{_TEMP_SUFFIX}")
        tmp.write_text(claim.to_json(), encoding="utf-8")
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _unreadable_is_live(self, path: Path) -> bool:
        """A claim file that is not a record (an older SentiFlow's bare pid): live while younger than a lease."""
        try:
            return time.time() - path.stat().st_mtime < self.lease_seconds
        except FileNotFoundError:
            return False

    def _move_aside(self, path: Path, judged: Claim | None) -> None:
        """Remove the stale claim `judged` from `path`, putting back a fresh claim moved by mistake."""
        aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}{_ASIDE_SUFFIX}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return                      # someone else removed it first
        moved = _read(aside)
        if moved is not None and (judged is None or moved.token != judged.token):
            try:                        # it was replaced between our look and the move: it is not ours to drop
                os.link(aside, path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def _start_renewer(self) -> None:
        with self._lock:
            if self._renewer is not None and self._renewer.is_alive():
                return
            self._renewer = threading.Thread(target=self._renew_loop, name="sentiflow-claim-renewal", daemon=True)
            self._renewer.start()

    def _renew_loop(self) -> None:
        while True:
            self._wake.wait(self.lease_seconds / RENEWALS_PER_LEASE)
            self._wake.clear()
            with self._lock:
                if not self._held:
                    self._renewer = None
                    return
            self.renew()


_CURRENT: dict[int, Owner] = {}


def current_owner() -> Owner:
    """This process as a claim owner (looked up once per process)."""
    pid = os.getpid()
    if pid not in _CURRENT:
        _CURRENT[pid] = Owner.current()
    return _CURRENT[pid]


def _read(path: Path) -> Claim | None:
    try:
        return Claim.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def tag_owner_gone(tag: str) -> bool | None:
    """For a temporary file's owner tag (`Owner.tag`, or an older SentiFlow's bare pid): True when its process is
    gone, False while it lives, None when it belongs to another machine (its age decides then: `cache gc`)."""
    machine, _, pid = tag.rpartition("-")
    if not pid.isdigit():
        return None
    if machine and machine != current_owner().machine:
        return None
    return not pid_alive(int(pid))
