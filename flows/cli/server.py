"""`voicebatch server status|start|stop`: the local Prefect server that commands reuse (flows/local_server.py)
and the warm process beside it (flows/warm.py)."""
from __future__ import annotations

import argparse
import json


def add_command(sub) -> None:
    server = sub.add_parser("server", help="the local Prefect server reused between commands, and the warm process "
                            "beside it: status, start, stop")
    server.add_argument("action", choices=("status", "start", "stop"))
    server.add_argument("--json", action="store_true", help="print the status as JSON")
    server.set_defaults(func=cmd_server)


def cmd_server(args: argparse.Namespace) -> int:
    from flows import local_server, warm

    folder = local_server.home()
    if args.action == "start":
        state, started = local_server.ensure_server(folder)
        print(f"{'started' if started else 'already running'}: Prefect UI at {state.ui_url} (pid {state.pid})")
        warm.ensure_warm(folder)
        return 0
    if args.action == "stop":
        warm_state = warm.stop_warm(folder)
        state = local_server.stop_server(folder)
        print(f"stopped the server on port {state.port} (pid {state.pid})" if state else "no server was recorded")
        if warm_state:
            print(f"stopped the warm process (pid {warm_state['pid']})")
        return 0
    state = local_server.read_state(folder)
    running = bool(state and local_server.answers(state))
    warm_state = warm.warm_status(folder)
    if args.json:
        print(json.dumps({"running": running, "ui_url": state.ui_url if state else None,
                          "api_url": state.api_url if state else None, "pid": state.pid if state else None,
                          "port": state.port if state else None,
                          "prefect_version": state.prefect_version if state else None, "home": str(folder),
                          **warm_state}))
    elif running:
        print(f"running: Prefect UI at {state.ui_url}, API {state.api_url}, pid {state.pid}, "
              f"Prefect {state.prefect_version}")
    else:
        print("not running" + (f" (stale record of pid {state.pid}, port {state.port}: the next command replaces it)"
                               if state else "") + "; the next command that needs Prefect starts one")
    if warm_state["warm_pid"] and not args.json:
        print(f"warm process: pid {warm_state['warm_pid']}, "
              + ("ready: `voicebatch render` starts in it" if warm_state["warm_ready"] else "loading"))
    return 0 if running else 3
