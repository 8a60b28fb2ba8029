"""The end of a render: write the run's review page and link it from the Prefect run."""
from __future__ import annotations

import logging
from pathlib import Path

from tasks import report, steps


def write_and_link(db: Path, run_id: str, title: str, logger: logging.Logger | logging.LoggerAdapter) -> str | None:
    """The page's path, or None when it could not be written: the run is already recorded, so this warns."""
    from prefect.artifacts import create_link_artifact

    try:
        page = steps.write_review_page(db, [run_id])
    except Exception as e:  # noqa: BLE001 - a listening aid must never fail a finished render
        logger.warning("could not write the review page: %s (`voicebatch review %s` tries again)", e, run_id)
        return None
    try:
        create_link_artifact(page.as_uri(), link_text=f"review page: {page.name}", key=report.artifact_key(title, "review"),
                             description="every take of the run with a player, its settings, scores and levels")
    except Exception as e:  # noqa: BLE001
        logger.warning("could not link the review page from the Prefect run: %s", e)
    return str(page)
