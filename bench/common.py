"""Shared bench helpers: generated manifests, the machine's description, and the results file."""
from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

SENTENCES = [
    "The harbour lights came on one by one as the fog rolled in from the sea.",
    "She counted the steps again, as she did every evening, and reached the top.",
    "Nobody had written to the lighthouse in years, and now there were two letters.",
    "He tied the boat to the ring in the rock and climbed up to the door.",
    "The lamp turned slowly, and its beam swept across the water toward the point.",
    "They sat at the table by the window and listened to the wind.",
    "In the morning the supply boat did not come, and the radio was silent.",
    "It was the third winter she had spent alone on the rock, and the hardest.",
]


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def script_lines(count: int, speakers: list[str]) -> list[dict]:
    return [{"speaker": speakers[i % len(speakers)], "text": f"{SENTENCES[i % len(SENTENCES)]} This is line {i + 1}."}
            for i in range(count)]


def write_manifest(folder: Path, lines: int, chapters: int = 4, name: str = "bench") -> Path:
    """A generated manifest of `lines` lines over 4 speakers (two voices, each with two seeds)."""
    speakers = ["Ava", "Bea", "Joe", "Jim"]
    all_lines = script_lines(lines, speakers)
    per = -(-lines // chapters)
    data = {"title": f"Bench {name}", "defaults": {"seed": 1},
            "voices": {"Ava": "ava", "Bea": {"voice": "ava", "seed": 2}, "Joe": "joe", "Jim": {"voice": "joe", "seed": 3}},
            "chapters": [{"title": f"Chapter {c + 1}", "lines": all_lines[c * per:(c + 1) * per]}
                         for c in range(chapters) if all_lines[c * per:(c + 1) * per]]}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def prepare_environment() -> Path:
    """A private Prefect home and quiet logs; returns a scratch folder."""
    scratch = Path(tempfile.mkdtemp(prefix="voicebatch-bench-"))
    # A bench writes gigabytes of takes, chapters and books: gone at exit (after Prefect's own exit handlers,
    # registered later, have stopped its temporary server).
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ.setdefault("PREFECT_HOME", str(scratch / "prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VOICEBATCH_VOICES_DIR", str(ROOT / "voices"))
    # Render lanes are machine-wide file locks: a private folder keeps other processes' renders out of the timing.
    os.environ.setdefault("VOICEBATCH_LANE_DIR", str(scratch / "lanes"))
    from flows.local_server import stop_server  # imported now: at exit, imports that start threads fail
    from flows.warm import stop_warm

    # The local Prefect server that the bench's renders started and reused, and the warm process beside it:
    # stopped before the scratch goes (atexit runs the last registered first).
    atexit.register(stop_server, Path(os.environ["PREFECT_HOME"]))
    atexit.register(stop_warm, Path(os.environ["PREFECT_HOME"]))
    return scratch


def save(name: str, results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine(), **results}, indent=2, default=str))


def lines_of(manifest: Path, engine: str) -> list:
    """The manifest's lines as engine requests, in script order (what a hand-written loop would build)."""
    return [request for _, request in planned_lines(manifest, engine)[1]]


def planned_lines(manifest: Path, engine: str) -> tuple:
    """The ingested script, and its lines as (job, engine request) pairs in script order."""
    from engine.base import RenderRequest
    from tasks.core.settings import get_settings
    from tasks.render.engines import prepare_engines
    from tasks.script.ingest import ingest
    from tasks.script.plan import plan_jobs

    settings = get_settings()
    script = ingest(manifest, settings.voices_dir)
    setup = prepare_engines(script, engine, settings.engine, "cpu", "auto")
    jobs = plan_jobs(script, setup.facts, setup.speaker_engine, settings.chunk_words)
    return script, [(j, RenderRequest(j.text, setup.prompts[j.engine][j.voice_id], j.params, j.key)) for j in jobs]
