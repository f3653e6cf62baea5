"""A real Prefect server and process workers for tests: temp PREFECT_HOME, free loopback port, the project's
prefect.yaml deployed and automations.yaml created, everything driven through the `prefect` CLI and client and
stopped at the end. Set SENTIFLOW_TEST_PREFECT_DB_URL (postgresql+asyncpg://...) to run it on PostgreSQL
(scripts/prefect_postgres.sh does that with a throwaway cluster)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.paths import ROOT

BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 900
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session, and its group: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Stack:
    """A Prefect server + process workers in a temp PREFECT_HOME, driven through the `prefect` CLI."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.workers: dict[str, subprocess.Popen] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SENTIFLOW_"))}
        self.env.update({
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_API_URL": f"http://127.0.0.1:{self.port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
            "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "SENTIFLOW_HOME": str(tmp / "sentiflow"),
            "SENTIFLOW_CACHE": str(tmp / "cache"),
            "SENTIFLOW_RUNS": str(tmp / "runs"),
            "SENTIFLOW_SCORES": str(tmp / "scores"),
            "SENTIFLOW_CONFIG": str(tmp / "sentiflow.yaml"),
            "PYTHONUNBUFFERED": "1",
        })
        if os.environ.get("SENTIFLOW_TEST_PREFECT_DB_URL"):
            self.env["PREFECT_API_DATABASE_CONNECTION_URL"] = os.environ["SENTIFLOW_TEST_PREFECT_DB_URL"]
        self.env.update(env or {})

    def spawn(self, args: list[str], log: str) -> subprocess.Popen:
        """Start a process in its own session, output to `tmp/log`; stopped by `stop`."""
        fh = open(self.tmp / log, "wb")
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run `prefect ARGS...` against this server."""
        return subprocess.run([PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, workers: int = 1) -> None:
        """Server (waits for health), the `local` pool, prefect.yaml's deployments, automations.yaml, workers."""
        server = self.spawn([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                            "server.log")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{self.env['PREFECT_API_URL']}/health", timeout=2) as r:
                    if r.read().strip() == b"true":
                        break
            except OSError:
                pass
            assert server.poll() is None, (self.tmp / "server.log").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "prefect server did not become healthy"
            time.sleep(0.5)
        r = self.cli("work-pool", "create", "local", "--type", "process")
        assert r.returncode == 0, r.stdout + r.stderr
        r = self.cli("--no-prompt", "deploy", "--all")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        r = self.cli("automation", "create", "--from-file", str(ROOT / "automations.yaml"))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        for n in range(1, workers + 1):
            self.start_worker(f"e2e-{n}")

    def start_worker(self, name: str) -> subprocess.Popen:
        """A process worker on the `local` pool that runs one flow run at a time (`--limit 1`)."""
        proc = self.spawn([PREFECT, "worker", "start", "--pool", "local", "--type", "process", "--name", name,
                           "--limit", "1"], f"worker-{name}.log")
        self.workers[name] = proc
        return proc

    def stop(self) -> None:
        """Stop every process this stack started (workers' flow runs included), newest first."""
        for proc in reversed(self.procs):
            for pid in descendants(proc.pid) if proc.poll() is None else []:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            stop_process(proc)

    def worker_logs(self) -> str:
        """The tail of every worker's log."""
        return "\n".join(f"--- {name}:\n" + (self.tmp / f"worker-{name}.log").read_text(errors="replace")[-3000:]
                         for name in self.workers)

    def run(self, deployment: str, params: dict) -> str:
        """`prefect deployment run NAME --params JSON --watch`; returns the CLI output of the Completed run."""
        r = self.cli("deployment", "run", deployment, "--params", json.dumps(params), "--watch",
                     "--watch-interval", "2")
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"{deployment} failed:\n{out[-3000:]}\nworker logs:\n{self.worker_logs()}"
        assert "Completed" in out, out[-3000:]
        return out

    def client(self) -> Any:
        """A synchronous Prefect client of this server (use it in a `with` block)."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.env["PREFECT_API_URL"])

    def submit(self, deployment: str, params: dict) -> Any:
        """Create a flow run of `deployment` (scheduled now) and return its id, without waiting."""
        with self.client() as client:
            dep = client.read_deployment_by_name(deployment)
            return client.create_flow_run_from_deployment(dep.id, parameters=params).id

    def flow_run(self, run_id: Any) -> Any:
        """The flow run as the server has it now."""
        with self.client() as client:
            return client.read_flow_run(run_id)

    def wait_for(self, run_id: Any, states: tuple[str, ...] = FINAL_STATES, timeout: float = RUN_TIMEOUT_S) -> Any:
        """Wait until the flow run's state type is one of `states`; returns the flow run."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.flow_run(run_id)
            if run.state is not None and run.state.type.value in states:
                return run
            assert time.monotonic() < deadline, (f"flow run {run_id} still {run.state.type.value if run.state else None}"
                                                 f" after {timeout:.0f} s\n{self.worker_logs()}")
            time.sleep(1)

    def flow_runs(self, deployment: str) -> list:
        """Every flow run of `deployment`."""
        from prefect.client.schemas.filters import FlowRunFilter

        with self.client() as client:
            dep = client.read_deployment_by_name(deployment)
            return client.read_flow_runs(flow_run_filter=FlowRunFilter(deployment_id={"any_": [dep.id]}))

    def artifacts(self, key: str, flow_run_id: Any = None) -> list:
        """Artifacts with `key` (newest first), optionally only those of one flow run."""
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
        from prefect.client.schemas.sorting import ArtifactSort

        by_run = {"flow_run_id": ArtifactFilterFlowRunId(any_=[flow_run_id])} if flow_run_id is not None else {}
        flt = ArtifactFilter(key=ArtifactFilterKey(any_=[key]), **by_run)
        with self.client() as client:
            return client.read_artifacts(artifact_filter=flt, sort=ArtifactSort.CREATED_DESC)

    def workers_of_runs(self) -> dict[str, str]:
        """Which worker submitted each flow run (flow run id -> worker name), from the workers' events."""
        from prefect.events.filters import EventFilter, EventNameFilter

        out: dict[str, str] = {}
        with self.client() as client:
            page = client.read_events(EventFilter(event=EventNameFilter(name=["prefect.worker.submitted-flow-run"])),
                                      limit=50)
            while True:
                for event in page.events:
                    for related in event.related:
                        if related.role == "flow-run":
                            out[related.id.removeprefix("prefect.flow-run.")] = event.resource.name
                if not page.next_page:
                    return out
                page = client.read_events_page(page.next_page)

    def slots_in_use(self, limit_name: str) -> int:
        """Active slots of a global concurrency limit (0 when the limit does not exist)."""
        from prefect.exceptions import ObjectNotFound

        with self.client() as client:
            try:
                return client.read_global_concurrency_limit_by_name(limit_name).active_slots
            except ObjectNotFound:
                return 0
