"""Prefect flow `extract`: a dataset or a folder of videos -> the feature cache, batch by batch.

Each batch is planned on the CPU (content hash + cache lookup, run in parallel), and only batches with work
left run `extractors.runner.ExtractionRunner` (the library the CLI uses), inside a global concurrency slot of
the host that runs the task: one limit per GPU (`<prefix>-<host>-cuda-<i>`, the task bound to the GPU whose
slot it holds) or one for the CPU. Tasks run on the flow's threads or on a Dask cluster
(`orchestration.task_runner`, flows/runners.py). Transient failures (CUDA out of memory, I/O hiccups) retry the
batch; a batch that still fails marks its files failed with the reason and the rest goes on. A progress
artifact follows the batches and a table artifact lists every file as done / cached / failed with reasons and
the worker that extracted it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from prefect import flow, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from flows import environment as settings
from flows.corpus import open_corpus
from flows.outcome import completed, failure_note, one_line, quiet_expected_failures
from flows.runners import submit, task_runner, worker_name
from pipeline.errors import SentiFlowError

quiet_expected_failures()   # expected failures in the flow-run log: one line, no traceback

TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.EMFILE, errno.ENFILE,
                    errno.ECONNRESET, errno.ECONNREFUSED}
# Failure texts worth a retry. Not "timed out": the runner's per-video time budget stops pathological files,
# and running those again only doubles the wait.
OWN_RUNNER = object()     # extract_media's default: open a task runner from orchestration.task_runner
SLOT_POLL_SECONDS = 2.0   # how often a task waiting for one of several GPUs' slots tries them again
TRANSIENT_MARKERS = ("cuda out of memory", "temporarily unavailable", "connection reset", "too many open files",
                     "database is locked", "cuda error: unspecified launch failure")

_local = threading.local()


class TransientBatchError(RuntimeError):
    """Some files of a batch failed for a reason that may pass (retried by Prefect)."""


def is_transient(exc: BaseException | str) -> bool:
    """True for failures worth retrying: timeouts, connection and resource hiccups, CUDA out of memory."""
    if isinstance(exc, TransientBatchError):
        return True
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    text = str(exc).lower()
    return any(m in text for m in TRANSIENT_MARKERS)


def _retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the state's exception, inspected only
        return is_transient(exc)
    return False


def _runner(config: dict[str, Any], cache: str, device: str, only: Sequence[str] | None):
    """This thread's ExtractionRunner for (config, cache, device, only), built once per thread."""
    from extractors.config import SentiFlowConfig
    from extractors.runner import ExtractionRunner
    from pipeline.cache import FeatureCache
    from pipeline.config import stable_hash
    from pipeline.system import resolve_device

    key = (stable_hash(config), cache, device, tuple(only or ()))
    runners = getattr(_local, "runners", None)
    if runners is None:
        runners = _local.runners = {}
    if key not in runners:
        runners[key] = ExtractionRunner(SentiFlowConfig.from_dict(config), FeatureCache(Path(cache), create=True),
                                        device=resolve_device(device), only=only)
    return runners[key]


@task(name="plan-batch", cache_policy=NO_CACHE)
def plan_batch(paths: list[str], extras: dict[str, dict[str, Any]], config: dict[str, Any], cache: str,
               only: list[str] | None) -> list[dict[str, Any]]:
    """Look up each file's entries (CPU only, `ExtractionRunner.plan`): fully cached files need no device slot."""
    return _runner(config, cache, "cpu", only).plan(paths, extras)


@task(name="extract-batch", cache_policy=NO_CACHE, retry_condition_fn=_retry_if_transient)
def extract_batch(paths: list[str], extras: dict[str, dict[str, Any]], config: dict[str, Any], cache: str,
                  device: str, only: list[str] | None, orchestration: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the library's extraction on one batch inside a device slot of the host running this task; outcomes as
    dicts, each naming the worker and device."""
    from prefect.runtime import task_run

    from pipeline.system import host_devices, host_name

    log = logging.getLogger("sentiflow.flows.extract")
    orch = settings.OrchestrationConfig.from_dict(orchestration, where="orchestration")
    devices = host_devices(device)
    _check_can_isolate(config)
    with device_slot(devices, orch) as dev:
        runner = _runner(_with_cpu_threads(config, dev, orch.device_slots_cpu), cache, dev, only)
        summary = runner.run(paths, progress=False, extras=extras)
    where = f"{host_name()} {worker_name()} {dev}"
    outcomes = [{**vars(o), "worker": where} for o in summary.items]
    transient = [o for o in outcomes if o["status"] == "failed" and is_transient(o["reason"] or _notes(o))]
    if transient and task_run.run_count <= orch.retries:
        names = ", ".join(Path(o["path"]).name for o in transient[:5])
        raise TransientBatchError(f"{len(transient)} file(s) failed transiently ({names}): "
                                  f"{transient[0]['reason'] or _notes(transient[0])}")
    log.info("batch of %d: %s", len(paths), ", ".join(f"{s} {sum(o['status'] == s for o in outcomes)}"
                                                    for s in ("done", "cached", "failed")))
    return outcomes


def _with_cpu_threads(config: dict[str, Any], device: str, cpu_slots: int) -> dict[str, Any]:
    """The config for one CPU slot: the host's cores shared among its slots, unless extraction.cpu_threads is set."""
    extraction = config.get("extraction", {})
    if device != "cpu" or cpu_slots <= 1 or extraction.get("cpu_threads") is not None:
        return config
    threads = max(1, (os.cpu_count() or 1) // cpu_slots)
    return {**config, "extraction": {**extraction, "cpu_threads": threads}}


def _check_can_isolate(config: dict[str, Any]) -> None:
    """A daemonic process (a Dask worker started with defaults) cannot start the isolated extraction child."""
    import multiprocessing

    from pipeline.config import ConfigError

    if config.get("extraction", {}).get("isolate", True) and multiprocessing.current_process().daemon:
        raise ConfigError("this task runs in a daemonic process (a Dask worker with default settings), which "
                          "cannot start the isolated extraction process: start the Dask workers with "
                          "DASK_DISTRIBUTED__WORKER__DAEMON=False (or set extraction.isolate: false)")


@contextlib.contextmanager
def device_slot(devices: list[str], orch: settings.OrchestrationConfig) -> Iterator[str]:
    """Hold a slot of one of `devices` (this host's) for the block; yields the device whose slot is held.

    Each device has its own global concurrency limit (`<prefix>-<host>-<device>`, created on first use with
    `device_slots_gpu` or `device_slots_cpu` slots); with several GPUs the first free one is taken. The slot is
    leased for `slot_lease_seconds` and renewed while held, so a dead host's slot comes free by itself.
    """
    from prefect.concurrency.sync import concurrency

    names = {}
    for dev in devices:
        names[dev] = settings.device_limit_name(orch.limit_prefix, dev)
        ensure_limit(names[dev], orch.device_slots_cpu if dev == "cpu" else orch.device_slots_gpu)
    hold = {"occupy": 1, "strict": True, "lease_duration": orch.slot_lease_seconds}
    if len(devices) == 1:
        with concurrency(names[devices[0]], timeout_seconds=orch.slot_timeout_seconds, **hold):
            yield devices[0]
        return
    deadline = time.monotonic() + orch.slot_timeout_seconds
    while True:
        for dev in devices:
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(concurrency(names[dev], max_retries=0, **hold))
                except Exception as exc:  # noqa: BLE001 - a busy limit answers 423; anything else is raised
                    if not _slot_busy(exc):
                        raise
                    continue
                yield dev
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no slot of {', '.join(names.values())} came free within "
                               f"{orch.slot_timeout_seconds:.0f} s (orchestration.slot_timeout_seconds)")
        time.sleep(SLOT_POLL_SECONDS)


def _slot_busy(exc: BaseException) -> bool:
    """True when a slot acquisition failed only because the limit is full (HTTP 423 Locked)."""
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    return getattr(response, "status_code", None) == 423


def _notes(outcome: dict[str, Any]) -> str:
    return "; ".join(f"{n}: {s}" for n, s in outcome.get("extractors", {}).items()
                     if s.startswith(("missing", "failed")))


def ensure_limit(name: str, slots: int) -> None:
    """Create the global concurrency limit `name` with `slots` slots unless it already exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
            except ObjectAlreadyExists:
                pass


def stage_rows(outcomes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seconds per stage (probe, decode, each extractor) summed over outcome dicts, costliest first."""
    from extractors.stages import merge

    total: dict[str, float] = {}
    for o in outcomes:
        merge(total, o.get("stages") or {})
    return [{"stage": k, "seconds": round(v, 3)} for k, v in sorted(total.items(), key=lambda kv: -kv[1])]


def log_failures(cache: str, failures: Sequence[tuple[str, str]]) -> None:
    """Append (path, reason) failures found before extraction to the cache's failures.jsonl, as the runner does."""
    from pipeline.cache import FeatureCache

    if not failures:
        return
    feature_cache = FeatureCache(Path(cache), create=True)
    for path, why in failures:
        feature_cache.log_failure({"path": path, "extractor": None, "reason": why})


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i: i + size] for i in range(0, len(items), size)]


def extract_media(paths: Sequence[str | Path], cache: str, config: dict[str, Any] | None = None, device: str = "auto",
                  only: list[str] | None = None, extras: dict[str, dict[str, Any]] | None = None,
                  orchestration: dict[str, Any] | None = None, artifact_prefix: str = "extract",
                  problems: Sequence[tuple[str, str]] = (), runner: Any = OWN_RUNNER) -> dict[str, Any]:
    """Inside a flow: plan and extract `paths` batch by batch as tasks; returns counts and per-file rows.

    `problems` are (expected path, reason) of files known to be absent (a dataset's labelled clips without media):
    like paths that do not exist, they are rows marked failed and records in the cache's failures.jsonl.
    `runner`: a task runner the calling flow already opened (`flows.runners.task_runner`, None for threads);
    by default one is opened from `orchestration.task_runner` for this extraction.
    """
    from extractors.config import SentiFlowConfig
    from pipeline.config import ConfigError
    from pipeline.media import discover_media
    from pipeline.system import DEVICE_SETTING

    orch = settings.OrchestrationConfig.from_dict(orchestration or {}, where="orchestration")
    cfg = SentiFlowConfig.from_dict(config or {})
    config = cfg.to_dict()
    if not DEVICE_SETTING.fullmatch(device):   # which devices exist is up to the host that runs each task
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    files, missing = discover_media(paths)
    unusable = [(str(path), why) for path, why in [*missing, *problems]]
    rows: list[dict[str, Any]] = [{"file": path, "status": "failed", "reason": why, "worker": ""}
                                  for path, why in unusable]
    log_failures(cache, unusable)
    size = orch.files_per_task
    batches = _batches([str(f) for f in files], max(1, size))
    total = max(1, len(files))
    progress_id = create_progress_artifact(progress=0.0, key=f"{artifact_prefix}-progress",
                                           description=f"{len(files)} file(s) in {len(batches)} batch(es)")
    finished = 0

    def advance(n: int) -> None:
        nonlocal finished
        finished += n
        update_progress_artifact(artifact_id=progress_id, progress=100.0 * finished / total)

    extras = extras or {}
    opened = task_runner(orch.task_runner) if runner is OWN_RUNNER else contextlib.nullcontext(runner)
    with opened as tasks_on:
        planned, extracted = _plan_and_extract(tasks_on, batches, extras, config, cache, device, only, orch, advance)
    rows += planned
    rows.sort(key=lambda r: r["file"])
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "cached", "failed")}
    workers = sorted({r["worker"] for r in rows if r.get("worker")})
    create_table_artifact(table=rows, key=f"{artifact_prefix}-summary",
                          description=f"{counts['done']} done, {counts['cached']} cached, {counts['failed']} failed "
                                      f"of {len(rows)} into cache {cache}, device {device}, "
                                      f"{len(workers)} worker(s) (extractors: "
                                      f"{', '.join(only or cfg.extraction.extractors)})")
    stages = stage_rows(extracted)
    if stages:
        create_table_artifact(table=stages, key=f"{artifact_prefix}-stages",
                              description=f"seconds per stage over the {len(extracted)} file(s) extracted, "
                                          f"device {device}")
    return {"counts": counts, "rows": rows, "cache": cache, "device": device, "workers": workers, "stages": stages}


def _plan_and_extract(runner: Any, batches: list[list[str]], extras: dict[str, dict[str, Any]],
                      config: dict[str, Any], cache: str, device: str, only: list[str] | None,
                      orch: settings.OrchestrationConfig, advance: Any
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Plan every batch, extract those with work left (on `runner`'s workers): one summary row per file, and the
    outcome dicts of the files extracted (for the stage table)."""
    rows: list[dict[str, Any]] = []
    extracted: list[dict[str, Any]] = []
    runner_task = extract_batch.with_options(retries=orch.retries, retry_delay_seconds=orch.retry_delay_seconds)
    plan_futures = {submit(runner, plan_batch, paths=b, extras=extras, config=config, cache=cache, only=only): b
                    for b in batches}
    extract_futures = {}
    for fut in as_completed(list(plan_futures)):
        try:
            plan = fut.result()
        except Exception:  # noqa: BLE001 - planning only saves work: unplanned files go to extraction
            plan = [{"path": p, "cached": False} for p in plan_futures[fut]]
        for p in plan:
            if p["cached"]:
                rows.append({"file": p["path"], "status": "cached",
                             "reason": "; ".join(f"{n}: {s}" for n, s in p["extractors"].items()
                                                 if s.startswith("missing")), "worker": ""})
        todo = [p["path"] for p in plan if not p["cached"]]
        advance(len(plan) - len(todo))
        if todo:
            f = submit(runner, runner_task, paths=todo, extras={k: extras[k] for k in todo if k in extras},
                       config=config, cache=cache, device=device, only=only, orchestration=orch.to_dict())
            extract_futures[f] = todo
    for fut in as_completed(list(extract_futures)):
        todo = extract_futures[fut]
        try:
            outcomes = fut.result()
        except Exception as exc:  # noqa: BLE001 - one failed batch never stops the others
            outcomes = [{"path": p, "status": "failed", "reason": f"batch failed: {exc}", "extractors": {}}
                        for p in todo]
        extracted.extend(outcomes)
        for o in outcomes:
            rows.append({"file": o["path"], "status": o["status"], "reason": o.get("reason") or _notes(o),
                         "worker": o.get("worker", "")})
        advance(len(todo))
    return rows, extracted


class NothingExtracted(SentiFlowError, RuntimeError):
    """Not one file of an extraction run could be extracted (the message gives the first reasons)."""


def failed_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of an extraction summary whose file failed."""
    return [r for r in rows if r["status"] == "failed"]


@flow(name="extract", log_prints=True)
def extract(dataset: str = "folder", root: str | None = None, cache: str | None = None, config: str | None = None,
            device: str = "auto", only: list[str] | None = None, folds: str | None = None,
            language: str | None = None, orchestration: dict[str, Any] | None = None) -> dict[str, int]:
    """Extract features of a dataset (mosi, mosei, moseas, urfunny, mmsa) or a folder of videos into the cache.
    No splits are read (`folds` is accepted for symmetry with train and evaluate, and not used)."""
    from extractors.config import load_config
    from pipeline.cache import FAILURE_LOG

    ds = open_corpus(dataset, root, language=language)
    cache_path = str(settings.cache_dir(cache))
    result = extract_media(ds.media, cache_path, load_config(settings.config_path(config)).to_dict(), device, only,
                           ds.extras(), orchestration, problems=ds.problems)
    counts = result["counts"]
    summary = f"{counts['done']} done, {counts['cached']} cached, {counts['failed']} failed -> {cache_path}"
    print(summary)
    failed = failed_rows(result["rows"])
    where = f"the extract-summary artifact and {Path(cache_path) / FAILURE_LOG}"
    if counts["done"] + counts["cached"] == 0:
        raise NothingExtracted(one_line(f"no file of {dataset} at {ds.root} could be extracted: "
                                        f"{failure_note(failed, where)}"))
    return completed(summary, failed, where, counts)
