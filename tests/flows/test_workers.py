"""Runs over several process workers on one pool, and runs that survive their workers (issue #24).

A real server and process workers (tests/helpers/prefect_stack.py) run the `extract/folder` deployment from
prefect.yaml: two workers take one run each; a run whose worker is SIGKILLed still completes with its
artifacts; a run whose whole host dies (worker, flow process and children killed) is marked Crashed by the
`sentiflow-crashed-host` automation (automations.yaml), its device slot comes free, and a re-run completes from
the cache. The PostgreSQL variant (two workers, two concurrent runs) is slow: it starts a throwaway cluster
through scripts/prefect_postgres.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT, SAMPLES
from tests.helpers.prefect_stack import Stack, descendants, stop_process

pytest.importorskip("prefect")

pytestmark = pytest.mark.skipif(not (SAMPLES / "labels.csv").is_file(), reason="sample_videos/ not generated")

EXTRACTORS = ["logmel", "acoustic"]    # quick; each one-file batch still starts its isolated extraction process
CLIPS_PER_RUN = 4
SLOT_LEASE_S = 60.0     # the server's minimum
CRASH_BOUND_S = 200      # the automation's 90 s without a heartbeat + one 30 s heartbeat period + evaluation
TIMEOUT_S = 1800          # a server, workers and flow processes on a busy 2-core machine


def clip_folders(tmp: Path, n: int) -> list[Path]:
    """`n` folders of CLIPS_PER_RUN sample clips each (different clips while there are enough)."""
    clips = sorted(SAMPLES.rglob("*.mp4"))
    clips = [clips[i % len(clips)] for i in range(n * CLIPS_PER_RUN)]
    folders = [tmp / f"videos{i}" for i in range(n)]
    for f in folders:
        f.mkdir(parents=True)
    for i, clip in enumerate(clips):
        shutil.copyfile(clip, folders[i // CLIPS_PER_RUN] / f"{clip.parent.name}-{clip.name}")
    return folders


def params(folder: Path, files_per_task: int = CLIPS_PER_RUN) -> dict:
    """extract/folder parameters, a cache of the folder's own; with files_per_task < CLIPS_PER_RUN a run has
    several batches to kill it between."""
    return {"root": str(folder), "cache": str(folder.parent / "cache"), "device": "cpu", "only": EXTRACTORS,
            "orchestration": {"files_per_task": files_per_task, "slot_lease_seconds": SLOT_LEASE_S}}


def summary(stack: Stack, run_id) -> list[dict]:
    (artifact,) = stack.artifacts("extract-summary", run_id)
    return json.loads(artifact.data)


def wait_until_a_batch_is_done(stack: Stack, run_id, timeout: float = 900) -> None:
    """Wait until the run is Running and its progress artifact shows a finished batch (entries committed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = stack.flow_run(run_id)
        assert run.state.type.value in ("SCHEDULED", "PENDING", "RUNNING"), run.state
        progress = stack.artifacts("extract-progress", run_id)
        if run.state.type.value == "RUNNING" and progress and progress[0].data > 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish a batch within {timeout} s\n{stack.worker_logs()}")


def a_run_in_the_middle(stack: Stack, name: str) -> tuple[Path, object, str]:
    """Start an extract/folder run of two batches and wait until its first batch is committed: (folder, run id,
    the worker running it)."""
    (folder,) = clip_folders(stack.tmp / name, 1)
    run_id = stack.submit("extract/folder", params(folder, files_per_task=2))
    wait_until_a_batch_is_done(stack, run_id)
    return folder, run_id, worker_of(stack, run_id)


def worker_of(stack: Stack, run_id) -> str:
    deadline = time.monotonic() + 30
    while (name := stack.workers_of_runs().get(str(run_id))) is None:
        assert time.monotonic() < deadline, "no worker's submitted-flow-run event names the run"
        time.sleep(0.5)
    return name


def host_cpu_limit() -> str:
    from flows.environment import device_limit_name

    return device_limit_name("sentiflow-extract", "cpu")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prefect-workers")
    (tmp / "sentiflow.yaml").write_text("extraction:\n  batch_size: 4\n", encoding="utf-8")
    s = Stack(tmp)
    try:
        s.start(workers=2)
        yield s
    finally:
        s.stop()


def each_worker_runs_one(stack: Stack, folders: list[Path]) -> None:
    runs = [stack.submit("extract/folder", params(f)) for f in folders[:2]]
    for run_id in runs:
        run = stack.wait_for(run_id)
        assert run.state.type.value == "COMPLETED", (run.state, stack.worker_logs())
        assert {r["status"] for r in summary(stack, run_id)} == {"done"}
    names = [worker_of(stack, r) for r in runs]
    assert sorted(names) == sorted(stack.workers)[:2], names        # one run each, not both on one worker


@pytest.mark.timeout(TIMEOUT_S)
def test_two_workers_take_one_run_each(stack: Stack) -> None:
    each_worker_runs_one(stack, clip_folders(stack.tmp / "two", 2))


@pytest.mark.timeout(TIMEOUT_S)
def test_a_run_survives_its_worker(stack: Stack) -> None:
    """SIGKILL of the worker alone: the orphaned flow process finishes and the run ends Completed with artifacts."""
    _, run_id, name = a_run_in_the_middle(stack, "survive")
    os.kill(stack.workers[name].pid, signal.SIGKILL)
    stack.workers[name].wait(10)
    run = stack.wait_for(run_id)
    assert run.state.type.value == "COMPLETED", run.state
    rows = summary(stack, run_id)
    assert len(rows) == CLIPS_PER_RUN and {r["status"] for r in rows} == {"done"}, rows
    assert stack.artifacts("extract-progress", run_id)[0].data == 100.0
    stack.start_worker(f"{name}-again")


@pytest.mark.timeout(TIMEOUT_S)
def test_a_dead_hosts_run_is_marked_crashed_and_a_rerun_resumes_from_the_cache(stack: Stack) -> None:
    folder, run_id, name = a_run_in_the_middle(stack, "crash")
    worker = stack.workers.pop(name)
    for pid in [worker.pid, *descendants(worker.pid)]:       # the host dies: worker, flow process, children
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait(10)
    killed = time.monotonic()
    run = stack.wait_for(run_id, timeout=CRASH_BOUND_S)
    assert run.state.type.value == "CRASHED", run.state
    assert "No heartbeat" in (run.state.message or ""), run.state.message
    crashed_after = time.monotonic() - killed
    deadline = time.monotonic() + SLOT_LEASE_S + 20
    while stack.slots_in_use(host_cpu_limit()) and time.monotonic() < deadline:
        time.sleep(1)
    assert stack.slots_in_use(host_cpu_limit()) == 0, "the dead host's device slot is still held"

    stack.start_worker(f"{name}-again")
    again = stack.submit("extract/folder", params(folder))
    assert stack.wait_for(again).state.type.value == "COMPLETED"
    rows = summary(stack, again)
    statuses = [r["status"] for r in rows]
    assert len(rows) == CLIPS_PER_RUN and set(statuses) <= {"cached", "done"} and "cached" in statuses, rows
    print(f"run marked Crashed {crashed_after:.0f} s after its host died; re-run: {statuses.count('cached')} "
          f"cached, {statuses.count('done')} done")


@pytest.fixture()
def postgres_url(tmp_path: Path):
    """A throwaway PostgreSQL cluster from scripts/prefect_postgres.sh, alive while the test runs."""
    marker = tmp_path / "pg-url"
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "prefect_postgres.sh"), "bash", "-c",
                             f'echo "$PREFECT_API_DATABASE_CONNECTION_URL" > {marker}; exec sleep 3600'],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not marker.is_file():
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace")
            if "PostgreSQL server binaries not found" in out:
                pytest.skip("needs PostgreSQL server binaries (apt-get install -y postgresql)")
            raise AssertionError(out)
        assert time.monotonic() < deadline, "PostgreSQL did not start"
        time.sleep(0.5)
    try:
        yield marker.read_text().strip()
    finally:
        stop_process(proc)


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S)
def test_two_workers_two_concurrent_runs_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "sentiflow.yaml").write_text("extraction:\n  batch_size: 4\n", encoding="utf-8")
    s = Stack(tmp_path / "stack", env={"PREFECT_API_DATABASE_CONNECTION_URL": postgres_url})
    try:
        s.start(workers=2)
        each_worker_runs_one(s, clip_folders(tmp_path, 2))
        server_log = (s.home / "server.log").read_text(errors="replace")
        assert "database is locked" not in server_log
    finally:
        s.stop()
