"""Hostile manifests and text: refused with the project's own error (file, field, reason, exit 2) or handled
deliberately; never a traceback, never a hang, never a read or write outside the project's folders."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from flows.cli import main
from tasks.core.errors import ManifestError
from tasks.script.ingest import ingest

HOSTILE = sorted(p for p in (Path(__file__).parent / "data" / "hostile").iterdir() if p.suffix in (".yaml", ".json"))


@pytest.mark.parametrize("path", HOSTILE, ids=[p.name for p in HOSTILE])
def test_kept_corpus_is_refused_by_the_cli_with_exit_2(path, capsys, tmp_path):
    code = main(["render", str(path), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: {path}: manifest refused") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_kept_corpus_messages_say_what_is_wrong(capsys, tmp_path):
    expected = {"alias-bomb.yaml": "aliases are expanded", "duplicate-keys.yaml": "duplicate key 'title'",
                "deep-nesting.json": "nested too deeply", "nul-byte.yaml": "malformed YAML",
                "python-tag.yaml": "malformed YAML", "voice-path-escape.yaml": "voices.A.voice",
                "script-absolute.yaml": "points outside", "speaker-tag-injection.yaml": "speaker tags",
                "control-token.yaml": "control tokens", "ssml.yaml": "SSML", "control-char.json": "control character",
                "invalid-utf8.yaml": "not valid UTF-8", "huge-title.yaml": "at most 500 characters",
                "whitespace-line.yaml": "text is empty", "nul-escape.json": "control character"}
    for name, part in expected.items():
        main(["render", str(Path(__file__).parent / "data" / "hostile" / name), "--out", str(tmp_path)])
        assert part in capsys.readouterr().err, name


BASE = {"title": "T", "voices": {"A": "ava", "B": "joe"},
        "chapters": [{"title": "c", "lines": [{"speaker": "A", "text": "Hello."}, {"speaker": "B", "text": "Hi."}]}]}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)


def _mutate(data, path, value):
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


PLACES = [("title",), ("voices",), ("voices", "A"), ("chapters",), ("chapters", 0), ("chapters", 0, "lines"),
          ("chapters", 0, "lines", 0), ("chapters", 0, "lines", 0, "speaker"), ("chapters", 0, "lines", 0, "text"),
          ("chapters", 0, "lines", 0, "temperature"), ("chapters", 0, "title"), ("defaults",), ("extra",)]


def _refused_or_accepted(path: Path, voices_dir: Path) -> None:
    try:
        ingest(path, voices_dir)
    except ManifestError as e:
        assert str(path) in str(e) and e.problems and all(isinstance(p, str) and p for p in e.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(PLACES), value=json_values, as_json=st.booleans())
def test_mutated_manifests_are_accepted_or_refused_with_a_manifest_error(tmp_path, voices_dir, place, value, as_json):
    data = _mutate(json.loads(json.dumps(BASE)), place, value)
    path = tmp_path / ("m.json" if as_json else "m.yaml")
    try:
        path.write_text(json.dumps(data) if as_json else yaml.safe_dump(data), encoding="utf-8")
    except (ValueError, UnicodeEncodeError):
        return  # hypothesis made something no file can hold (NaN in strict JSON, lone surrogates)
    _refused_or_accepted(path, voices_dir)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")),
       suffix=st.sampled_from([".yaml", ".json"]))
def test_random_bytes_are_refused_with_a_manifest_error(tmp_path, voices_dir, raw, suffix):
    path = tmp_path / f"m{suffix}"
    path.write_bytes(raw)
    _refused_or_accepted(path, voices_dir)


def test_text_edge_cases_are_handled_deliberately(tmp_path, voices_dir):
    from tasks.script.plan import EngineFacts, plan_jobs

    lines = [
        "Café, naïve and façade: accents are spoken.",       # accents: kept
        "她说你好。 Then she waved.",                            # CJK mixed in: kept, the engine does what it can
        "A rocket 🚀 launched.",                               # emoji: kept
        "שלום means hello.",                                  # right-to-left: kept
        " ".join(["word"] * 10_000) + ".",                    # 10,000 words in one line: chunked
        "Use <b>bold</b> and [brackets] freely.",             # markup-like but not SSML or tags: spoken as text
    ]
    data = {"title": "T", "voices": {"A": "ava"}, "chapters": [{"title": "c", "lines": [{"speaker": "A", "text": t}
                                                                                          for t in lines]}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    script = ingest(path, voices_dir)
    facts = EngineFacts("hibari", "m", "r", "1", frozenset({"seed"}), {"ava": {}})
    jobs = plan_jobs(script, {"hibari": facts}, {"A": "hibari"}, 60)
    assert [j.text for j in jobs if j.line != 4] == [lines[i] for i in (0, 1, 2, 3, 5)]
    long = [j for j in jobs if j.line == 4]
    assert len(long) == 167 and all(len(j.text.split()) <= 60 for j in long)
    assert " ".join(j.text for j in long) == lines[4]


def test_a_manifest_cannot_reach_outside_its_folders(tmp_path, voices_dir, capsys):
    """Script files, voice references and output names stay inside manifests/, voices/ and the output folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("[A] The secret.\n")
    book = tmp_path / "manifests"
    book.mkdir()
    (book / "linked.txt").symlink_to(outside / "secret.txt")
    voices = tmp_path / "voices"
    (voices / "thief").mkdir(parents=True)
    (voices / "thief" / "voice.yaml").write_text("name: Thief\nreference: ../../outside/secret.txt\n")
    os.symlink(voices_dir / "ava", voices / "ava")

    def refused(data: dict, voices_root: Path = voices_dir) -> str:
        path = book / "m.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ManifestError) as info:
            ingest(path, voices_root)
        return str(info.value)

    base = {"title": "T", "voices": {"A": "ava"}}
    assert "points outside" in refused({**base, "chapters": [{"title": "c", "script": "linked.txt"}]})
    assert "points outside" in refused({**base, "chapters": [{"title": "c", "script": str(outside / "secret.txt")}]})
    assert "points outside" in refused({**base, "voices": {"A": "thief"}, "chapters": [{"title": "c", "text": "x"}]},
                                       voices)
    assert "not valid" in refused({**base, "voices": {"A": "a/b"}, "chapters": [{"title": "c", "text": "x"}]})

    # Titles that look like paths become plain names inside the output folder.
    from tasks.output.export import book_dir, chapter_path

    out = tmp_path / "out"
    for title in ["../../etc/passwd", "/etc/cron.d/x", "..", "a\x00b", "CON", "ÆØÅ 😀"]:
        for p in (book_dir(out, title), chapter_path(out, title, 0, title)):
            assert p.resolve().is_relative_to(out.resolve()), (title, p)
            assert "\x00" not in str(p) and ".." not in p.relative_to(out).parts
