"""`voicebatch review RUN_ID [RUN_ID ...]`: write the review page of a run, or of runs side by side."""
from __future__ import annotations

import argparse
from pathlib import Path

from tasks.core.settings import get_settings
from tasks.review.page import write_review_page


def cmd_review(args: argparse.Namespace) -> int:
    page = write_review_page(get_settings().database, args.run_ids, Path(args.out) if args.out else None)
    print(page)
    return 0


def add_command(sub) -> None:
    review = sub.add_parser("review", help="write an HTML page to listen to a run's takes (several runs: side by side)")
    review.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="a run id or a unique prefix of one")
    review.add_argument("--out", help="the page's path (default: <run's output folder>/review/<run id>.html)")
    review.set_defaults(func=cmd_review)
