"""Prefect's flow-run heartbeats, kept, without the wait they added to the end of every run.

Prefect 3.9 sends a flow run's heartbeats from a daemon thread that sleeps in one-second steps, and its flow
engine joins that thread when the run ends: each command waited 0-1 s after its run had finished (0.13-0.80 s
measured on 12-hour-book edits of ~15 s). The thread is told to stop and stops at its next step on its own,
sending nothing after it was told to, so the end of a run need not wait for it."""
from __future__ import annotations

import inspect
from contextlib import contextmanager


def end_runs_without_waiting() -> bool:
    """Make the flow engine stop its heartbeat thread without joining it; False, and nothing changed, where
    this Prefect's engine is not the one this was written for."""
    from prefect import flow_engine

    send = getattr(flow_engine, "_send_heartbeats", None)
    if getattr(send, "joins", True) is False:
        return True  # done already
    if send is None:
        return False
    try:
        takes_join_flag = "join_on_exit" in inspect.signature(send).parameters
    except (TypeError, ValueError):
        takes_join_flag = False
    if not takes_join_flag:
        return False

    @contextmanager
    def send_heartbeats(engine, join_on_exit: bool = True):
        with send(engine, join_on_exit=False):
            yield

    send_heartbeats.joins = False
    flow_engine._send_heartbeats = send_heartbeats
    return True
