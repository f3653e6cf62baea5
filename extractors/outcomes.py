"""What an extraction run did: one outcome per input (done, cached or failed, with reasons) and their summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.files import printable

DONE, CACHED, FAILED = "done", "cached", "failed"


@dataclass
class ItemOutcome:
    """What happened to one input: status, content hash, per-extractor results and reasons."""

    path: str
    status: str = FAILED
    media_hash: str = ""
    reason: str = ""
    extractors: dict[str, str] = field(default_factory=dict)   # name -> done|cached|missing: why|failed: why
    keys: dict[str, str] = field(default_factory=dict)          # name -> cache key
    seconds: float = 0.0
    duration: float = 0.0
    new_entries: int = 0                                        # entries this run wrote (ok or missing)
    warnings: list[str] = field(default_factory=list)           # made, but flawed: truncated media, doubtful ASR

    def notes(self) -> str:
        """Short human summary of missing/failed modalities and of warnings about what was made."""
        parts = [f"{n}: {s}" for n, s in self.extractors.items() if s.startswith(("missing", "failed"))]
        return "; ".join(list(dict.fromkeys(self.warnings)) + parts)


@dataclass
class ExtractionSummary:
    """All outcomes of one extraction run."""

    items: list[ItemOutcome] = field(default_factory=list)
    extractors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        """How many items ended with `status`."""
        return sum(1 for i in self.items if i.status == status)

    @property
    def any_succeeded(self) -> bool:
        """True when at least one input produced or reused features."""
        return any(i.status in (DONE, CACHED) for i in self.items)

    def table(self) -> str:
        """A fixed-width table of every item and a totals line."""
        rows = [("status", "file", "notes")]
        for it in self.items:
            rows.append((it.status, _short(printable(it.path)), printable(it.reason or it.notes())))
        w0 = max(len(r[0]) for r in rows)
        w1 = min(60, max(len(r[1]) for r in rows))
        lines = [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
        lines.append(f"{self.count(DONE)} done, {self.count(CACHED)} cached, {self.count(FAILED)} failed "
                     f"of {len(self.items)} in {self.seconds:.1f} s")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"seconds": self.seconds, "extractors": self.extractors,
                "items": [vars(i) for i in self.items]}


def _short(path: str) -> str:
    return path if len(path) <= 60 else "..." + path[-57:]
