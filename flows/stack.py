"""A Prefect stack on this machine, driven through the `prefect` command as a user would: a server on a loopback
port with its state (SQLite) in one folder, the process work pool, the project's deployments (prefect.yaml) and
process workers; deployments run with `prefect deployment run --watch`. `make demo` (flows/demo.py) and the
end-to-end tests use it. It stops only the processes it started, by the process ids it recorded (kept in
`stack.json` when the stack outlives the command that started it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline.errors import SentiFlowError

PREFECT = str(Path(sys.executable).parent / "prefect")   # the `prefect` command beside this Python
STATE_FILE = "stack.json"
POOL = "local"                                            # the work pool prefect.yaml's deployments use
START_TIMEOUT_S = 180.0
# Polling intervals of a stack on one machine: runs start within a second or two of being created.
FAST_POLLING = {
    "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
}
# The server streams each run's logs out, so `prefect deployment run --watch` shows them (the reason of a failure
# among them); Prefect 3.8 leaves both off, and then --watch prints only state changes.
LOG_STREAMING = {"PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED": "true",
                 "PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED": "true"}
_UUID = re.compile(r"UUID: ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


class StackError(SentiFlowError, RuntimeError):
    """The Prefect stack could not be started or driven (the message says which step and where its log is)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DeploymentRun:
    """How one `prefect deployment run --watch` ended: the flow run, its final state and message, the CLI's output."""

    deployment: str
    flow_run_id: str
    state: str                 # the state type: COMPLETED, FAILED, CRASHED, ...
    message: str               # the final state's message (the failure's reason, or what the run did)
    output: str                # what `prefect deployment run --watch` printed
    returncode: int
    seconds: float

    @property
    def ok(self) -> bool:
        """True when the flow run completed."""
        return self.returncode == 0 and self.state == "COMPLETED"


class PrefectStack:
    """A Prefect server + process workers with their state under `home`, for the project at `project`."""

    def __init__(self, home: str | os.PathLike, project: str | os.PathLike, port: int | None = None,
                 env: Mapping[str, str] | None = None, ui: bool = False, log_level: str = "WARNING") -> None:
        self.home = Path(home).resolve()
        self.project = Path(project).resolve()
        self.port = port or free_port()
        self.procs: list[subprocess.Popen] = []
        self.pids: list[dict[str, Any]] = []       # {"pid", "argv", "log"} of every process this stack started
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SENTIFLOW_"))}
        bin_dir = str(Path(sys.executable).parent)
        base.update({
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "true" if ui else "false",
            "PREFECT_LOGGING_LEVEL": log_level,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            **FAST_POLLING,
            **LOG_STREAMING,
        })
        base.update(env or {})
        self.env = base

    @property
    def api_url(self) -> str:
        """The server's API address (what PREFECT_API_URL must say)."""
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """The server's web UI address."""
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, args: list[str], log: str) -> subprocess.Popen:
        """Start a long-running process in its own session, its output in `home/log`."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / log, "wb") as fh:
            proc = subprocess.Popen(args, cwd=self.project, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        self.pids.append({"pid": proc.pid, "argv": args, "log": str(self.home / log)})
        return proc

    def cli(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
        """One `prefect ...` command against this stack's server."""
        return subprocess.run([PREFECT, *args], cwd=self.project, env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def healthy(self) -> bool:
        """True when the server answers its health endpoint."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                return r.read().strip() == b"true"
        except (OSError, ValueError):
            return False

    def start_server(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start `prefect server start` on this stack's port and wait until its health endpoint answers."""
        server = self.spawn([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                            "server.log")
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if server.poll() is not None:
                raise StackError(f"prefect server exited with status {server.returncode}: "
                                 f"{self._tail('server.log')} (log: {self.home / 'server.log'})")
            if time.monotonic() > deadline:
                raise StackError(f"prefect server did not answer {self.api_url}/health within {timeout:.0f} s "
                                 f"(log: {self.home / 'server.log'})")
            time.sleep(0.25)

    def deploy(self) -> None:
        """Create the process work pool (unless it exists) and every deployment of the project's prefect.yaml."""
        if self.cli("work-pool", "inspect", POOL).returncode != 0:
            self._check(self.cli("work-pool", "create", POOL, "--type", "process"), "work-pool create")
        self._check(self.cli("--no-prompt", "deploy", "--all"), "deploy --all")

    def start_worker(self, name: str = "worker-1", limit: int | None = None) -> subprocess.Popen:
        """Start one process worker on the work pool (running at most `limit` flow runs at once, if given)."""
        args = [PREFECT, "worker", "start", "--pool", POOL, "--type", "process", "--name", name]
        if limit is not None:
            args += ["--limit", str(limit)]
        return self.spawn(args, f"{name}.log")

    def start(self, workers: int = 1) -> None:
        """Server, work pool, deployments and `workers` process workers."""
        self.start_server()
        self.deploy()
        for n in range(1, workers + 1):
            self.start_worker(f"worker-{n}")

    def run_deployment(self, deployment: str, params: Mapping[str, Any] | None = None, timeout: float = 600.0,
                       echo: Callable[[str], None] | None = None) -> DeploymentRun:
        """`prefect deployment run NAME --params JSON --watch`; `echo` sees each output line as it comes."""
        args = [PREFECT, "deployment", "run", deployment, "--watch", "--watch-timeout", str(int(timeout))]
        if params:
            args += ["--params", json.dumps(dict(params))]
        start = time.monotonic()
        lines: list[str] = []
        env = {**self.env, "COLUMNS": "200"}       # rich wraps at 80 columns without a terminal
        with subprocess.Popen(args, cwd=self.project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True) as proc:
            for line in proc.stdout or ():
                lines.append(line)
                if echo:
                    echo(line.rstrip("\n"))
        output = "".join(lines)
        match = _UUID.search(output)
        run_id = match.group(1) if match else ""
        state = (self.flow_run(run_id).get("state") or {}) if run_id else {}
        return DeploymentRun(deployment, run_id, state.get("type", "UNKNOWN"), state.get("message") or "", output,
                             proc.returncode, time.monotonic() - start)

    def has_deployment(self, name: str) -> bool:
        """True when the server holds the deployment `flow/deployment`."""
        return bool(self._get(f"/deployments/name/{name}"))

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        """The server's record of one flow run (its `state` has type, name and message), {} if unreadable."""
        return self._get(f"/flow_runs/{flow_run_id}")

    def _get(self, path: str) -> dict[str, Any]:
        """GET one API object as JSON, {} when the server does not have it or does not answer."""
        try:
            with urllib.request.urlopen(f"{self.api_url}{path}", timeout=10) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return {}

    def stop(self) -> None:
        """Stop every process this stack started (its whole process group), newest first."""
        for proc in reversed(self.procs):
            stop_group(proc.pid, proc.poll)
        for rec in reversed(self.pids):
            if not any(p.pid == rec["pid"] for p in self.procs) and _is_ours(rec):
                stop_group(rec["pid"])
        (self.home / STATE_FILE).unlink(missing_ok=True)

    def save(self) -> Path:
        """Record the port and the started processes in `home/stack.json`, so a later command can stop them."""
        path = self.home / STATE_FILE
        path.write_text(json.dumps({"port": self.port, "project": str(self.project), "processes": self.pids},
                                   indent=1), encoding="utf-8")
        return path

    @classmethod
    def attach(cls, home: str | os.PathLike, env: Mapping[str, str] | None = None) -> "PrefectStack | None":
        """The stack a former command left running under `home` (from its stack.json), or None if none is alive."""
        path = Path(home) / STATE_FILE
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        stack = cls(home, record["project"], port=int(record["port"]), env=env)
        stack.pids = [p for p in record.get("processes", []) if _is_ours(p)]
        if not stack.pids or not stack.healthy():
            stack.stop()
            return None
        return stack

    def _check(self, result: subprocess.CompletedProcess, step: str) -> None:
        if result.returncode != 0:
            text = (result.stdout + result.stderr).strip().splitlines()
            raise StackError(f"`prefect {step}` failed (status {result.returncode}): "
                             f"{' | '.join(text[-5:]) or 'no output'}")

    def _tail(self, log: str, lines: int = 5) -> str:
        try:
            text = (self.home / log).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-lines:]) or "no output"


def _is_ours(record: Mapping[str, Any]) -> bool:
    """True when the recorded process still runs the recorded command (not a reused process id)."""
    try:
        running = [a for a in Path(f"/proc/{int(record['pid'])}/cmdline").read_bytes().split(b"\0") if a]
    except (OSError, KeyError, ValueError):
        return False
    args = [str(a).encode() for a in record.get("argv", [])[1:]]   # after the executable (a script's interpreter
    return bool(args) and running[-len(args):] == args            # comes first in /proc)


def stop_group(pid: int, poll: Callable[[], int | None] = lambda: None, grace: float = 15.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL it if any member is left after `grace` seconds.

    `poll` reaps the leader when it is this process's child (Popen.poll), so a dead leader does not keep the group.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            poll()
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
