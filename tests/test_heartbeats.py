"""A flow run still sends Prefect's heartbeats, and its end does not wait for the heartbeat thread's next
one-second step (flows/heartbeats.py)."""
from __future__ import annotations

import threading


def _heartbeat_threads(threads: list[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threads if any(getattr(a, "__name__", "") == "heartbeat_loop" for a in getattr(t, "_args", ()))]


def test_a_flow_run_keeps_its_heartbeats_and_ends_without_joining_them():
    from prefect import flow
    from prefect import flow_engine

    import flows.run_skeleton  # noqa: F401  (every flow module imports it, and with it the change)
    from flows import heartbeats

    assert heartbeats.end_runs_without_waiting()  # this Prefect's engine is the one it was written for
    installed = flow_engine._send_heartbeats
    assert heartbeats.end_runs_without_waiting() and flow_engine._send_heartbeats is installed  # once only

    @flow(name="heartbeat-check")
    def quick() -> list[threading.Thread]:
        return threading.enumerate()

    state = quick(return_state=True)
    assert state.is_completed()
    during = _heartbeat_threads(state.result())
    assert len(during) == 1 and during[0].daemon  # heartbeats are still sent, from a daemon thread
    during[0].join(timeout=3)
    assert not during[0].is_alive()  # told to stop at the run's end, it stops at its next step on its own
