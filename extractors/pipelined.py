"""The pipelined run's feed: files probed and hashed in a background thread ahead of compute (a bounded queue),
then grouped into batches of similar length so batched extractors pad little.

`ExtractionRunner.run` uses it when `extraction.pipeline` is on (the default). The probe and hash of each file
travel with its extras (under `PREPARED`) to the batch, in this process or in the isolated child, which then does
not read the file again for them; a file whose probe failed here carries nothing and is probed again there, so its
failure is recorded exactly as the one-at-a-time path records it. Compute stays where it was (the isolated child,
one process serving every batch with its models loaded once; a crash or time-out restarts only it).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TypeVar

from extractors import stages
from pipeline.cache import hash_file
from pipeline.media import MediaInfo, probe

PREPARED = "_prepared"          # extras key: {"info": MediaInfo, "media_hash": str} worked out ahead
QUEUE_POLL_SECONDS = 0.2

T = TypeVar("T")


@dataclass
class Probed:
    """One file as the feed saw it: its position in the run, and its probe and hash (None when they failed)."""

    index: int
    path: Path
    info: MediaInfo | None = None
    media_hash: str = ""

    @property
    def length(self) -> float:
        """Seconds of media it holds (0 when unknown), the key batches are bucketed by."""
        return self.info.budget_seconds if self.info is not None else 0.0


def read_ahead(items: Iterable[T], depth: int, name: str = "sentiflow-read-ahead") -> Iterator[T]:
    """`items` produced by a background thread at most `depth` ahead of the consumer (decoders, probes and hashing
    release the GIL, so they overlap the consumer's compute). An exception in the thread is raised here, in order;
    closing the iterator stops the thread and closes `items`."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(x: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=QUEUE_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(items)
        try:
            for x in it:
                if not put(("item", x)):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(("error", exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(5)


def _probed(index: int, path: Path) -> Probed:
    """A file's probe and hash (none when either fails: the batch probes it again and records why)."""
    item = Probed(index, path)
    with stages.timed(stages.PREPARE):
        try:
            info = probe(path)         # first: it refuses a FIFO, which hashing would block on
            item.info, item.media_hash = info, hash_file(path)
        except Exception:  # noqa: BLE001 - see above
            item.info, item.media_hash = None, ""
    return item


def prefetch(files: Sequence[Path], depth: int) -> Iterator[Probed]:
    """`files` probed and hashed by a background thread, at most `depth` ahead of the consumer."""
    return read_ahead((_probed(i, p) for i, p in enumerate(files)), depth, "sentiflow-prefetch")


def length_batches(probed: Iterable[Probed], batch_size: int, window: int) -> Iterator[list[Probed]]:
    """Batches of `batch_size` files, sorted by length within each run of `window` consecutive files."""
    bs = max(1, batch_size)
    buf: list[Probed] = []

    def cut() -> Iterator[list[Probed]]:
        ordered = sorted(buf, key=lambda p: (p.length, p.index))
        for i in range(0, len(ordered), bs):
            yield ordered[i: i + bs]

    for p in probed:
        buf.append(p)
        if len(buf) >= max(bs, window):
            yield from cut()
            buf = []
    if buf:
        yield from cut()


def feed(files: Sequence[Path], extras: dict[str, dict[str, Any]], batch_size: int, prefetch_files: int,
         bucket_batches: int) -> Iterator[tuple[list[Path], dict[str, dict[str, Any]]]]:
    """(paths, extras) per batch: files probed ahead, bucketed by length, each carrying its probe and hash."""
    window = max(1, batch_size) * max(1, bucket_batches)
    for batch in length_batches(prefetch(files, max(prefetch_files, window)), batch_size, window):
        sub: dict[str, dict[str, Any]] = {}
        for p in batch:
            sub[str(p.path)] = dict(extras.get(str(p.path), {}))
            if p.info is not None:
                sub[str(p.path)][PREPARED] = {"info": p.info, "media_hash": p.media_hash}
        yield [p.path for p in batch], sub


def split_prepared(extras: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A file's extras without the feed's probe and hash, and those (None when it carries none)."""
    rest = dict(extras)
    return rest, rest.pop(PREPARED, None)
