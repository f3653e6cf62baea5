"""Run the configured extractors over media files into the feature cache, one bad file never stopping a batch."""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from tqdm import tqdm

from extractors import pipelined, stages
from extractors.base import Extractor, Features, FeatureUnavailable, MediaItem
from extractors.config import ExtractionConfig, SentiFlowConfig
from extractors.isolation import Interrupted, IsolatedWorker
from extractors.keys import item_key
from extractors.outcomes import CACHED, DONE, FAILED, ExtractionSummary, ItemOutcome
from extractors.registry import build_extractor, get_extractor_class
from pipeline.cache import STATUS_MISSING, CacheEntry, CacheError, FeatureCache, hash_file
from pipeline.config import ConfigError
from pipeline.errors import SentiFlowError, os_reason
from pipeline.media import MediaError, discover_media, probe
from pipeline.system import MAX_MMAP_THRESHOLD, set_mmap_threshold, trim_heap

log = logging.getLogger(__name__)

CLAIM_POLL_SECONDS = 0.2   # how often a process re-checks an entry another process is computing


def apply_heap_settings(config: ExtractionConfig) -> bool:
    """Fix glibc's mmap threshold to `config.malloc_mmap_threshold` in this process; True if it took effect.

    False when the setting is None or the C library is not glibc (detected in pipeline/system.py); see there and
    `ExtractionConfig.malloc_mmap_threshold` for why (heap fragmentation grows memory with video length). Each
    extractor's batch then runs under `mmap_threshold_for` its modality.
    """
    unknown = sorted(set(config.malloc_mmap_modalities) - set(MODALITIES))
    if unknown:
        raise ConfigError(f"extraction.malloc_mmap_modalities: {', '.join(map(repr, unknown))} not one of "
                          f"{', '.join(MODALITIES)}")
    n = config.malloc_mmap_threshold
    if n is None:
        return False
    if not 0 < n <= MAX_MMAP_THRESHOLD:
        raise ConfigError(f"extraction.malloc_mmap_threshold must be null or 1..{MAX_MMAP_THRESHOLD} bytes, got {n}")
    if not 0 < config.malloc_mmap_threshold_others <= MAX_MMAP_THRESHOLD:
        raise ConfigError(f"extraction.malloc_mmap_threshold_others must be 1..{MAX_MMAP_THRESHOLD} bytes, got "
                          f"{config.malloc_mmap_threshold_others}")
    return set_mmap_threshold(n)


MODALITIES = ("audio", "text", "visual", "multimodal")   # the values of Extractor.modality


def mmap_threshold_for(config: ExtractionConfig, modality: str) -> int | None:
    """The glibc mmap threshold an extractor of `modality` runs under (None: glibc's dynamic threshold)."""
    if config.malloc_mmap_threshold is None:
        return None
    if modality in config.malloc_mmap_modalities:
        return config.malloc_mmap_threshold
    return config.malloc_mmap_threshold_others


class ExtractionRunner:
    """Holds built extractors and a cache; `run` processes paths batch by batch."""

    def __init__(self, config: SentiFlowConfig, cache: FeatureCache, device: str | torch.device = "cpu",
                 only: Sequence[str] | None = None) -> None:
        self.config = config
        self.heap_tuned = apply_heap_settings(config.extraction)
        self.heap_threshold = config.extraction.malloc_mmap_threshold if self.heap_tuned else None
        self.cache = cache
        if not config.extraction.claim_lease_seconds > 0:
            raise ConfigError("extraction.claim_lease_seconds must be > 0 (seconds a claim lasts unless renewed), "
                              f"got {config.extraction.claim_lease_seconds}")
        cache.claims.lease_seconds = config.extraction.claim_lease_seconds
        self.only = list(only) if only else None
        self.device = torch.device(device)
        threads = config.extraction.cpu_threads
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"extraction.cpu_threads must be null or >= 1, got {threads}")
            if self.device.type == "cpu":
                torch.set_num_threads(threads)
        names = list(only) if only else list(config.extraction.extractors)
        for n in names:
            if get_extractor_class(n).keyed_by == "segment":  # fail fast on an unknown or import-only name
                raise ConfigError(f"extractor {n!r} holds features imported with `sentiflow import`: they cannot "
                                  "be extracted from media (import the clips' features, or use extractors of media)")
        built: dict[str, Extractor] = {}

        def deps_of(n: str) -> tuple[str, ...]:
            """An extractor's dependencies as configured (an instance may depend on its configured sources)."""
            if n not in built:
                built[n] = build_extractor(n, config.extraction.options.get(n), config.media, device)
            return tuple(built[n].depends_on)

        self.extractors: list[Extractor] = [built[n] for n in dependency_order(names, deps_of)]
        self.riders: dict[str, list[Extractor]] = {}      # host name -> extractors computed in its pass
        if config.extraction.decode_once:
            for ex in self.extractors:
                if ex.rides_on and ex.rides_on in built and built[ex.rides_on] in self.extractors:
                    built[ex.rides_on].attach_rider(ex)
                    self.riders.setdefault(ex.rides_on, []).append(ex)

    def key_for(self, extractor: Extractor, media_hash: str, item: MediaItem | None = None,
                upstream: dict[str, str] | None = None) -> str:
        """The cache key of `extractor`'s output for the given media (and the item's other inputs)."""
        return item_key(extractor, media_hash, item, upstream)

    def plan(self, paths: Sequence[str | os.PathLike], extras: dict[str, dict[str, Any]] | None = None
             ) -> list[dict[str, Any]]:
        """Which files are fully cached already, computing nothing: per path {"path", "cached"} and, for a cached
        file, its per-extractor states. A file whose keys cannot be worked out (unreadable, not media) counts as
        not cached, so `run` decides for it: a plan can only save work, never skip any."""
        plans: list[dict[str, Any]] = []
        for p in paths:
            plan: dict[str, Any] = {"path": str(p), "cached": False}
            plans.append(plan)
            try:
                info = probe(p, scan_packets=False)     # first: it refuses a FIFO, which hashing would block on
                item = MediaItem(path=str(p), media_hash=hash_file(p), info=info,
                                 extras=dict((extras or {}).get(str(p), {})))
                keys: dict[str, str] = {}
                states: dict[str, str] = {}
                for ex in self.extractors:
                    keys[ex.name] = self.key_for(ex, item.media_hash, item, keys)
                    entry = self.cache.get(keys[ex.name])
                    if entry is None or entry.problem() is not None:
                        break
                    states[ex.name] = _cached_state(entry)
                else:
                    plan.update(cached=True, extractors=states)
            except (OSError, SentiFlowError, ValueError, RecursionError):
                continue
        return plans

    def run(self, paths: Iterable[str | os.PathLike], progress: bool = True,
            extras: dict[str, dict[str, Any]] | None = None,
            on_item: Callable[[ItemOutcome], None] | None = None) -> ExtractionSummary:
        """Extract features for every media file under `paths` into the cache."""
        start = time.perf_counter()
        stages.take()     # this run's stage seconds only
        self.cache.check_writable()
        self.cache.clean_stale_temp()
        files, unusable = discover_media(paths)
        outcomes = [ItemOutcome(path=p, reason=why) for p, why in unusable]
        summary = ExtractionSummary(items=list(outcomes), extractors=[e.name for e in self.extractors])
        for o in outcomes:
            self.cache.log_failure({"path": o.path, "extractor": None, "reason": o.reason})
        ex = self.config.extraction
        bs = max(1, ex.batch_size)
        worker = self._worker() if ex.isolate else None
        bar = tqdm(total=len(files), unit="file", desc="extract", disable=not progress, dynamic_ncols=True)
        if ex.pipeline:     # probed ahead in a background thread, bucketed by length (extractors/pipelined.py)
            batches = pipelined.feed(files, extras or {}, bs, ex.prefetch_files, ex.bucket_batches)
        else:
            batches = ((files[b: b + bs], extras or {}) for b in range(0, len(files), bs))
        try:
            for chunk, chunk_extras in batches:
                if worker is not None:
                    results = self._run_isolated(worker, chunk, chunk_extras)
                else:
                    results = self.run_batch(chunk, chunk_extras)
                summary.items.extend(results)
                for r in results:
                    if on_item:
                        on_item(r)
                bar.update(len(chunk))
                bar.set_postfix(failed=sum(1 for i in summary.items if i.status == FAILED))
        finally:
            bar.close()
            if worker is not None:
                worker.close()
        order = {str(p): i for i, p in enumerate(files)}
        summary.items.sort(key=lambda o: order.get(o.path, -1))   # input order, however the batches were cut
        for o in summary.items:
            stages.merge(summary.stages, o.stages)
        stages.merge(summary.stages, stages.take())    # work done in this process (the feed's probes)
        summary.seconds = time.perf_counter() - start
        return summary

    def _worker(self) -> IsolatedWorker:
        args = (self.config.to_dict(), str(self.cache.root), str(self.device), self.only)
        return IsolatedWorker(f"{__name__}:batch_server", args, self.config.extraction.malloc_mmap_threshold)

    def _budget(self, paths: list[Path], extras: dict[str, dict[str, Any]] | None = None) -> float:
        ex = self.config.extraction
        total = 0.0
        for p in paths:
            _, pre = pipelined.split_prepared((extras or {}).get(str(p), {}))
            try:
                info = pre["info"] if pre else probe(p)
                seconds = info.budget_seconds   # what the packets hold, not what a header claims
            except MediaError:
                seconds = 0.0
            total += ex.timeout_seconds + ex.timeout_per_media_second * seconds
        return total

    def _run_isolated(self, worker: IsolatedWorker, paths: list[Path],
                      extras: dict[str, dict[str, Any]]) -> list[ItemOutcome]:
        """Run a batch in the child; if it must be stopped, retry item by item to single out the culprit."""
        limit = int(self.config.extraction.max_memory_gib * 2**30)
        sub_extras = {str(p): extras.get(str(p), {}) for p in paths}
        res = worker.run(([str(p) for p in paths], sub_extras), self._budget(paths, sub_extras), limit)
        if not isinstance(res, Interrupted):
            return [ItemOutcome(**d) for d in res]
        if len(paths) == 1:
            out = ItemOutcome(path=str(paths[0]), reason=res.reason)
            self.cache.log_failure({"path": out.path, "extractor": None, "reason": res.reason})
            return [out]
        outs: list[ItemOutcome] = []
        for p in paths:
            outs.extend(self._run_isolated(worker, [p], extras))
        return outs

    def _prepare(self, path: Path, extras: dict[str, dict[str, Any]]) -> tuple[MediaItem | None, ItemOutcome]:
        outcome = ItemOutcome(path=str(path))
        item_extras, pre = pipelined.split_prepared(extras.get(str(path), {}))
        try:
            with stages.timed(stages.PREPARE):
                info = pre["info"] if pre else probe(path)
                media_hash = pre["media_hash"] if pre else hash_file(path)
            outcome.media_hash = media_hash
            outcome.duration = info.duration
            if info.truncated:
                outcome.warnings.append(info.truncation_note)
            self.cache.put_media_record(media_hash, {"sources": [os.path.abspath(path)], "probe": info.to_dict()})
        except (MediaError, CacheError) as exc:
            outcome.reason = str(exc)
            return None, outcome
        except OSError as exc:
            outcome.reason = f"{path}: cannot read ({os_reason(exc)})"
            return None, outcome
        return MediaItem(path=str(path), media_hash=media_hash, info=info, extras=item_extras), outcome

    def run_batch(self, paths: list[Path], extras: dict[str, dict[str, Any]]) -> list[ItemOutcome]:
        """Process one batch in this process (probe, hash, every extractor, cache writes)."""
        t0 = time.perf_counter()
        prepared = [self._prepare(p, extras) for p in paths]
        items = [(it, out) for it, out in prepared if it is not None]
        for extractor in self.extractors:
            todo: list[tuple[MediaItem, ItemOutcome, str]] = []
            waiting: list[tuple[MediaItem, ItemOutcome, str]] = []
            for item, out in items:
                try:
                    key = self.key_for(extractor, item.media_hash, item, out.keys)
                    out.keys[extractor.name] = key
                    entry = self._served(key)
                    if entry is not None:
                        out.extractors[extractor.name] = _cached_state(entry)
                        out.warnings.extend(f"{extractor.name}: {w}" for w in entry.meta.get("warnings", []))
                        continue
                    why = extractor.missing_reason(item)
                    if why:
                        self._store_missing(extractor, item, key, why)
                        out.extractors[extractor.name] = f"missing: {why}"
                        out.new_entries += 1
                        continue
                    if not self.cache.claim(key):
                        waiting.append((item, out, key))   # another process is computing (or just committed) it
                        continue
                except (SentiFlowError, OSError, ValueError, RecursionError) as exc:
                    # this file's own problem (a sidecar that cannot be read, a full disk): the others go on
                    self._fail(extractor, item, out, _reason_of(exc))
                    continue
                todo.append((item, out, key))
            for item, out, _ in todo:
                self._attach_upstream(extractor, item, out)
                self._ask_riders(extractor, item, out)
            if todo:
                self._tune_heap_for(extractor)
            try:
                if todo:
                    with stages.timed(extractor.name):
                        self._extract(extractor, todo)
            finally:
                for _, _, key in todo:
                    self.cache.release(key)
            if waiting:
                self._wait_for_others(extractor, waiting)
            if todo and self.config.extraction.trim_heap_after_extractor:
                trim_heap()   # hand this stage's freed buffers back before the next stage allocates its own
        for _, out in items:
            states = list(out.extractors.values())
            if states and all(s.startswith("failed") for s in states):
                out.status, out.reason = FAILED, "every extractor failed: " + out.notes()
            elif out.new_entries:
                out.status = DONE
            elif states:
                out.status = CACHED
            else:
                out.status = DONE
        dt = (time.perf_counter() - t0) / max(1, len(paths))
        shares = {k: v / max(1, len(paths)) for k, v in stages.take().items()}
        for _, out in prepared:
            out.seconds = dt
            out.stages = dict(shares)
            if out.status == FAILED:
                self.cache.log_failure({"path": out.path, "media_hash": out.media_hash, "extractor": None,
                                        "reason": out.reason})
        return [out for _, out in prepared]

    def _tune_heap_for(self, extractor: Extractor) -> None:
        """Switch glibc's mmap threshold to the one `extractor`'s modality runs under (when the heap is tuned)."""
        n = mmap_threshold_for(self.config.extraction, extractor.modality) if self.heap_tuned else None
        if n is not None and n != self.heap_threshold:
            set_mmap_threshold(n)
            self.heap_threshold = n

    def _served(self, key: str) -> CacheEntry | None:
        """The committed entry for `key` if it is sound; a corrupt one is removed (and so recomputed)."""
        try:
            entry = self.cache.get(key)
            problem = entry.problem() if entry is not None else None
        except CacheError as exc:       # unreadable metadata
            entry, problem = None, str(exc)
        if problem is not None:
            log.warning("cache entry %s is corrupt (%s): recomputing it", key, problem)
            self.cache.remove(key)
            return None
        return entry

    def _fail(self, extractor: Extractor, item: MediaItem, out: ItemOutcome, reason: str) -> None:
        """Record that `extractor` failed on `item`, in the outcome and the failure log."""
        out.extractors[extractor.name] = f"failed: {reason}"
        self.cache.log_failure({"path": item.path, "media_hash": item.media_hash, "extractor": extractor.name,
                                "reason": reason})

    def _extract(self, extractor: Extractor, todo: list[tuple[MediaItem, ItemOutcome, str]]) -> None:
        batch = [t[0] for t in todo]
        try:
            results: list[Features | Exception] = extractor.extract(batch)
        except Exception:  # noqa: BLE001 - isolate the bad item by retrying one at a time
            if len(batch) == 1:
                results = [_as_failure()]
            else:
                results = []
                for item in batch:
                    try:
                        results.extend(extractor.extract([item]))
                    except Exception:  # noqa: BLE001
                        results.append(_as_failure())
        for (item, out, key), res in zip(todo, results):
            if isinstance(res, Features):
                meta = {"extractor": extractor.name, "version": extractor.version, "modality": extractor.modality,
                        "config": extractor.cache_config(), "media_hash": item.media_hash, "source": item.path,
                        **res.meta}
                if item.info.truncated:
                    meta["media_truncated"] = item.info.truncation_note
                try:
                    self.cache.put(key, res.tensors, meta)
                    out.extractors[extractor.name] = DONE
                    out.new_entries += 1
                    out.warnings.extend(f"{extractor.name}: {w}" for w in res.meta.get("warnings", []))
                except CacheError as exc:
                    self._fail(extractor, item, out, str(exc))
            elif isinstance(res, FeatureUnavailable):
                try:
                    self._store_missing(extractor, item, key, str(res))
                    out.extractors[extractor.name] = f"missing: {res}"
                    out.new_entries += 1
                except CacheError as exc:
                    self._fail(extractor, item, out, str(exc))
            else:
                self._fail(extractor, item, out, _reason_of(res))

    def _ask_riders(self, host: Extractor, item: MediaItem, out: ItemOutcome) -> None:
        """Name in `item.extras["ride"]` the riders of `host` whose entry for this item is still to compute."""
        wanted = []
        for rider in self.riders.get(host.name, ()):
            try:
                key = self.key_for(rider, item.media_hash, item, out.keys)
                if self._served(key) is None and not rider.missing_reason(item):
                    wanted.append(rider.name)
            except (SentiFlowError, OSError, ValueError):
                continue                   # the rider's own loop reports its problem with this file
        item.extras["ride"] = wanted

    def _attach_upstream(self, extractor: Extractor, item: MediaItem, out: ItemOutcome) -> None:
        """Hand the extractor the cached entries of the extractors it depends on."""
        for dep in extractor.depends_on:
            dep_key = out.keys.get(dep)
            item.extras.setdefault("upstream", {})[dep] = self._served(dep_key) if dep_key else None

    def _wait_for_others(self, extractor: Extractor, waiting: list[tuple[MediaItem, ItemOutcome, str]]) -> None:
        """Wait for entries another live process is computing; compute those whose claimant died."""
        pending = list(waiting)
        while pending:
            still = []
            for item, out, key in pending:
                entry = self._served(key)
                if entry is not None:
                    out.extractors[extractor.name] = _cached_state(entry)
                elif self.cache.claim(key):
                    try:
                        self._attach_upstream(extractor, item, out)
                        self._extract(extractor, [(item, out, key)])
                    finally:
                        self.cache.release(key)
                else:
                    still.append((item, out, key))
            pending = still
            if pending:
                time.sleep(CLAIM_POLL_SECONDS)

    def _store_missing(self, extractor: Extractor, item: MediaItem, key: str, why: str) -> None:
        meta = {"extractor": extractor.name, "version": extractor.version, "modality": extractor.modality,
                "config": extractor.cache_config(), "media_hash": item.media_hash, "source": item.path,
                "reason": why}
        self.cache.put(key, {}, meta, status=STATUS_MISSING)


def _cached_state(entry: CacheEntry) -> str:
    """An item's per-extractor state when the entry already exists: cached, or missing with the reason."""
    return CACHED if entry.status != STATUS_MISSING else f"missing: {entry.meta.get('reason', '')}"


def _reason_of(exc: BaseException) -> str:
    """An exception's message for a failure record (an OS error in words)."""
    if isinstance(exc, OSError) and not isinstance(exc, SentiFlowError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{os_reason(exc)}"
    if isinstance(exc, RecursionError):
        return "input is nested too deeply to read"
    return str(exc) or type(exc).__name__


def _as_failure() -> Exception:
    tb = traceback.format_exc(limit=2).strip().splitlines()
    return RuntimeError(tb[-1] if tb else "extractor crashed")


def dependency_order(names: list[str], deps_of: Callable[[str], Sequence[str]] | None = None) -> list[str]:
    """Order extractor names so each comes after the extractors it depends on (`deps_of`: per configured instance)."""
    ordered: list[str] = []

    def visit(n: str, stack: tuple[str, ...]) -> None:
        if n in ordered:
            return
        if n in stack:
            raise ValueError(f"extractor dependency cycle: {' -> '.join(stack + (n,))}")
        for dep in (deps_of(n) if deps_of else get_extractor_class(n).depends_on):
            visit(dep, stack + (n,))
        ordered.append(n)

    for n in names:
        visit(n, ())
    return ordered


def batch_server(config: dict[str, Any], cache_root: str, device: str,
                 only: list[str] | None) -> Callable[[tuple[list[str], dict[str, dict[str, Any]]]], list[dict[str, Any]]]:
    """The isolated child's handler: a runner built once, answering (paths, extras) with outcome dicts."""
    cfg = SentiFlowConfig.from_dict(config)
    cfg.extraction.isolate = False
    runner = ExtractionRunner(cfg, FeatureCache(cache_root), device=device, only=only)

    def handle(message: tuple[list[str], dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        paths, extras = message
        return [asdict(o) for o in runner.run_batch([Path(p) for p in paths], extras)]

    return handle
