"""`voicebatch doctor`: versions, devices, models, ffmpeg, output folder and database, with the fix for each
problem. Exit 1 when the configured engine cannot run."""
from __future__ import annotations

import argparse
import json

import engine
from tasks.core.settings import get_settings

MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def cmd_doctor(args: argparse.Namespace) -> int:
    from flows.doctor import diagnose

    report = diagnose(get_settings(), engine.MPS_FALLBACK_FROM_USER)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for check in report["checks"]:
            print(f"[{MARKS[check['status']]}] {check['name']}: {check['detail']}")
            if check["fix"] and check["status"] != "ok":
                print(f"       fix: {check['fix']}")
        print("\nready: the configured engine can run here" if report["ok"] else
              f"\nnot ready: engine {report['engine']!r} cannot run here; see FAIL above")
    return 0 if report["ok"] else 1


def add_command(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser("doctor", help="check this machine's setup: versions, devices, models, ffmpeg, paths")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(func=cmd_doctor)
