"""Run extraction batches in a child process with a time budget and a memory ceiling.

A pathological file (a decoder that spins, a frame size that explodes memory) is cut off and recorded as
failed with the reason, instead of stalling or killing a batch of thousands. Work the child finished before
it was stopped is already committed to the cache, so nothing is lost.

The child fixes glibc's mmap threshold (`extraction.malloc_mmap_threshold`, pipeline/system.py) first thing, before
torch and the decoders are imported, so its memory does not grow with video length through heap fragmentation
(face stage, 1 vs 2 minutes of video: +184 MiB peak with glibc's dynamic threshold, +18 MiB with 128 KiB); the
runner it builds also trims the heap after each extractor (`extraction.trim_heap_after_extractor`).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from pipeline.system import MAX_MMAP_THRESHOLD, set_mmap_threshold

POLL_SECONDS = 0.2
PARENT_POLL_SECONDS = 0.5         # how often the child checks that its parent still lives
STARTUP_TIMEOUT_SECONDS = 600.0   # importing torch and building extractors; not charged to any video


@dataclass
class Interrupted:
    """Why a child was stopped before it answered."""

    reason: str


def _rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when unknown)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return 0


def _exit_with_parent(parent_pid: int) -> None:
    """Stop this process as soon as its parent is gone (killed, even with SIGKILL): an orphan would otherwise
    compute its whole batch for nobody. Entries it already committed stay valid; its claims and temporary
    files are cleaned by the next run."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(3)

    threading.Thread(target=watch, name="sentiflow-parent-watch", daemon=True).start()


def _child_main(conn: Connection, entry: str, args: tuple[Any, ...], mmap_threshold: int | None,
                parent_pid: int | None = None) -> None:
    """Child process: fix the heap, build the handler `entry(*args)` once, answer messages until None arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides when to stop
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    if mmap_threshold is not None and 0 < mmap_threshold <= MAX_MMAP_THRESHOLD:
        # before torch and the decoders load: every later allocation follows the fixed threshold (pipeline.system)
        set_mmap_threshold(mmap_threshold)
    module, name = entry.split(":")
    handler = getattr(importlib.import_module(module), name)(*args)   # imports the heavy code now
    try:
        conn.send("ready")
        while True:
            msg = conn.recv()
            if msg is None:
                break
            conn.send(handler(msg))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone (killed or interrupted): stop quietly, committed entries stay valid


class IsolatedWorker:
    """One child process serving requests with a handler it built once; restarted after it is stopped.

    `entry` names a factory "module:function" that the child imports and calls with `args` to get the handler
    (a callable from one message to one picklable answer); this module never imports the code it isolates.
    """

    def __init__(self, entry: str, args: tuple[Any, ...], mmap_threshold: int | None = None) -> None:
        self.entry, self.args, self.mmap_threshold = entry, args, mmap_threshold
        self.proc: mp.process.BaseProcess | None = None
        self.conn: Connection | None = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")       # no fork: CUDA and decoder threads do not survive fork
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main,
                                args=(child, self.entry, self.args, self.mmap_threshold, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if parent.poll(POLL_SECONDS):
                try:
                    if parent.recv() == "ready":
                        return
                except EOFError:
                    break
            if not self.proc.is_alive():
                break
        reason = self._crash_reason() if not self.proc.is_alive() else "did not start in time"
        self.kill()
        raise RuntimeError(f"extraction worker could not start: {reason}")

    def run(self, message: Any, budget_s: float, max_rss_bytes: int) -> Any:
        """The child's answer to `message`, or an `Interrupted` saying why the child had to be stopped."""
        if self.proc is None or not self.proc.is_alive():
            try:
                self._start()
            except RuntimeError as exc:
                return Interrupted(str(exc))
        assert self.proc is not None and self.conn is not None
        rss = _rss_bytes(self.proc.pid or 0)
        if max_rss_bytes and rss > max_rss_bytes:
            return self._stopped(f"exceeded the memory limit before any work: the extraction process holds "
                                 f"{rss / 2**30:.2f} GiB > {max_rss_bytes / 2**30:.2f} GiB (extraction.max_memory_gib)")
        self.conn.send(message)
        start = time.monotonic()
        while True:
            if self.conn.poll(POLL_SECONDS):
                try:
                    return self.conn.recv()
                except EOFError:
                    return self._stopped(self._crash_reason())
            if not self.proc.is_alive():
                return self._stopped(self._crash_reason())
            elapsed = time.monotonic() - start
            if elapsed > budget_s:
                return self._stopped(f"timed out after {budget_s:.0f} s (per-video limit "
                                     "extraction.timeout_seconds + timeout_per_media_second x duration)")
            rss = _rss_bytes(self.proc.pid or 0)
            if max_rss_bytes and rss > max_rss_bytes:
                return self._stopped(f"exceeded the memory limit: {rss / 2**30:.1f} GiB > "
                                     f"{max_rss_bytes / 2**30:.1f} GiB (extraction.max_memory_gib)")

    def _crash_reason(self) -> str:
        code = self.proc.exitcode if self.proc is not None else None
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"extraction process died ({name}{', likely out of memory' if name == 'SIGKILL' else ''})"
        return f"extraction process exited unexpectedly (code {code})"

    def _stopped(self, reason: str) -> Interrupted:
        self.kill()
        return Interrupted(reason)

    def kill(self) -> None:
        """Stop the child now."""
        if self.proc is not None and self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.join(5)
        self.proc, self.conn = None, None

    def close(self) -> None:
        """Ask the child to finish, then make sure it is gone."""
        if self.proc is not None and self.proc.is_alive() and self.conn is not None:
            try:
                self.conn.send(None)
                self.proc.join(10)
            except (OSError, BrokenPipeError):
                pass
        self.kill()
