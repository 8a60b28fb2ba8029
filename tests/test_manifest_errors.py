"""Bad manifests are refused before anything renders, naming the file, the field path and what is allowed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.core.errors import ManifestError
from tasks.script.ingest import ingest

GOOD = {
    "title": "T",
    "voices": {"Ava": "ava", "Joe": {"voice": "joe", "temperature": 0.5}},
    "chapters": [
        {"title": "One", "text": "Hello there. How are you?"},
        {"title": "Two", "lines": [{"speaker": "Ava", "text": "Hi."}, {"speaker": "Joe", "text": "Hello.", "seed": 4}]},
    ],
}


def write(tmp_path: Path, data, name="m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data), encoding="utf-8")
    return path


def refused(tmp_path, voices_dir, data, name="m.yaml") -> str:
    path = write(tmp_path, data, name)
    with pytest.raises(ManifestError) as info:
        ingest(path, voices_dir)
    message = str(info.value)
    assert str(path) in message
    return message


def mutate(**changes):
    data = json.loads(json.dumps(GOOD))
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split("__")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        if value is KeyError:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return data


def test_good_manifest_yaml_and_json_are_accepted(tmp_path, voices_dir):
    for name in ("m.yaml", "m.json"):
        script = ingest(write(tmp_path, GOOD, name), voices_dir)
        assert [c.title for c in script.chapters] == ["One", "Two"]
        assert script.chapters[0].prose and not script.chapters[1].prose
        assert script.voices["Joe"].id == "joe"


@pytest.mark.parametrize("changes, expected", [
    ({"chapters__1__lines__1__speaker": "Zed"}, ["chapters[1].lines[1].speaker", "'Zed'", "Ava, Joe"]),
    ({"voices__Ava": "nobody"}, ["voices.Ava.voice", "'nobody'", "ava, joe"]),
    ({"chapters__1__lines__0__text": "   "}, ["chapters[1].lines[0].text", "empty"]),
    ({"chapters__0__text": ""}, ["chapters[0].text", "empty"]),
    ({"chapters__1__lines__0__temperature": 0}, ["chapters[1].lines[0].temperature", "greater than 0", "got 0"]),
    ({"voices__Joe__temperature": -1.5}, ["voices.Joe.temperature", "greater than 0"]),
    ({"defaults": {"top_p": 1.5}}, ["defaults.top_p", "less than or equal to 1", "got 1.5"]),
    ({"defaults": {"top_p": 0}}, ["defaults.top_p", "greater than 0"]),
    ({"chapters__1__lines__1__top_k": 0}, ["chapters[1].lines[1].top_k", "greater than or equal to 1"]),
    ({"chapters__1__lines__1__colour": "red"}, ["chapters[1].lines[1]", "unknown key 'colour'", "allowed here:", "pause_after"]),
    ({"defaults": {"repetition_penalty": 1.1}}, ["defaults", "repetition_penalty", "refuses", "allowed here:"]),
    ({"chapters__0__lines": [{"speaker": "Ava", "text": "x"}]}, ["chapters[0]", "exactly one of text, lines or script"]),
    ({"title": KeyError}, ["title", "required field is missing"]),
    ({"chapters": []}, ["chapters", "at least 1"]),
    ({"chapters__0__speaker": "Ghost"}, ["chapters[0].speaker", "'Ghost'"]),
])
def test_each_bad_field_is_named_with_its_path(tmp_path, voices_dir, changes, expected):
    message = refused(tmp_path, voices_dir, mutate(**changes))
    for part in expected:
        assert part in message, (part, message)


def test_every_problem_is_listed_not_only_the_first(tmp_path, voices_dir):
    message = refused(tmp_path, voices_dir, mutate(chapters__1__lines__0__temperature=0, defaults={"top_k": 0}))
    assert "chapters[1].lines[0].temperature" in message and "defaults.top_k" in message


def test_malformed_yaml_names_line_and_column(tmp_path, voices_dir):
    path = tmp_path / "bad.yaml"
    path.write_text("title: T\nvoices: {Ava: ava\nchapters: []\n")
    with pytest.raises(ManifestError, match=r"(?s)bad.yaml.*line \d+, column \d+: malformed YAML"):
        ingest(path, voices_dir)


def test_malformed_json_names_line_and_column(tmp_path, voices_dir):
    path = tmp_path / "bad.json"
    path.write_text('{"title": "T",\n "voices": }')
    with pytest.raises(ManifestError, match=r"(?s)bad.json.*line 2, column \d+: malformed JSON"):
        ingest(path, voices_dir)


def test_unreadable_missing_and_non_utf8_files(tmp_path, voices_dir):
    with pytest.raises(ManifestError, match="cannot read the file"):
        ingest(tmp_path / "absent.yaml", voices_dir)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("title: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="not valid UTF-8 at byte 10"):
        ingest(latin, voices_dir)
    with pytest.raises(ManifestError, match=r"expected a mapping"):
        ingest(write(tmp_path, ["a", "list"]), voices_dir)
    other = tmp_path / "m.toml"
    other.write_text("title = 'x'")
    with pytest.raises(ManifestError, match="use .yaml, .yml or .json"):
        ingest(other, voices_dir)


def test_script_file_lines_are_read_and_bad_lines_named_by_number(tmp_path, voices_dir):
    (tmp_path / "scene.txt").write_text("# comment\n[Ava] Hello.\n\n[Joe]   Hi there.\n")
    data = mutate(chapters__1={"title": "S", "script": "scene.txt"})
    script = ingest(write(tmp_path, data), voices_dir)
    assert [(l.speaker, l.text, l.source) for l in script.chapters[1].lines] == [
        ("Ava", "Hello.", "scene.txt:2"), ("Joe", "Hi there.", "scene.txt:4")]

    (tmp_path / "scene.txt").write_text("[Ava] Hello.\nno speaker here\n[Zed] Who?\n[Joe]\n")
    message = refused(tmp_path, voices_dir, data)
    assert "scene.txt:2: expected '[Speaker] text'" in message
    assert "scene.txt:4: text is empty" in message


def test_script_file_outside_the_manifest_folder_is_refused(tmp_path, voices_dir):
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "secret.txt").write_text("[Ava] Hello.\n")
    path = write(inner, mutate(chapters__1={"title": "S", "script": "../secret.txt"}))
    with pytest.raises(ManifestError, match=r"chapters\[1\].script: '../secret.txt' points outside"):
        ingest(path, voices_dir)


@pytest.mark.parametrize("loudness,expected", [
    ({"preset": "custom"}, "loudness: preset 'custom' in mode 'lufs' needs a target (LUFS), e.g. target: -18"),
    ({"preset": "loud"}, "loudness.preset: Input should be 'audiobook', 'podcast', 'broadcast' or 'custom'"),
    ({"mode": "ebu"}, "loudness.mode: Input should be 'lufs', 'rms' or 'peak'"),
    ({"target": 3}, "loudness.target: Input should be less than or equal to 0"),
    ({"mode": "peak", "target": -0.5, "ceiling": -1}, "loudness: peak target -0.5 dBTP is above the ceiling -1 dBTP"),
    ({"limiter": True}, "loudness.limiter: unknown key 'limiter'; allowed here: preset, mode, target, ceiling"),
])
def test_bad_loudness_settings_are_named(tmp_path, voices_dir, loudness, expected):
    assert expected in refused(tmp_path, voices_dir, {**GOOD, "loudness": loudness})


def test_loudness_block_resolves_presets_and_overrides(tmp_path, voices_dir):
    script = ingest(write(tmp_path, {**GOOD, "loudness": {"preset": "podcast", "ceiling": -2, "room_tone": True}}),
                    voices_dir)
    target = script.manifest.loudness.resolve()
    assert (target.preset, target.target, target.ceiling, target.room_tone) == ("podcast", -16.0, -2.0, True)
    assert ingest(write(tmp_path, GOOD, "plain.yaml"), voices_dir).manifest.loudness.resolve().preset == "audiobook"
