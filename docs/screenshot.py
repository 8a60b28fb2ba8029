"""Re-take docs/prefect-ui.png: a local Prefect server, one demo run against it, headless Chromium on the run's page.
Usage (repository root, chromium installed): .venv/bin/python docs/screenshot.py"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, "tests")
from prefect_server import server_env, start_server, stop  # noqa: E402

work = Path(tempfile.mkdtemp(prefix="voicebatch-shot-"))
proc, url = start_server(work)
try:
    done = subprocess.run([".venv/bin/voicebatch", "render", "manifests/demo-dialogue.yaml", "--out", str(work / "out"),
                           "--json"], env=server_env(work, url), capture_output=True, text=True, check=True)
    run_id = json.loads(done.stdout)[0]["run_id"]
    time.sleep(3)
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={work / 'chrome'}", "--virtual-time-budget=15000",
                    "--screenshot=docs/prefect-ui.png", "--window-size=1400,900",
                    url.removesuffix("/api") + f"/runs/flow-run/{run_id}"], check=True, timeout=120)
finally:
    stop(proc)
