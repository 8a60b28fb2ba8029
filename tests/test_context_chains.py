"""Context chains (`context: chain`): planning (order, window, keys, dialogue turns chained across speakers,
batches across chains), the chained prompt and prefix reuse on the tiny Higgs checkpoint, and an edit
re-rendering only the rest of its chain through the real flow."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import soundfile as sf
import torch
import yaml

from engine import DecodingParams, EarlierTake, RenderRequest, VoicePrompt
from tasks.script.ingest import ingest
from tasks.script.plan import CONTEXT_WINDOW, EngineFacts, group_jobs, ignored_context, plan_jobs
from test_higgs import engine, voices  # noqa: F401  (the tiny model loaded once per module, and two voices)
from test_render_demo import rows

SENTENCES = ["The boat came at dawn.", "Ava carried the crates up.", "The lamp needed oil.",
             "A gull watched us.", "Fog closed over the bay.", "The keeper lit the wick."]
HIGGS = EngineFacts("higgs", "m", None, "2", frozenset({"seed", "scene", "context"}), {"ava": {}, "joe": {}},
                    uses_reference=True, batch_size=8, seed_per_row=True)
HIBARI = EngineFacts("hibari", "m", None, "1", frozenset({"seed"}), {"ava": {}, "joe": {}})


def write_manifest(path, sentences=SENTENCES, chapters=1, context="chain", dialogue=False):
    """One chapter per ending (.!?;): `N` (ava) reads it as prose, or, as a dialogue, N and J (joe) take turns,
    J first in odd chapters."""
    def chapter(index: int) -> dict:  # chapters differ in their sentence endings: no two share a take
        said = [s[:-1] + ".!?;"[index] for s in sentences]
        if dialogue:
            return {"lines": [{"speaker": "NJ"[(i + index) % 2], "text": s} for i, s in enumerate(said)]}
        return {"speaker": "N", "text": " ".join(said)}

    data = {"title": "Chains", "defaults": {"seed": 2, "chunk_words": 5, "context": context, "max_new_tokens": 40},
            "voices": {"N": "ava", "J": "joe"},  # joe's voice.yaml has a seed of its own (11)
            "chapters": [{"title": f"c{i}", **chapter(i)} for i in range(chapters)]}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def plan(path, voices_dir, engine=HIGGS):
    script = ingest(path, voices_dir)
    return script, plan_jobs(script, {engine.name: engine}, {"N": engine.name, "J": engine.name}, 60)


def test_a_chain_links_each_chunk_to_the_one_before_in_order_within_a_window(tmp_path, voices_dir):
    _, jobs = plan(write_manifest(tmp_path / "m.yaml"), voices_dir)
    assert [j.text for j in jobs] == SENTENCES
    assert [j.link for j in jobs] == list(range(6))
    assert [j.predecessor for j in jobs] == [None] + [j.key for j in jobs[:-1]]
    assert CONTEXT_WINDOW == 2
    assert [t.key for t in jobs[3].context] == [jobs[1].key, jobs[2].key]  # the last two takes, oldest first
    assert [t.text for t in jobs[1].context] == [SENTENCES[0]] and jobs[0].context == ()
    assert all(j.speaker_tag is None and all(t.tag is None for t in j.context) for j in jobs)  # one voice: no tags


def test_a_dialogue_chains_its_turns_across_speakers_with_speaker_tags(tmp_path, voices_dir):
    _, jobs = plan(write_manifest(tmp_path / "d.yaml", dialogue=True), voices_dir)
    assert [j.speaker for j in jobs] == ["N", "J"] * 3
    assert [j.predecessor for j in jobs] == [None] + [j.key for j in jobs[:-1]]  # the turn before, whoever spoke it
    assert [j.link for j in jobs] == list(range(6))
    assert [j.speaker_tag for j in jobs] == [None, 1, 0, 1, 0, 1]  # tags once a second voice has spoken
    assert [(t.voice_id, t.tag) for t in jobs[4].context] == [("ava", 0), ("joe", 1)]
    assert [t.text for t in jobs[4].context] == SENTENCES[2:4]
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
    _, dialogue = plan(write_manifest(tmp_path / "f.yaml", dialogue=True), voices_dir)
    _, dialogue_edited = plan(write_manifest(tmp_path / "g.yaml", edited, dialogue=True), voices_dir)
    assert [a.key == b.key for a, b in zip(dialogue, dialogue_edited)] == [True, True, False, False, False, False]


def test_batches_hold_the_same_link_of_several_chains_and_run_in_link_order(tmp_path, voices_dir):
    _, jobs = plan(write_manifest(tmp_path / "m.yaml", chapters=4), voices_dir)
    batches = group_jobs(jobs, {"higgs": HIGGS})
    assert len(batches) == 6  # 24 chunks: one batch per link, each with a row from every chapter
    for link, batch in enumerate(batches):
        assert {j.link for j in batch.jobs} == {link} and {j.chapter for j in batch.jobs} == {0, 1, 2, 3}
    made_in = {j.key: b.index for b in batches for j in b.jobs}
    assert all(made_in[t.key] < made_in[j.key] for j in jobs for t in j.context)


def test_a_dialogue_links_turns_of_several_voices_and_chapters_in_one_batch(tmp_path, voices_dir):
    _, jobs = plan(write_manifest(tmp_path / "m.yaml", chapters=4, dialogue=True), voices_dir)
    batches = group_jobs(jobs, {"higgs": HIGGS})
    # First turns share their speaker's prompt prefix: one batch per voice. Later turns bring their own prompts
    # (their chain's turns): one batch per link, ava's and joe's turns from all four chapters together, each
    # with its own seed (Higgs samples each row from its own stream).
    assert [(b.jobs[0].link, b.voice_id, len(b.jobs)) for b in batches] == [
        (0, "ava", 2), (0, "joe", 2)] + [(link, "joe+ava" if link % 2 else "ava+joe", 4) for link in range(1, 6)]
    assert all({j.params.seed for j in b.jobs} == {2, 11} for b in batches[2:])
    assert len(group_jobs(jobs, {"higgs": replace(HIGGS, seed_per_row=False)})) == 12  # else: by voice and seed
    made_in = {j.key: b.index for b in batches for j in b.jobs}
    assert all(made_in[t.key] < made_in[j.key] for j in jobs for t in j.context)


PARAMS = DecodingParams(seed=4, max_new_tokens=40)


def earlier_take(engine, tmp_path, voice, text, key, tag=None) -> EarlierTake:
    """A rendered take on disk, as a context chain hands it to the engine."""
    (audio,) = engine.render([RenderRequest(text, voice, PARAMS, key=key)])
    path = tmp_path / f"{key}.wav"
    sf.write(path, np.concatenate([audio, np.zeros(24_000, np.float32)]), 24_000)
    return EarlierTake(VoicePrompt(voice.voice_id, f"take:{key}", path, text), voice, tag)


def test_a_chained_prompt_holds_its_predecessors_codes(engine, voices, tmp_path):
    ava = voices["ava"]
    previous = earlier_take(engine, tmp_path, ava, SENTENCES[0], "k0")
    request = RenderRequest(SENTENCES[1], ava, PARAMS, key="k1", context=(previous,))
    inputs = engine.model_inputs([request, RenderRequest(SENTENCES[2], ava, PARAMS, key="k2")])
    reference, earlier = engine.reference_codes(ava), engine.reference_codes(previous.take)
    audio = inputs["audio_input_ids"][0]
    assert torch.equal(audio[:len(reference)], reference)
    assert torch.equal(audio[len(reference):len(reference) + len(earlier)], earlier)
    assert inputs["audio_input_ids_mask"].sum(dim=1).tolist() == [len(reference) + len(earlier), len(reference)]
    turns, _, shared, _ = engine.conversation(request)
    assert [t["role"] for t in turns] == ["system", "scene", "user", "assistant", "user", "assistant", "user"]
    assert turns[4]["content"][0]["text"] == SENTENCES[0] and shared == 4  # system, scene, the reference exchange
    (chained,) = engine.render([request])
    assert chained.size > 0 and request.measured["decode_path"] == "eager"


def test_a_dialogue_turn_is_prompted_with_both_references_and_the_other_speakers_turn(engine, voices, tmp_path):
    ava, joe = voices["ava"], voices["joe"]
    processor = engine._processor
    asked = earlier_take(engine, tmp_path, ava, SENTENCES[0], "d0", tag=0)
    answered = earlier_take(engine, tmp_path, joe, SENTENCES[1], "d1", tag=1)
    request = RenderRequest(SENTENCES[2], ava, PARAMS, key="d2", context=(asked, answered), speaker_tag=0)
    inputs = engine.model_inputs([request])
    # Read back from the processor's inputs: the audio codes in prompt order, and the text around them.
    clips = [engine.reference_codes(v) for v in (ava, joe, asked.take, answered.take)]
    audio = inputs["audio_input_ids"][0]
    starts = np.cumsum([0] + [len(c) for c in clips])
    for clip, start in zip(clips, starts):
        assert torch.equal(audio[start:start + len(clip)], clip)
    assert inputs["audio_input_ids_mask"][0].sum() == starts[-1]
    text = processor.tokenizer.decode(inputs["input_ids"][0]).replace(processor.audio_token, "")
    text = text.replace(processor.audio_delay_token, "")
    clip = "<|audio_out_bos|><|audio_eos|>"  # each reference, its audio tokens taken out
    assert f"SPEAKER0: {clip}\nSPEAKER1: {clip}\n<|scene_desc_end|>" in text
    said = [text.index(f"[SPEAKER{t}] {s}") for t, s in ((0, SENTENCES[0]), (1, SENTENCES[1]), (0, SENTENCES[2]))]
    assert said == sorted(said) and text.endswith("<|audio_out_bos|>")
    ids = inputs["input_ids"][0]
    frames = (ids == processor.audio_token_id) | (ids == processor.audio_delay_token_id)
    assert int(frames.sum()) == starts[-1]  # one audio token per frame of the four clips
    (audio_out,) = engine.render([request])
    assert audio_out.size > 0


def test_prefix_reuse_gives_the_same_codes_as_prefilling_whole_prompts(engine, voices, tmp_path, monkeypatch):
    """Rows of one voice, a chained row and a dialogue turn in one generate call: the codes are the same whether
    each prompt is prefilled whole, or its prefix comes from the prefix cache (computed now, then kept), on the
    eager and the static path; the prefill saved is counted."""
    from conftest import setting

    ava, joe = voices["ava"], voices["joe"]
    first = earlier_take(engine, tmp_path, ava, SENTENCES[0], "p0")
    answer = earlier_take(engine, tmp_path, joe, SENTENCES[1], "p1", tag=1)
    asked = EarlierTake(first.take, ava, 0)
    batch = [RenderRequest(SENTENCES[2], ava, PARAMS, key="p2"), RenderRequest(SENTENCES[3], ava, PARAMS, key="p3"),
             RenderRequest(SENTENCES[4], ava, PARAMS, key="p4", context=(first,)),
             RenderRequest(SENTENCES[5], ava, PARAMS, key="p5", context=(asked, answer), speaker_tag=0),
             RenderRequest(SENTENCES[0], joe, PARAMS, key="p6")]  # 5 rows: the static path pads them to 8
    codes, real_decode = [], engine.decode
    monkeypatch.setattr(engine, "decode", lambda frames, *a: (codes.append(frames.clone()), real_decode(frames, *a))[1])
    prompt = sum(len(r) for r in engine.prompt_rows(batch))
    counted = []
    for path in ("eager", "static"):
        with setting("VOICEBATCH_HIGGS_DECODE", path):
            for reuse in (False, True, True):  # whole prompts; the prefixes computed; the prefixes from the cache
                engine.prefix_reuse = reuse
                if not reuse:
                    engine._prefixes.clear()
                before = engine.prefill_tokens, engine.prefill_tokens_reused
                engine.generate(batch)
                counted.append((engine.prefill_tokens - before[0], engine.prefill_tokens_reused - before[1]))
                assert {r.measured["decode_path"] for r in batch} == {path}
    engine.prefix_reuse = True
    for frames in codes[1:]:
        assert torch.equal(frames, codes[0])
    prompts = engine.prompt_rows(batch)
    ava_prefix, dialogue_prefix, joe_prefix = (len(prompts[i].prefix_ids) for i in (0, 3, 4))
    assert len({p.prefix_key for p in prompts}) == 3 and len({p.prefix_key for p in prompts[:3]}) == 1
    rest = sum(len(p.suffix_ids) for p in prompts)
    # Each prefix computed once and shared by its rows, then every prefix from the cache.
    computed = (rest + ava_prefix + dialogue_prefix + joe_prefix, 2 * ava_prefix)
    cached = (rest, 3 * ava_prefix + dialogue_prefix + joe_prefix)
    assert counted == [(prompt, 0), computed, cached] * 2
    assert all(sum(c) == prompt for c in counted)


def test_an_edit_in_turn_3_of_a_6_turn_dialogue_rerenders_turns_3_to_6_only(tiny_higgs, voices_dir, tmp_path):
    from flows.render import render_manifest

    out = tmp_path / "out"
    first = render_manifest(manifest=str(write_manifest(tmp_path / "m.yaml", dialogue=True)), engine="higgs",
                            output_dir=str(out))
    edited = SENTENCES[:2] + ["The lamp needed paraffin."] + SENTENCES[3:]
    second = render_manifest(manifest=str(write_manifest(tmp_path / "m.yaml", edited, dialogue=True)), engine="higgs",
                             output_dir=str(out))
    assert first.status == second.status == "completed"
    sql = "SELECT line, speaker, cache_key, predecessor, cache_hit, batch FROM renders WHERE run_id = ? ORDER BY line"
    before, after = rows(first.database, sql, [first.run_id]), rows(second.database, sql, [second.run_id])
    assert [r["speaker"] for r in after] == ["N", "J"] * 3
    assert [r["cache_hit"] for r in after] == [True, True, False, False, False, False]
    # Each turn's predecessor is the turn before it, the other speaker's: one chain across speakers.
    assert [r["predecessor"] for r in before] == [None] + [r["cache_key"] for r in before[:-1]]
    assert [r["predecessor"] for r in after] == [None] + [r["cache_key"] for r in after[:-1]]
    assert len({r["batch"] for r in before}) == 6  # one link per generate call, in order
    assert [r["cache_key"] for r in after[:2]] == [r["cache_key"] for r in before[:2]]


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
