"""Context chains and prefix reuse against the unchained render, on the tiny random Higgs model (not a test).

    .venv/bin/python bench/chains.py

Two 4-chapter books of 6 chunks per chapter: prose read by one voice (ava), and a dialogue in which ava and joe
take turns (joe first in odd chapters; one seed for both, so only the prompts tell their rows apart). Each is
planned and batched as `voicebatch render` does (plan_jobs, group_jobs, render_batch in batch order, no Prefect),
with `context: none` and `context: chain`, each with prefix reuse off and on (the prefix cache emptied first, as
in a fresh process). Reported per render: generate calls, rows per call, prompt tokens per take, and prefill
tokens per take computed and taken from the prefix cache; these are counts, the same on any machine. Wall
times are measured too: on a shared machine they are only indicative.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import prepare_environment, save  # noqa: E402

SENTENCES = ["The boat came at dawn.", "Ava carried the crates up the steps.", "The lamp needed oil again.",
             "A gull watched from the rail.", "Fog closed over the bay by noon.", "The keeper lit the wick at dusk."]
CHAPTERS = 4
FRAMES = 40


def write_book(folder: Path, dialogue: bool, context: str) -> Path:
    def chapter(c: int) -> dict:
        said = [f"{s[:-1]}, chapter {c + 1}." for s in SENTENCES]
        if dialogue:
            return {"title": f"Chapter {c + 1}",
                    "lines": [{"speaker": "NJ"[(i + c) % 2], "text": s} for i, s in enumerate(said)]}
        return {"title": f"Chapter {c + 1}", "speaker": "N", "text": " ".join(said)}

    data = {"title": "Chains", "defaults": {"seed": 1, "chunk_words": 10, "context": context, "max_new_tokens": FRAMES},
            "voices": {"N": "ava", "J": {"voice": "joe", "seed": 1}},
            "chapters": [chapter(c) for c in range(CHAPTERS)]}
    path = folder / f"{'dialogue' if dialogue else 'prose'}-{context}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def render(manifest: Path, takes: Path, engine, reuse: bool) -> dict:
    """Plan and render every batch of the manifest in order; the engine's counters over the render."""
    from tasks.core.settings import get_settings
    from tasks.render.batch import render_batch
    from tasks.render.engines import prepare_engines
    from tasks.script.ingest import ingest
    from tasks.script.plan import group_jobs, plan_jobs

    settings = get_settings()
    script = ingest(manifest, settings.voices_dir)
    setup = prepare_engines(script, "higgs", settings.engine, "cpu", "auto")
    jobs = plan_jobs(script, setup.facts, setup.speaker_engine, settings.chunk_words)
    batches = group_jobs(jobs, setup.facts)
    engine.prefix_reuse = reuse
    engine._prefixes.clear()
    before = (engine.generate_calls, engine.generate_rows, engine.prefill_tokens, engine.prefill_tokens_reused)
    start = time.perf_counter()
    failures = []
    for batch in batches:
        failures += render_batch(batch, setup.prompts["higgs"], takes, "cpu", "auto").failures
    seconds = time.perf_counter() - start
    calls, rows, computed, reused = (now - then for now, then in zip(
        (engine.generate_calls, engine.generate_rows, engine.prefill_tokens, engine.prefill_tokens_reused), before))
    return {"takes": len(jobs), "batches": len(batches), "failures": len(failures), "calls": calls,
            "rows_per_call": round(rows / calls, 2), "prompt_tokens_per_take": round((computed + reused) / rows, 1),
            "prefill_tokens_per_take": round(computed / rows, 1), "reused_tokens_per_take": round(reused / rows, 1),
            "wall_s": round(seconds, 2)}


def main() -> None:
    scratch = prepare_environment()
    from engine.tiny_higgs import build_tiny_checkpoint

    os.environ["VOICEBATCH_HIGGS_MODEL"] = str(build_tiny_checkpoint(scratch / "tiny-higgs"))
    from engine.pool import warm_engine

    engine = warm_engine("higgs", "cpu", "auto").engine
    results = {}
    print(f"{CHAPTERS} chapters x {len(SENTENCES)} chunks, {FRAMES} frames at most per chunk, tiny model on the CPU")
    print(f"  {'':<28}{'calls':>6}{'rows/call':>10}{'prompt/take':>12}{'prefill/take':>13}{'reused/take':>12}"
          f"{'wall s':>8}")
    for book in ("prose", "dialogue"):
        for context in ("none", "chain"):
            manifest = write_book(scratch, book == "dialogue", context)
            for reuse in (False, True):
                name = f"{book}, {'chained' if context == 'chain' else 'unchained'}, reuse {'on' if reuse else 'off'}"
                r = render(manifest, scratch / "takes" / name.replace(", ", "-").replace(" ", "_"), engine, reuse)
                results[name] = r
                print(f"  {name:<28}{r['calls']:>6}{r['rows_per_call']:>10.1f}{r['prompt_tokens_per_take']:>12.0f}"
                      f"{r['prefill_tokens_per_take']:>13.0f}{r['reused_tokens_per_take']:>12.0f}{r['wall_s']:>8.1f}"
                      + (f"  ({r['failures']} failed)" if r["failures"] else ""))
    save("chains", {"chapters": CHAPTERS, "chunks": len(SENTENCES), "frames": FRAMES, "renders": results})


if __name__ == "__main__":
    main()
