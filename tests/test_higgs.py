"""The Higgs engine on a tiny random checkpoint loaded like a user's local directory: prompts, reuse of
reference codes, one generate call per batch, out-of-memory halving, determinism, errors, and the flow."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from engine import DecodingParams, RenderRequest, VoicePrompt
from engine.device import available_devices, choose_device, choose_dtype
from tasks.core.errors import EngineError
from tasks.core.settings import get_settings
from tasks.render.engines import voice_prompt
from tasks.script.voices import load_voice
from test_render_demo import rows

RATE = 24_000
SCENE = "A quiet harbour at dusk."


@pytest.fixture(scope="module")
def engine(tiny_higgs):
    from engine.higgs import HiggsEngine

    engine = HiggsEngine("cpu", "auto")
    engine.load()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def voices(voices_dir):
    return {v: voice_prompt(load_voice(voices_dir, v), "higgs") for v in ("ava", "joe")}


def requests(voice, texts, seed=1, scene=SCENE, **params):
    return [RenderRequest(t, voice, DecodingParams(seed=seed, **params), scene=scene) for t in texts]


LINES = ["The tide is coming in.", "Fog over the bay.", "A light on the rock.", "Up the stairs we go."]


def test_the_checkpoint_directory_loads_as_a_users_would_on_cpu_in_float32(engine, tiny_higgs):
    info = engine.info()
    assert (info.engine, info.model, info.device, info.dtype) == ("higgs", str(tiny_higgs), "cpu", "float32")
    assert set(info.versions) == {"transformers", "torch", "torchaudio"}
    assert type(engine._processor).__name__ == "HiggsAudioV2Processor"
    assert engine.batch_size == get_settings().higgs_batch_size


def test_close_frees_the_model_and_its_audio_tokenizer(tiny_higgs, voices):
    import gc
    import weakref

    from engine.higgs import HiggsEngine

    engine = HiggsEngine("cpu", "auto")
    engine.load()
    engine.render(requests(voices["ava"], LINES[:2]))  # encodes a reference and decodes audio: caches fill
    model, tokenizer = weakref.ref(engine._model), weakref.ref(engine._processor.audio_tokenizer)
    engine.close()
    gc.collect()
    # On a GPU whatever is still referenced stays allocated: a worker that closes its engine must get it back.
    assert model() is None and tokenizer() is None


def test_a_reference_is_encoded_once_per_voice_and_a_batch_is_one_generate_call(engine, voices):
    calls, encodings = engine.generate_calls, engine.reference_encodings
    fresh = voices["ava"].content_hash not in engine._reference_codes
    audios = engine.render(requests(voices["ava"], LINES))
    assert engine.generate_calls == calls + 1
    assert engine.reference_encodings == encodings + fresh
    assert len(audios) == 4 and all(a.dtype == np.float32 and a.ndim == 1 and a.size > 0 for a in audios)
    engine.render(requests(voices["ava"], LINES[:3], seed=2))  # same voice, new lines: no new encoding
    assert engine.reference_encodings == encodings + fresh and engine.generate_calls == calls + 2
    engine.render(requests(voices["joe"], LINES[:2]))
    assert engine.reference_encodings == encodings + fresh + (voices["joe"].content_hash != voices["ava"].content_hash)


def test_jobs_beyond_the_batch_size_or_with_other_parameters_take_more_calls(engine, voices, monkeypatch):
    monkeypatch.setattr(engine, "batch_size", 2)
    calls = engine.generate_calls
    engine.render(requests(voices["ava"], LINES + ["One more."]))  # 5 jobs, 2 per call
    assert engine.generate_calls == calls + 3
    mixed = requests(voices["ava"], LINES[:2]) + requests(voices["ava"], LINES[2:3], temperature=0.3)
    out = engine.render(mixed)
    assert engine.generate_calls == calls + 5 and len(out) == 3


def test_same_seed_and_inputs_give_the_same_audio_on_cpu(engine, voices):
    first = engine.render(requests(voices["ava"], LINES[:2], seed=5))
    again = engine.render(requests(voices["ava"], LINES[:2], seed=5))
    other = engine.render(requests(voices["ava"], LINES[:2], seed=6))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(a.shape != c.shape or not np.array_equal(a, c) for a, c in zip(first, other))


NEIGHBOURS = ["A gull on the rail.", "The kettle sang.", "Rain again, all night and into the morning.", "Nine.",
              "The keeper's log was open on the desk.", "Someone knocked twice.", "Lamp oil, wicks, matches."]


def test_a_rows_audio_does_not_depend_on_its_batch_mates_the_batch_size_or_a_split(engine, voices, monkeypatch):
    target = RenderRequest(LINES[1], voices["ava"], DecodingParams(seed=7, max_new_tokens=60), key="job-1")
    neighbours = requests(voices["ava"], NEIGHBOURS, seed=7, scene=None, max_new_tokens=60)
    (alone,) = engine.render([target])
    in_eight = engine.render(neighbours[:4] + [target] + neighbours[4:])[4]
    shuffled = engine.render(neighbours[::-1][:3] + [target])[3]  # other neighbours, other batch size
    real = engine.generate
    monkeypatch.setattr(engine, "generate", lambda reqs: real(reqs) if len(reqs) <= 2 else
                        (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory")))
    after_split = engine.render(neighbours[:5] + [target] + neighbours[5:])[5]
    monkeypatch.undo()
    for audio in (in_eight, shuffled, after_split):
        np.testing.assert_array_equal(audio, alone)
    other_seed = RenderRequest(LINES[1], voices["ava"], DecodingParams(seed=8, max_new_tokens=60), key="job-1")
    (other,) = engine.render([other_seed])
    assert other.shape != alone.shape or not np.array_equal(other, alone)
    assert target.measured["decode_path"] == "eager"  # on the CPU, unless VOICEBATCH_HIGGS_DECODE says otherwise


def test_rows_with_different_seeds_share_a_generate_call_and_keep_their_own_audio(engine, voices):
    alone = [engine.render(requests(voices["ava"], [LINES[i]], seed=seed))[0] for i, seed in ((0, 3), (1, 4))]
    calls = engine.generate_calls
    together = engine.render(requests(voices["ava"], LINES[:1], seed=3) + requests(voices["ava"], LINES[1:2], seed=4))
    assert engine.generate_calls == calls + 1
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)


def test_the_static_cache_path_gives_the_same_audio_as_the_eager_path(engine, voices):
    from conftest import setting

    batch = requests(voices["ava"], LINES[:3], seed=11, max_new_tokens=60)
    eager = engine.render(batch)
    with setting("VOICEBATCH_HIGGS_DECODE", "static"):
        again = requests(voices["ava"], LINES[:3], seed=11, max_new_tokens=60)
        static = engine.render(again)  # 3 rows padded to a bucket of 4, a cache of CACHE_BUCKET frames
    assert {r.measured["decode_path"] for r in batch} == {"eager"}
    assert {r.measured["decode_path"] for r in again} == {"static"}
    for a, b in zip(eager, static):
        np.testing.assert_array_equal(a, b)


def test_cloning_prompts_the_reference_and_transcript_and_smart_voice_has_none(engine, voices):
    ava = voices["ava"]
    turns, codes, _, _ = engine.conversation(RenderRequest("Hello there.", ava, DecodingParams(), scene=SCENE))
    assert [t["role"] for t in turns] == ["system", "scene", "user", "assistant", "user"]
    assert turns[1]["content"][0]["text"] == SCENE and turns[2]["content"][0]["text"] == ava.transcript
    assert turns[-1]["content"][0]["text"] == "Hello there." and len(codes) == 1
    assert codes[0].shape[1] == engine._model.config.num_codebooks
    smart = VoicePrompt("nobody", "no-reference")
    turns, codes, _, _ = engine.conversation(RenderRequest("Hello there.", smart, DecodingParams()))
    assert [t["role"] for t in turns] == ["system", "scene", "user"] and codes == []
    (audio,) = engine.render([RenderRequest("Hello there.", smart, DecodingParams(seed=3))])
    assert audio.size > 0 and np.all(np.isfinite(audio))


def test_the_prompt_holds_one_audio_token_per_reference_frame(engine, voices):
    inputs = engine.model_inputs(requests(voices["ava"], ["Short.", "A much longer line than the other one."]))
    audio_token = engine._model.config.audio_token_id
    frames = inputs["audio_input_ids_mask"].sum(dim=1)
    assert torch.equal((inputs["input_ids"] == audio_token).sum(dim=1) + engine._model.config.num_codebooks - 1, frames)
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][:, -1].all()  # left padding


def test_a_prompt_split_at_its_shared_prefix_has_the_ids_of_the_whole_prompt(engine, voices):
    """The prefix (system, scene, reference exchange) and the rest are tokenized apart so the prefix can be
    cached: together they are exactly the ids of the whole prompt as the processor's tokenizer reads it."""
    processor = engine._processor
    batch = requests(voices["ava"], ["Short.", "A much longer line than the other one."])
    for request, row in zip(batch, engine.prompt_rows(batch)):
        turns, codes, shared, _ = engine.conversation(request)
        text = processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        slots = text.split(processor.audio_token)
        whole = slots[0] + "".join(processor.get_audio_tokens(len(c)) + s for c, s in zip(codes, slots[1:]))
        ids = processor.tokenizer(whole, add_special_tokens=False)["input_ids"]
        assert list(row.prefix_ids + row.suffix_ids) == ids
        assert processor.tokenizer.decode(row.prefix_ids).endswith("<|eot_id|>") and shared == 4
    assert len({row.prefix_key for row in engine.prompt_rows(batch)}) == 1


def test_out_of_memory_halves_the_batch_until_it_fits(engine, voices, monkeypatch):
    real, sizes = engine.generate, []

    def generate_within_two(reqs):
        sizes.append(len(reqs))
        if len(reqs) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(reqs)

    monkeypatch.setattr(engine, "generate", generate_within_two)
    out = engine.render(requests(voices["ava"], LINES + ["One more."]))
    assert sizes == [5, 2, 3, 1, 2] and len(out) == 5 and all(a.size > 0 for a in out)

    def never_fits(reqs):
        raise RuntimeError("MPS backend out of memory (MPS allocated: 17 GB)")

    monkeypatch.setattr(engine, "generate", never_fits)
    with pytest.raises(EngineError, match="ran out of memory on cpu rendering one line"):
        engine.render(requests(voices["ava"], LINES[:2]))


def test_a_reference_without_transcript_is_refused_before_rendering(engine, voices):
    no_words = VoicePrompt("ava", voices["ava"].content_hash, voices["ava"].reference, None)
    with pytest.raises(EngineError, match="no transcript; .*add `transcript:`"):
        engine.effective_options(no_words)


@pytest.fixture
def higgs_model(monkeypatch):
    def use(model: str):
        monkeypatch.setenv("VOICEBATCH_HIGGS_MODEL", model)
        get_settings.cache_clear()
    yield use
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_missing_hub_model_offline_names_the_model_and_how_to_fetch_it(tiny_higgs, higgs_model, monkeypatch):
    from huggingface_hub import constants

    from engine.higgs import HiggsEngine

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    higgs_model("voicebatch-test/no-such-higgs")
    with pytest.raises(EngineError, match=r"'voicebatch-test/no-such-higgs' is not in the local .*hf download "
                                          r"voicebatch-test/no-such-higgs"):
        HiggsEngine("cpu").load()


def test_a_moved_checkpoint_points_at_its_audio_tokenizer_path(tiny_higgs, higgs_model, tmp_path):
    from engine.higgs import HiggsEngine

    moved = shutil.copytree(tiny_higgs, tmp_path / "moved")
    config = json.loads((moved / "processor_config.json").read_text())
    config["audio_tokenizer"]["audio_tokenizer_name_or_path"] = str(tmp_path / "gone")
    (moved / "processor_config.json").write_text(json.dumps(config))
    higgs_model(str(moved))
    with pytest.raises(EngineError, match="audio_tokenizer_name_or_path"):
        HiggsEngine("cpu").load()


def test_device_and_dtype_choice():
    assert choose_device("auto") == next(d for d in ("mps", "cuda", "cpu") if d in available_devices())
    assert choose_device("CPU") == "cpu"
    assert (choose_dtype("auto", "cuda:1"), choose_dtype("auto", "mps"), choose_dtype("auto", "cpu")) == \
        ("bfloat16", "float16", "float32")
    assert choose_dtype("bf16", "cpu") == "bfloat16"
    with pytest.raises(EngineError, match="not a device; use auto, cpu, mps, cuda or cuda:N"):
        choose_device("tpu")
    with pytest.raises(EngineError, match="not a dtype"):
        choose_dtype("int3", "cpu")
    for missing in {"cuda", "mps"} - set(available_devices()):
        with pytest.raises(EngineError, match=f"VOICEBATCH_DEVICE='{missing}', but this machine has only"):
            choose_device(missing)


# ---- the demo manifests through the real flow with --engine higgs -----------------------------------------

@pytest.fixture(scope="module")
def higgs_runs(tiny_higgs, root, tmp_path_factory):
    from flows.render import render_manifest

    out = tmp_path_factory.mktemp("higgs-out")
    return {name: render_manifest(manifest=str(root / "manifests" / f"{name}.yaml"), engine="higgs", output_dir=str(out))
            for name in ("demo-dialogue", "demo-audiobook")}


def test_demo_manifests_render_end_to_end_with_higgs_at_24k_mono(higgs_runs):
    for summary in higgs_runs.values():
        assert summary.status == "completed"
        for path in [*summary.chapters, summary.book]:
            info = sf.info(path)
            assert (info.samplerate, info.channels) == (RATE, 1), path
            audio, _ = sf.read(path)
            assert len(audio) > 0 and np.any(audio != 0)


def test_provenance_names_the_model_device_dtype_and_batches(higgs_runs, tiny_higgs):
    for name, summary in higgs_runs.items():
        (run,) = rows(summary.database, "SELECT * FROM runs WHERE run_id = ?", [summary.run_id])
        assert (run["device"], run["dtype"]) == ("cpu", "float32")
        assert json.loads(run["engines"])["higgs"]["model"] == str(tiny_higgs)
        renders = rows(summary.database, "SELECT * FROM renders WHERE run_id = ?", [summary.run_id])
        assert {(r["engine"], r["model"], r["device"], r["dtype"]) for r in renders} == \
            {("higgs", str(tiny_higgs), "cpu", "float32")}
        for batch in {r["batch"] for r in renders}:
            members = [r for r in renders if r["batch"] == batch]
            assert len({(r["voice_id"], r["params"]) for r in members}) == 1


def test_multi_speaker_lines_batch_by_voice_across_chapters(higgs_runs):
    summary = higgs_runs["demo-dialogue"]
    renders = rows(summary.database, "SELECT speaker, voice_id, batch, chapter FROM renders WHERE run_id = ?",
                   [summary.run_id])
    by_voice = {v: {r["batch"] for r in renders if r["voice_id"] == v} for v in ("ava", "joe")}
    assert all(len(b) == 1 for b in by_voice.values()) and by_voice["ava"] != by_voice["joe"]
    assert {r["chapter"] for r in renders} == {0, 1}  # both chapters' lines shared their voice's batch
    assert {(r["speaker"], r["voice_id"]) for r in renders} == {("Ava", "ava"), ("Joe", "joe")}


def test_longform_chunks_of_one_speaker_render_together_with_the_same_reference(higgs_runs):
    summary = higgs_runs["demo-audiobook"]
    prose = rows(summary.database, "SELECT chunk, voice_id, batch, seed FROM renders WHERE run_id = ? AND chapter = 0",
                 [summary.run_id])
    assert len(prose) > 1 and {(r["voice_id"], r["batch"], r["seed"]) for r in prose} == {("ava", prose[0]["batch"], 3)}


def test_the_scene_enters_the_cache_key_only_for_engines_that_honour_it(voices_dir):
    from tasks.script.plan import EngineFacts, cache_key

    voice = load_voice(voices_dir, "ava")
    params = DecodingParams()
    higgs = EngineFacts("higgs", "m", None, "1", frozenset({"seed", "scene"}))
    hibari = EngineFacts("hibari", "m", None, "1", frozenset({"seed"}))
    assert cache_key("Hi.", voice, params, higgs, "A harbour.") != cache_key("Hi.", voice, params, higgs, "A room.")
    assert cache_key("Hi.", voice, params, hibari, "A harbour.") == cache_key("Hi.", voice, params, hibari, None)


def test_rows_too_short_to_decode_come_back_empty_and_the_rest_decode_per_frame(engine):
    codebooks = engine._model.config.num_codebooks
    bos, eos = engine._processor.audio_stream_bos_id, engine._processor.audio_stream_eos_id
    rows = []
    for frames in (codebooks - 1, 20):
        codes = torch.randint(0, 1024, (frames, codebooks))
        rows.append(torch.cat([torch.full((1, codebooks), bos), codes, torch.full((25 - frames, codebooks), eos)]))
    short, full = engine.decode(torch.stack(rows))
    assert short.size == 0
    assert full.size == (20 - codebooks + 1) * 960  # the delay pattern costs codebooks - 1 frames
