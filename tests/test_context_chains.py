"""Context chains (`context: chain`): planning (order, keys, batches across chains), the chained prompt on the
tiny Higgs checkpoint, and an edit re-rendering only the rest of its chain through the real flow."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
import yaml

from engine import DecodingParams, RenderRequest, VoicePrompt
from tasks.script.ingest import ingest
from tasks.render.engines import voice_prompt
from tasks.script.plan import EngineFacts, group_jobs, ignored_context, plan_jobs
from tasks.script.voices import load_voice
from test_render_demo import rows

SENTENCES = ["The boat came at dawn.", "Ava carried the crates up.", "The lamp needed oil.",
             "A gull watched us.", "Fog closed over the bay.", "The keeper lit the wick."]
HIGGS = EngineFacts("higgs", "m", None, "2", frozenset({"seed", "scene", "context"}), {"ava": {}, "joe": {}},
                    uses_reference=True, batch_size=8)
HIBARI = EngineFacts("hibari", "m", None, "1", frozenset({"seed"}), {"ava": {}, "joe": {}})


def write_manifest(path, sentences=SENTENCES, chapters=1, context="chain", dialogue=False):
    def chapter(ending: str) -> dict:  # chapters differ in their sentence endings: no two share a take
        said = [s[:-1] + ending for s in sentences]
        if dialogue:
            return {"lines": [{"speaker": "N" if i % 2 == 0 else "J", "text": s} for i, s in enumerate(said)]}
        return {"speaker": "N", "text": " ".join(said)}

    data = {"title": "Chains", "defaults": {"seed": 2, "chunk_words": 5, "context": context, "max_new_tokens": 40},
            "voices": {"N": "ava", "J": "joe"},
            "chapters": [{"title": f"c{i}", **chapter(".!?;"[i])} for i in range(chapters)]}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def plan(path, voices_dir, engine=HIGGS):
    script = ingest(path, voices_dir)
    return script, plan_jobs(script, {engine.name: engine}, {"N": engine.name, "J": engine.name}, 60)


def test_a_chain_links_each_chunk_to_its_speakers_previous_one_in_order(tmp_path, voices_dir):
    _, jobs = plan(write_manifest(tmp_path / "m.yaml"), voices_dir)
    assert [j.text for j in jobs] == SENTENCES
    assert [j.link for j in jobs] == list(range(6))
    assert [j.predecessor for j in jobs] == [None] + [j.key for j in jobs[:-1]]
    assert jobs[3].predecessor_text == SENTENCES[2]
    _, dialogue = plan(write_manifest(tmp_path / "d.yaml", dialogue=True), voices_dir)
    by_speaker = {s: [j for j in dialogue if j.speaker == s] for s in ("N", "J")}
    for chain in by_speaker.values():  # each speaker's turns chain on their own previous turn
        assert [j.predecessor for j in chain] == [None] + [j.key for j in chain[:-1]]


def test_chained_keys_change_from_an_edit_on_and_unchained_and_other_engines_keep_theirs(tmp_path, voices_dir):
    _, chained = plan(write_manifest(tmp_path / "a.yaml"), voices_dir)
    edited = SENTENCES[:2] + ["The lamp needed paraffin."] + SENTENCES[3:]
    _, after = plan(write_manifest(tmp_path / "b.yaml", edited), voices_dir)
    assert [a.key == b.key for a, b in zip(chained, after)] == [True, True, False, False, False, False]
    _, unchained = plan(write_manifest(tmp_path / "c.yaml", context="none"), voices_dir)
    assert chained[0].key == unchained[0].key and all(a.key != b.key for a, b in zip(chained[1:], unchained[1:]))
    assert all(j.predecessor is None and j.link == 0 for j in unchained)
    script, hibari_chained = plan(write_manifest(tmp_path / "d.yaml"), voices_dir, HIBARI)
    _, hibari_plain = plan(write_manifest(tmp_path / "e.yaml", context="none"), voices_dir, HIBARI)
    assert [j.key for j in hibari_chained] == [j.key for j in hibari_plain]
    assert ignored_context(script, {"hibari": HIBARI}, {"N": "hibari", "J": "hibari"}) == [
        "engine 'hibari' ignores `context: chain` (chapters 1): its takes are rendered from the voice reference "
        "alone and keep their cache keys"]


def test_batches_hold_the_same_link_of_several_chains_and_run_in_link_order(tmp_path, voices_dir):
    _, jobs = plan(write_manifest(tmp_path / "m.yaml", chapters=4), voices_dir)
    batches = group_jobs(jobs, {"higgs": HIGGS})
    assert len(batches) == 6  # 24 chunks: one batch per link, each with a row from every chapter
    for link, batch in enumerate(batches):
        assert {j.link for j in batch.jobs} == {link} and {j.chapter for j in batch.jobs} == {0, 1, 2, 3}
    made_in = {j.key: b.index for b in batches for j in b.jobs}
    assert all(made_in[j.predecessor] < made_in[j.key] for j in jobs if j.predecessor)


def test_a_chained_prompt_holds_its_predecessors_codes(tiny_higgs, voices_dir, tmp_path):
    from engine.higgs import HiggsEngine

    engine = HiggsEngine("cpu", "auto")
    engine.load()
    try:
        ava = voice_prompt(load_voice(voices_dir, "ava"), "higgs")
        params = DecodingParams(seed=4, max_new_tokens=40)
        (before,) = engine.render([RenderRequest(SENTENCES[0], ava, params, key="k0")])
        take = tmp_path / "k0.wav"
        sf.write(take, np.concatenate([before, np.zeros(24_000, np.float32)]), 24_000)
        previous = VoicePrompt("ava", "take:k0", take, SENTENCES[0])
        request = RenderRequest(SENTENCES[1], ava, params, key="k1", context=(previous,))
        inputs = engine.model_inputs([request, RenderRequest(SENTENCES[2], ava, params, key="k2")])
        reference, earlier = engine.reference_codes(ava), engine.reference_codes(previous)
        audio = inputs["audio_input_ids"][0]
        assert torch.equal(audio[:len(reference)], reference)
        assert torch.equal(audio[len(reference):len(reference) + len(earlier)], earlier)
        assert inputs["audio_input_ids_mask"].sum(dim=1).tolist() == [len(reference) + len(earlier), len(reference)]
        turns, _ = engine.conversation(request)
        assert [t["role"] for t in turns] == ["system", "scene", "user", "assistant", "user", "assistant", "user"]
        assert turns[4]["content"][0]["text"] == SENTENCES[0]
        (chained,) = engine.render([request])
        assert chained.size > 0 and request.measured["decode_path"] == "eager"
    finally:
        engine.close()


def test_an_edit_in_chunk_3_of_6_rerenders_chunks_3_to_6_only(tiny_higgs, voices_dir, tmp_path):
    from flows.render import render_manifest

    out = tmp_path / "out"
    first = render_manifest(manifest=str(write_manifest(tmp_path / "m.yaml")), engine="higgs", output_dir=str(out))
    edited = SENTENCES[:2] + ["The lamp needed paraffin."] + SENTENCES[3:]
    second = render_manifest(manifest=str(write_manifest(tmp_path / "m.yaml", edited)), engine="higgs",
                             output_dir=str(out))
    assert first.status == second.status == "completed"
    sql = "SELECT chunk, cache_key, predecessor, cache_hit, batch FROM renders WHERE run_id = ? ORDER BY chunk"
    before, after = rows(first.database, sql, [first.run_id]), rows(second.database, sql, [second.run_id])
    assert [r["cache_hit"] for r in after] == [True, True, False, False, False, False]
    assert [r["predecessor"] for r in before] == [None] + [r["cache_key"] for r in before[:-1]]
    assert [r["predecessor"] for r in after] == [None] + [r["cache_key"] for r in after[:-1]]
    assert len({r["batch"] for r in before}) == 6  # one link per generate call, in order


def test_a_chained_render_killed_part_way_resumes_without_rendering_finished_links(tiny_higgs, tmp_path):
    from conftest import render_killed_after, run_cli

    m = write_manifest(tmp_path / "m.yaml", SENTENCES * 2)  # one chain of 12 links: 12 generate calls in order
    out = tmp_path / "out"
    env = {"PREFECT_LOGGING_LEVEL": "WARNING"}
    survived = render_killed_after(m, out, 3, "--engine", "higgs", env=env, wait=240)
    assert 3 <= survived < 12, "the kill should land part-way through the chain"
    resumed = run_cli("render", str(m), "--engine", "higgs", "--out", str(out), "--json", env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    db = str(out / "provenance.duckdb")
    (run,) = rows(db, "SELECT run_id, status FROM runs WHERE status = 'completed'")
    renders = rows(db, "SELECT chunk, cache_hit, cache_key, predecessor FROM renders WHERE run_id = ? ORDER BY chunk",
                   [run["run_id"]])
    hits = [r["cache_hit"] for r in renders]
    # Finished links are reused (a take written but not yet recorded when the kill landed may be rendered again),
    # then the rest of the chain renders: never a hit after a miss.
    assert hits == sorted(hits, reverse=True) and sum(hits) >= survived - 1
    assert [r["predecessor"] for r in renders] == [None] + [r["cache_key"] for r in renders[:-1]]
