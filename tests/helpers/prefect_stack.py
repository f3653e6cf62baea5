"""The test side of flows/stack.py's Prefect stack: a temp PREFECT_HOME and SentiFlow folders, automations.yaml
created, workers limited to one run each, and the client queries the worker and crash tests need. Set
SENTIFLOW_TEST_PREFECT_DB_URL (postgresql+asyncpg://...) to run it on PostgreSQL (scripts/prefect_postgres.sh does
that with a throwaway cluster)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from flows.stack import PrefectStack, stop_group
from tests.helpers.paths import ROOT

RUN_TIMEOUT_S = 900
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session, and its group: SIGTERM, then SIGKILL."""
    stop_group(proc.pid, proc.poll)


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


class Stack(PrefectStack):
    """flows.stack.PrefectStack under `tmp` (state in tmp/prefect-home, SentiFlow folders beside it), for tests."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.workers: dict[str, subprocess.Popen] = {}
        extra = {
            "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2",
            "SENTIFLOW_HOME": str(tmp / "sentiflow"),
            "SENTIFLOW_CACHE": str(tmp / "cache"),
            "SENTIFLOW_RUNS": str(tmp / "runs"),
            "SENTIFLOW_SCORES": str(tmp / "scores"),
            "SENTIFLOW_CONFIG": str(tmp / "sentiflow.yaml"),
        }
        if os.environ.get("SENTIFLOW_TEST_PREFECT_DB_URL"):
            extra["PREFECT_API_DATABASE_CONNECTION_URL"] = os.environ["SENTIFLOW_TEST_PREFECT_DB_URL"]
        super().__init__(tmp / "prefect-home", ROOT, env={**extra, **(env or {})})

    def start(self, workers: int = 1) -> None:
        """Server, the `local` pool, prefect.yaml's deployments, automations.yaml, workers e2e-1..N."""
        self.start_server()
        self.deploy()
        r = self.cli("automation", "create", "--from-file", str(ROOT / "automations.yaml"))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        for n in range(1, workers + 1):
            self.start_worker(f"e2e-{n}")

    def start_worker(self, name: str = "worker-1", limit: int | None = 1) -> subprocess.Popen:
        """A process worker on the `local` pool that runs one flow run at a time (`--limit 1`)."""
        proc = super().start_worker(name, limit=limit)
        self.workers[name] = proc
        return proc

    def stop(self) -> None:
        """Stop every process this stack started, the workers' flow runs and their children first."""
        for proc in reversed(self.procs):
            for pid in descendants(proc.pid) if proc.poll() is None else []:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        super().stop()

    def worker_logs(self) -> str:
        """The tail of every worker's log."""
        return "\n".join(f"--- {name}:\n" + (self.home / f"{name}.log").read_text(errors="replace")[-3000:]
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

        return SyncPrefectClient(self.api_url)

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
