"""`voicebatch qa RUN_ID`: re-score a past run's takes with the ASR model and print the QA report."""
from __future__ import annotations

import argparse
import json

from tasks.core.settings import get_settings
from tasks.qa.report import chapter_summary, text_lines
from tasks.qa.rescore import rescore_run
from tasks.script.manifest import Qa


def cmd_qa(args: argparse.Namespace) -> int:
    from flows.quality import qa_plan

    settings = get_settings()
    plan = qa_plan(Qa(enabled=True, wer_threshold=args.wer_threshold), None, settings)
    rows = rescore_run(settings.database, args.run_id, plan)
    if args.json:
        print(json.dumps({"run_id": rows[0]["run_id"], "rescore_id": rows[0]["rescore_id"],
                          "chapters": chapter_summary(rows), "takes": rows}, indent=2, default=str))
    else:
        print(f"run {rows[0]['run_id']}: {len(rows)} takes scored, "
              f"{sum(not r['scored'] for r in rows)} from the QA cache; recorded as re-score "
              f"{rows[0]['rescore_id']} in qa_rescores")
        print("\n".join(text_lines(rows)))
    return 1 if any(r["flagged"] for r in rows) else 0


def add_command(sub) -> None:
    qa = sub.add_parser("qa", help="transcribe a past run's takes and score them against their text")
    qa.add_argument("run_id", help="a run id or a unique prefix of one")
    qa.add_argument("--wer-threshold", type=float, default=0.2, help="flag takes above this word error rate")
    qa.add_argument("--json", action="store_true")
    qa.set_defaults(func=cmd_qa)
