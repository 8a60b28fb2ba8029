"""Where a render run's tasks execute: threads in this process (default), or a Dask cluster through
prefect-dask, each Dask worker process holding its own warm engine (the process-wide pool of engine/pool.py
loads an engine once per worker, on its first render)."""
from __future__ import annotations

from tasks.core.errors import UserInputError

RUNNERS = ("threads", "dask")


def task_runner(runner: str, dask_address: str | None = None, dask_workers: int = 2):
    """A Prefect task runner for `runner`, or None for the flow's default threads."""
    if runner not in RUNNERS:
        raise UserInputError(f"--runner {runner!r}: choose one of {', '.join(RUNNERS)}")
    if runner == "threads":
        if dask_address:
            raise UserInputError("--dask-address needs --runner dask")
        return None
    from prefect_dask import DaskTaskRunner

    if dask_address:
        if not dask_address.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise UserInputError(f"--dask-address {dask_address!r}: give the scheduler's address, e.g. "
                                 "tcp://10.0.0.5:8786 (printed by `dask scheduler`)")
        return DaskTaskRunner(address=dask_address)
    # A local cluster: worker processes with one thread each; renders share the machine's device lane anyway.
    return DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1, "processes": True,
                                         "dashboard_address": None})


def remote_task_runner() -> bool:
    """Whether the running flow's tasks execute in other processes (Dask), not in threads of this one."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    context = FlowRunContext.get()
    return context is not None and not isinstance(context.task_runner, ThreadPoolTaskRunner)
