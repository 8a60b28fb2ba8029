"""Planning is pure: parameter precedence, cache keys that change only with the sound, and grouping."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from tasks.script.ingest import ingest
from tasks.script.plan import EngineFacts, group_jobs, plan_jobs

HIBARI = EngineFacts("hibari", "hibari-tts", "0.2.1", "1", frozenset({"seed"}), {"ava": {"voice": "heart"}, "joe": {"voice": "heart"}})
ALL = dataclasses.replace(HIBARI, name="all", honours=frozenset({"seed", "temperature", "top_k", "top_p"}))


def script(tmp_path: Path, voices_dir: Path, data: dict):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    return ingest(path, voices_dir)


def base(**defaults):
    return {"title": "T", "defaults": {"seed": 1, **defaults}, "voices": {"A": {"voice": "ava", "temperature": 0.4}, "B": "joe"},
            "chapters": [{"title": "c", "lines": [{"speaker": "A", "text": "One."}, {"speaker": "B", "text": "Two."},
                                                  {"speaker": "A", "text": "Three.", "top_k": 7}]}]}


def jobs_for(tmp_path, voices_dir, data, facts=HIBARI):
    s = script(tmp_path, voices_dir, data)
    return plan_jobs(s, {facts.name: facts}, {sp: facts.name for sp in s.voices}, 60)


def test_parameters_resolve_line_over_speaker_over_voice_over_defaults(tmp_path, voices_dir):
    jobs = jobs_for(tmp_path, voices_dir, base(temperature=0.9))
    assert (jobs[0].params.temperature, jobs[0].params.seed) == (0.4, 1)   # speaker override beats defaults
    assert (jobs[1].params.temperature, jobs[1].params.seed) == (0.9, 11)  # joe's voice.yaml seed beats defaults
    assert jobs[2].params.top_k == 7 and jobs[0].params.top_k == 50        # the line's own override


def test_inserting_a_line_leaves_the_other_keys_alone(tmp_path, voices_dir):
    data = base()
    before = [j.key for j in jobs_for(tmp_path, voices_dir, data)]
    data["chapters"][0]["lines"].insert(1, {"speaker": "B", "text": "Inserted."})
    after = [j.key for j in jobs_for(tmp_path, voices_dir, data)]
    assert after[:1] + after[2:] == before and after[1] not in before


def test_keys_change_with_what_the_engine_honours_only(tmp_path, voices_dir):
    original = jobs_for(tmp_path, voices_dir, base())
    warmer = jobs_for(tmp_path, voices_dir, base(temperature=1.3))
    reseeded = jobs_for(tmp_path, voices_dir, base(seed=2))
    assert [j.key for j in warmer][1] == original[1].key  # hibari ignores temperature
    assert reseeded[0].key != original[0].key
    assert jobs_for(tmp_path, voices_dir, base(temperature=1.3), ALL)[1].key != jobs_for(tmp_path, voices_dir, base(), ALL)[1].key
    other_model = dataclasses.replace(HIBARI, revision="0.3.0")
    assert jobs_for(tmp_path, voices_dir, base(), other_model)[0].key != original[0].key


def test_grouping_batches_same_voice_and_params_and_renders_duplicates_once(tmp_path, voices_dir):
    data = base()
    data["chapters"][0]["lines"] += [{"speaker": "A", "text": "One."}, {"speaker": "A", "text": "Four."}]
    jobs = jobs_for(tmp_path, voices_dir, data, ALL)
    batches = group_jobs(jobs, {"all": ALL}, batch_size=16)
    keys = [j.key for b in batches for j in b.jobs]
    assert len(keys) == len(set(keys)) == len({j.key for j in jobs}) == 4
    assert all(len({(j.voice_id, j.params) for j in b.jobs}) == 1 for b in batches)
    assert [len(b.jobs) for b in group_jobs(jobs, {"all": ALL}, batch_size=1)] == [1, 1, 1, 1]


def test_prose_is_chunked_and_pause_after_sits_on_the_last_chunk(tmp_path, voices_dir):
    data = base()
    data["chapters"] = [{"title": "p", "text": "First sentence here. Second one follows. Third ends it."}]
    jobs = jobs_for(tmp_path, voices_dir, {**data, "defaults": {"chunk_words": 6}})
    assert [j.text for j in jobs] == ["First sentence here. Second one follows.", "Third ends it."]
    assert [j.chunk for j in jobs] == [0, 1] and all(j.speaker == "A" for j in jobs)
