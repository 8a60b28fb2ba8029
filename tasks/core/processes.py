"""Which process did a run's work: a worker is `host:pid`, so renders and normalisations on Dask workers
(or in the flow's own process) can be told apart in provenance, with each worker's model-load seconds."""
from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.batch_render import BatchResult
    from tasks.mastering import NormalisedTake


def worker_name() -> str:
    """This process, as provenance names it: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_rows(run_id: str, results: list[BatchResult], normalised: list[NormalisedTake]) -> list[dict[str, Any]]:
    """One row per process that rendered or normalised for the run: batches, takes, seconds, model loads."""
    rows: dict[str, dict[str, Any]] = {}

    def row(worker: str) -> dict[str, Any]:
        return rows.setdefault(worker, dict(run_id=run_id, worker=worker, batches=0, takes_rendered=0,
                                            render_seconds=0.0, load_seconds=0.0, takes_normalised=0,
                                            normalise_seconds=0.0))

    for result in results:
        r = row(result.worker)
        r["batches"] += 1
        r["takes_rendered"] += len(result.takes)
        r["render_seconds"] += sum(end - start for start, end in result.spans)
        r["load_seconds"] += result.load_seconds
    for take in normalised:
        if take.worker is None:
            continue
        r = row(take.worker)
        r["takes_normalised"] += 1
        if take.normalise_started_at and take.normalise_ended_at:
            r["normalise_seconds"] += (take.normalise_ended_at - take.normalise_started_at).total_seconds()
    return sorted(rows.values(), key=lambda r: r["worker"])
