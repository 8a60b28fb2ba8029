"""Re-take docs/review-page.png: a review page laid out as a grid, screenshotted in headless Chromium.

Usage (repository root, chromium installed):
  .venv/bin/python docs/review_screenshot.py            # renders three lines under three seeds, compares the runs
  .venv/bin/python docs/review_screenshot.py RUN_ID...  # the page of runs already in the provenance database
                                                        # (VOICEBATCH_DB_PATH or outputs/), e.g. a sweep
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
TARGET = Path(__file__).resolve().parent / "review-page.png"
LINES = ["The fog came in faster than anyone had seen it.", "She climbed the hundred and twelve steps.",
         "Then the first beam swept across the water."]


def three_seeds(work: Path) -> tuple[Path, list[str]]:
    """The same three lines rendered with seeds 1, 2 and 3: one run each, one database."""
    from flows.render import render_manifest

    out, run_ids = work / "out", []
    for seed in (1, 2, 3):
        manifest = work / f"seed{seed}.yaml"
        manifest.write_text(json.dumps({
            "title": f"The Lighthouse, seed {seed}", "defaults": {"seed": seed}, "voices": {"Ava": "ava"},
            "chapters": [{"title": "At the harbour", "lines": [{"speaker": "Ava", "text": t} for t in LINES]}]}))
        run_ids.append(render_manifest(manifest=str(manifest), output_dir=str(out), review=False).run_id)
    return out / "provenance.duckdb", run_ids


def main() -> None:
    from tasks.core.settings import get_settings
    from tasks.review.page import write_review_page

    work = Path(tempfile.mkdtemp(prefix="voicebatch-review-shot-"))
    db, run_ids = (get_settings().database, sys.argv[1:]) if sys.argv[1:] else three_seeds(work)
    page = write_review_page(db, run_ids)
    raw = work / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={work / 'chrome'}", "--virtual-time-budget=5000", f"--screenshot={raw}",
                    "--window-size=1280,1000", page.as_uri()], check=True, timeout=120, capture_output=True)
    from PIL import Image

    # A palette PNG keeps the committed file small (text and flat colours survive 128 colours).
    Image.open(raw).convert("RGB").quantize(colors=128).save(TARGET, optimize=True)
    print(f"{TARGET} ({TARGET.stat().st_size // 1024} kB) from {page}")


if __name__ == "__main__":
    main()
