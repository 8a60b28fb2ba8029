"""`voicebatch voices list | add | show` and `voicebatch doctor`, through the real console script."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from conftest import ROOT, run_cli
from reference_clips import speech, stereo, write_clip


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    work = tmp_path_factory.mktemp("voices-cli")
    shutil.copytree(ROOT / "voices" / "ava", work / "voices" / "ava")
    env = {"VOICEBATCH_VOICES_DIR": str(work / "voices"), "VOICEBATCH_OUTPUT_DIR": str(work / "out")}
    return work, env


def test_add_copies_the_clip_writes_voice_yaml_and_stages_it(library):
    work, env = library
    clip = write_clip(work / "sam.mp3", stereo(speech(44_100)), 44_100)
    done = run_cli("voices", "add", "sam", str(clip), "--name", "Sam", "--transcript", "Words.", env=env)
    assert done.returncode == 0, done.stderr
    assert "MP3, 44100 Hz stereo" in done.stdout
    folder = work / "voices" / "sam"
    assert (folder / "reference.mp3").read_bytes() == clip.read_bytes()
    assert yaml.safe_load((folder / "voice.yaml").read_text()) == {
        "name": "Sam", "reference": "reference.mp3", "transcript": "Words."}
    shown = json.loads(run_cli("voices", "show", "sam", "--json", env=env).stdout)
    assert shown["staged"]["source_rate"] == 44_100 and shown["staged"]["source_channels"] == 2
    assert abs(shown["staged"]["duration"] - len(speech()) / 24_000) <= 0.010
    assert shown["transcript"] == {"source": "manual", "text": "Words.", "model": None}
    listed = {v["id"]: v for v in json.loads(run_cli("voices", "list", "--json", env=env).stdout)}
    assert set(listed) >= {"ava", "sam"} and listed["ava"]["transcript"]["source"] == "manual"
    table = run_cli("voices", "list", env=env).stdout
    assert "sam" in table and "reference.mp3" in table


def test_add_refuses_bad_input_and_leaves_nothing_behind(library):
    work, env = library
    silent = write_clip(work / "quiet.wav", np.zeros(48_000, np.float32), 24_000, "PCM_16")
    cases = [
        (["voices", "add", "quiet", str(silent)], "is silent"),
        (["voices", "add", "ava", str(silent)], "already exists"),
        (["voices", "add", "../evil", str(silent)], "is not valid"),
        (["voices", "add", "ghost", str(work / "missing.wav")], "no such file"),
    ]
    for args, message in cases:
        done = run_cli(*args, env=env)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert {p.name for p in (work / "voices").iterdir()} <= {"ava", "sam"}  # no half-made or temporary folders
    assert not (work / "voices" / "quiet").exists()


def test_show_an_unknown_voice_names_the_known_ones(library):
    _, env = library
    done = run_cli("voices", "show", "nobody", env=env)
    assert done.returncode == 2 and "no such voice asset" in done.stderr and "ava" in done.stderr


def test_doctor_json_reports_versions_devices_and_every_check(library):
    work, env = library
    done = run_cli("doctor", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["engine"] == "hibari"
    assert {"python", "torch", "transformers", "prefect"} <= set(report["versions"])
    assert report["devices"]["chosen"] in {"cpu", "cuda", "mps"}
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"python", "torch", "transformers", "prefect", "device", "mps fallback", "engine",
                           "higgs model", "whisper model", "ffmpeg", "output dir", "provenance database"}
    assert all(c["status"] in {"ok", "warn", "fail"} for c in checks.values())
    assert checks["output dir"]["status"] == "ok" and checks["engine"]["status"] == "ok"


def test_doctor_fails_when_the_configured_engine_cannot_run_and_says_how_to_fix_it(library, tiny_whisper, tmp_path):
    _, env = library
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    done = run_cli("doctor", "--json", env={**env, "VOICEBATCH_ENGINE": "nonesuch", "VOICEBATCH_OUTPUT_DIR": str(blocked),
                                            "VOICEBATCH_WHISPER_MODEL": str(tiny_whisper), "PATH": str(tmp_path)})
    assert done.returncode == 1
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["engine"]["status"] == "fail" and "hibari" in checks["engine"]["fix"]
    assert checks["output dir"]["status"] == "fail" and "VOICEBATCH_OUTPUT_DIR" in checks["output dir"]["fix"]
    assert checks["whisper model"]["status"] == "ok"  # a local checkpoint path
    assert checks["ffmpeg"]["status"] == "warn" and "WAV, FLAC and OGG still work" in checks["ffmpeg"]["detail"]
    text = run_cli("doctor", env={**env, "VOICEBATCH_ENGINE": "nonesuch"})
    assert text.returncode == 1 and "[FAIL] engine" in text.stdout and "fix: set VOICEBATCH_ENGINE" in text.stdout
