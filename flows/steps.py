"""Thin Prefect wrappers around the pipeline's plain functions: names, retries, no input hashing.

Inputs here are scripts, plans and paths; engines stay in the process-wide warm pool, never in a task's
inputs. Results are not persisted: takes and outputs are files with their own content hashes.
"""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import (batch_render, cache, encode, export, ingest, mastering, qa, render, review_page, run_record,
                   sweep_score, voice_prep)

_plain = dict(cache_policy=NO_CACHE, persist_result=False)

ingest_manifest = task(name="ingest", **_plain)(ingest.ingest)
prepare_voice = task(name="prepare voice", task_run_name="voice: {voice.id}", **_plain)(voice_prep.prepare_voice)
prepare_engines = task(name="choose engines", **_plain)(render.prepare_engines)
load_engines = task(name="load engines", **_plain)(render.load_engines)
find_cached_takes = task(name="find cached takes", **_plain)(cache.find_takes)
render_batch = task(name="render", task_run_name="render {batch.name}", **_plain)(batch_render.render_batch)
export_book = task(name="assemble book", **_plain)(export.export_book)
normalise_takes = task(name="normalise takes", **_plain)(mastering.normalise_takes)
normalise_batch = task(name="normalise batch", **_plain)(mastering.normalise_batch)
record_batch = task(name="record takes", **_plain)(run_record.record_batch)
master_chapter = task(name="master chapter", task_run_name="master: {title}", **_plain)(mastering.master_chapter)
encode_chapter_mp3 = task(name="encode chapter mp3", **_plain)(encode.encode_chapter_mp3)
encode_book = task(name="encode book", task_run_name="encode {kind}", **_plain)(encode.encode_book)
check_takes = task(name="qa: transcribe and score takes", **_plain)(qa.check_batch)
write_review_page = task(name="review page", **_plain)(review_page.write_review_page)
score_sweep_takes = task(name="sweep: score takes", **_plain)(sweep_score.score_takes)
