"""The embedded engines render real speech, deterministically, behind the one interface."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from engine import DecodingParams, RenderRequest, VoicePrompt
from tasks.core.errors import EngineError
from engine.pool import lane_lock, warm_engine
from engine.registry import engine_class


def request(text, seed=0, **options):
    voice = VoicePrompt("v", "hash", options=tuple(sorted(options.items())))
    return RenderRequest(text, voice, DecodingParams(seed=seed))


def test_hibari_is_deterministic_per_seed_and_24k_speech():
    engine = warm_engine("hibari").engine
    a, b, c = engine.render([request("The tide is coming in.", 1), request("The tide is coming in.", 1),
                             request("The tide is coming in.", 2)])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and 0.8 < len(a) / 24_000 < 4.0
    assert np.sqrt(np.mean(a**2)) > 0.01


def test_warm_pool_loads_once_and_has_one_lane_per_device():
    first = warm_engine("hibari")
    again = warm_engine("hibari")
    assert again.engine is first.engine and again.load_seconds == 0.0
    assert lane_lock("cpu") is lane_lock("cpu") and lane_lock("cpu") is not lane_lock("cuda:0")


def test_single_threaded_cpu_engines_get_a_lane_per_core_each_with_its_own_instance(monkeypatch):
    from engine.pool import checkout, lane_count
    from tasks.core.settings import get_settings

    monkeypatch.setenv("VOICEBATCH_CPU_LANES", "2")
    get_settings.cache_clear()
    try:
        assert lane_count(warm_engine("hibari").engine) == 2
        with checkout("hibari") as a, checkout("hibari") as b:  # two lanes: both held at once, no deadlock
            assert a is not b and a.device == b.device == "cpu"
        monkeypatch.setenv("VOICEBATCH_CPU_LANES", "1")
        get_settings.cache_clear()
        with checkout("hibari") as only:
            assert only is warm_engine("hibari").engine
    finally:
        get_settings.cache_clear()


def test_unavailable_hibari_voice_falls_back_to_the_bundled_one_with_a_warning(caplog, monkeypatch, tmp_path):
    monkeypatch.setenv("HIBARI_HOME", str(tmp_path))  # an empty cache: fenrir must be downloaded, which fails offline
    monkeypatch.setattr(engine_class("hibari"), "_resolved", {})  # forget what this process resolved before
    engine = engine_class("hibari")()
    with caplog.at_level(logging.WARNING, logger="engine.hibari"):
        options = engine.effective_options(request("x", voice="fenrir").voice)
    assert options["voice"] == "heart"
    assert "fenrir" in caplog.text and "bundled" in caplog.text


def test_hibari_refuses_unknown_voices_and_options():
    engine = warm_engine("hibari").engine
    with pytest.raises(EngineError, match="hibari has no voice 'nobody'"):
        engine.effective_options(request("x", voice="nobody").voice)
    with pytest.raises(Exception, match="pitch"):
        engine.effective_options(request("x", pitch=2).voice)


def test_piper_renders_a_different_voice_at_24k_and_ignores_seed():
    piper = warm_engine("piper").engine
    hibari = warm_engine("hibari").engine
    p1, p2 = piper.render([request("The tide is coming in.", 1), request("The tide is coming in.", 2)])
    np.testing.assert_array_equal(p1, p2)
    assert "seed" not in piper.honours and "seed" in hibari.honours
    h = hibari.render([request("The tide is coming in.", 1)])[0]

    def pitch(x):
        """Median F0 (Hz) of the voiced 40 ms frames, by normalised autocorrelation."""
        frame, lo, hi = 960, 24_000 // 400, 24_000 // 60
        frames = [x[i:i + frame].astype(np.float64) for i in range(0, len(x) - frame, 240)]
        loud = max(np.sum(f**2) for f in frames)
        f0 = []
        for f in frames:
            if np.sum(f**2) < 0.2 * loud:
                continue
            f = f - f.mean()
            ac = np.correlate(f, f, "full")[frame - 1:] / np.sum(f**2)
            lag = lo + int(np.argmax(ac[lo:hi]))
            if ac[lag] > 0.5:
                f0.append(24_000 / lag)
        return float(np.median(f0))
    assert pitch(p1) < pitch(h)  # Joe's voice sits lower than Ava's


def test_unknown_engine_lists_the_known_ones():
    with pytest.raises(EngineError, match="unknown engine 'nope'; available engines: hibari, higgs, piper"):
        engine_class("nope")


def test_a_voice_preferring_an_engine_that_cannot_run_falls_back_to_the_default_and_says_so_once(
        caplog, tmp_path, voices_dir):
    import shutil

    import yaml

    from tasks.script.ingest import ingest
    from tasks.script.engine_choice import speaker_engines

    voices = tmp_path / "voices"
    shutil.copytree(voices_dir / "ava", voices / "ava")
    spec = yaml.safe_load((voices / "ava" / "voice.yaml").read_text())
    (voices / "ava" / "voice.yaml").write_text(yaml.safe_dump({**spec, "engine": "nosuch"}))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"title": "T", "voices": {"Ava": "ava"},
                                        "chapters": [{"title": "C", "lines": [{"speaker": "Ava", "text": "Hi."}]}]}))
    script = ingest(manifest, voices)
    with caplog.at_level(logging.WARNING, logger="tasks.script.engine_choice"):
        first = speaker_engines(script, None, "hibari")
        again = speaker_engines(script, None, "hibari")  # the CLI's pre-check, then the flow's own planning
    assert first == again == {"Ava": "hibari"}
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 1, told
    assert "voice 'ava' (speaker Ava) prefers engine 'nosuch'" in told[0] and "with 'hibari' instead" in told[0]
    assert speaker_engines(script, "piper", "hibari") == {"Ava": "piper"}  # --engine wins over the preference
