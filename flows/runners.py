"""Where a flow's tasks run (`orchestration.task_runner`): the flow's own threads, or a Dask cluster.

With `kind: dask` the flow's plan, extract, train and score tasks go to Dask worker processes: a local cluster
of `n_workers` processes on the flow's host, or the cluster of a running scheduler (`address`), whose workers
may be on other hosts. Task runs still report to the Prefect server of the flow run (the settings travel with
each task). Dask workers must be allowed to start child processes, because the extraction runs each batch in
an isolated one: the local cluster is started so; a worker started by hand needs
DASK_DISTRIBUTED__WORKER__DAEMON=False (see README "Scaling out").
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from flows.environment import TaskRunnerConfig
from pipeline.config import ConfigError


@contextlib.contextmanager
def task_runner(config: TaskRunnerConfig) -> Iterator[Any]:
    """The task runner to submit to while the block runs: None for the flow's own threads, else a started
    DaskTaskRunner (its local cluster, if any, is closed at the end of the block)."""
    if config.kind == "threads":
        yield None
        return
    try:
        import dask
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise ConfigError("orchestration.task_runner.kind dask needs the `distributed` extra "
                          f"(prefect-dask, dask, distributed): {exc}") from exc
    if config.address:
        runner = DaskTaskRunner(address=config.address)
    else:
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": config.n_workers,
                                                "threads_per_worker": config.threads_per_worker,
                                                "processes": True, "dashboard_address": None})
    # the cluster starts on the first submission: its worker processes must be able to start children
    with dask.config.set({"distributed.worker.daemon": False}), runner:
        yield runner


def submit(runner: Any, task: Any, **parameters: Any) -> Any:
    """Submit `task` with `parameters` to `runner` (None: the flow's own task runner); returns its future."""
    if runner is None:
        return task.submit(**parameters)
    return runner.submit(task, parameters=parameters)


def run_task(runner: Any, task: Any, **parameters: Any) -> Any:
    """Run `task`'s function and return its result: in the flow's own process for threads (as before Dask was an
    option), else as a task run on a Dask worker (e.g. one on a host with a GPU)."""
    if runner is None:
        return task.fn(**parameters)
    return submit(runner, task, **parameters).result()


def worker_name() -> str:
    """Which process ran the calling task: the Dask worker's name, or this process's id."""
    import sys

    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            return f"dask-{get_worker().name}"
        except ValueError:
            pass
    return f"pid-{os.getpid()}"
