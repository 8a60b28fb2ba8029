"""The manifest's pronunciation lexicon: matching rules, validation, what the real engines read, and cache
keys that change only for the lines an entry matches (proven from provenance over real flow runs)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import rows, run_cli
from engine import DecodingParams, RenderRequest, VoicePrompt
from tasks.core.errors import EngineError
from engine.lexicon import matching_entries, rewrite
from engine.pool import warm_engine
from tasks.core.errors import ManifestError
from tasks.script.ingest import ingest
from tasks.script.pronunciations import check_pronunciations

GULL_ROCK = "/ɡˈʌːl ɹˈɑk,/"


def test_matching_is_case_sensitive_on_whole_words_longest_first():
    lexicon = {"Gull Rock": GULL_ROCK, "Gull": "Gul", "Rock": "Rok"}
    text = "Gull  Rock's gulls saw Gull and a Rock, not a rock, Rocks or Gullrock."
    entries = matching_entries(text, lexicon)
    assert entries == (("Gull", "Gul"), ("Gull Rock", GULL_ROCK), ("Rock", "Rok"))
    assert rewrite(text, entries, lambda words, ph: f"<{words}|{ph}>") == (
        "<Gull  Rock|ɡˈʌːl ɹˈɑk,>'s gulls saw Gul and a Rok, not a rock, Rocks or Gullrock.")
    assert matching_entries("The rock stood.", lexicon) == ()
    assert rewrite("She said 'Gull Rock'.", (("Gull Rock", "Gul Rok"),)) == "She said 'Gul Rok'."  # quoted
    assert rewrite("The rock stood.", ()) == "The rock stood."
    with pytest.raises(ValueError, match="reads text only"):
        rewrite("Gull Rock stood.", (("Gull Rock", GULL_ROCK),))


def _manifest(tmp_path: Path, pronunciations=None, joe=None, name="m.yaml", **extra) -> Path:
    data = {"title": "Lexicon", "defaults": {"seed": 3},
            "voices": {"Ava": "ava", "Joe": {"voice": "joe", **({"pronunciations": joe} if joe else {})}},
            "chapters": [{"title": "One", "lines": [
                {"speaker": "Ava", "text": "Gull Rock stood a mile off the coast."},
                {"speaker": "Ava", "text": "The tower on its back was white."},
                {"speaker": "Joe", "text": "I saw Gull Rock from the boat."}]}], **extra}
    if pronunciations is not None:
        data["pronunciations"] = pronunciations
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("entries, expected", [
    ({"Gull Rock": ""}, 'pronunciations["Gull Rock"]: empty pronunciation; give /phonemes/ or a respelling'),
    ({"Gull Rock": "/ɡˈʌl ɹˈɑk"}, 'pronunciations["Gull Rock"]: phonemes go between two slashes'),
    ({"Gull Rock": "//"}, 'pronunciations["Gull Rock"]: phonemes go between two slashes'),
    ({"Gull [Rock]": "Gul Rok"}, 'pronunciations["Gull [Rock]"] (the key): a pronunciation\'s key is one word'),
    ({"...": "dots"}, 'pronunciations["..."] (the key): a pronunciation\'s key must be the word or phrase'),
    ({"Gull Rock": "<phoneme ph='x'>Gull</phoneme>"}, "respelling: SSML markup is not supported"),
    ({"Gull Rock": 3}, 'pronunciations["Gull Rock"]: Input should be a valid string'),
])
def test_bad_entries_are_refused_naming_the_file_and_entry(tmp_path, voices_dir, entries, expected):
    path = _manifest(tmp_path, entries)
    with pytest.raises(ManifestError) as info:
        ingest(path, voices_dir)
    assert str(path) in str(info.value) and expected in str(info.value), str(info.value)


def test_speaker_entries_are_validated_under_their_own_path(tmp_path, voices_dir):
    with pytest.raises(ManifestError, match=r'voices\.Joe\.pronunciations\["Gull Rock"\]: empty pronunciation'):
        ingest(_manifest(tmp_path, joe={"Gull Rock": " "}), voices_dir)


def test_phonemes_outside_the_engines_alphabet_are_refused(tmp_path, voices_dir):
    script = ingest(_manifest(tmp_path, {"Gull Rock": "/ɡˈʌl ʘɹˈɑk/"}, joe={"Gull Rock": "Gul Rock"}), voices_dir)
    with pytest.raises(ManifestError, match=r"pronunciations\[\"Gull Rock\"\]: 'ʘ' is not in engine hibari's "
                                            r"phoneme alphabet"):
        check_pronunciations(script, None, "hibari")


def test_phonemes_are_left_out_for_an_engine_that_reads_text_only(tmp_path, voices_dir, caplog):
    from tasks.script.plan import EngineFacts, plan_jobs

    # Joe speaks with piper, which reads text: the manifest's phonemes reach his line without his own entry.
    script = ingest(_manifest(tmp_path, {"Gull Rock": GULL_ROCK}), voices_dir)
    with caplog.at_level(logging.WARNING, logger="tasks.script.pronunciations"):
        check_pronunciations(script, None, "hibari")
    assert ('pronunciations["Gull Rock"] gives phonemes, but Joe\'s engine piper reads text only: Joe says the '
            "script's own words there") in caplog.text
    facts = {"hibari": EngineFacts("hibari", "m", None, "1", frozenset({"seed"}), reads_phonemes=True),
             "piper": EngineFacts("piper", "m", None, "1", frozenset())}
    jobs = plan_jobs(script, facts, {"Ava": "hibari", "Joe": "piper"}, 40)
    plain = plan_jobs(ingest(_manifest(tmp_path, name="plain.yaml"), voices_dir), facts,
                      {"Ava": "hibari", "Joe": "piper"}, 40)
    assert [j.pronunciations for j in jobs] == [(("Gull Rock", GULL_ROCK),), (), ()]
    assert [j.key == p.key for j, p in zip(jobs, plain)] == [False, True, True]  # Joe's take stays as it was


def test_an_entry_no_line_uses_is_a_warning(tmp_path, voices_dir, caplog):
    script = ingest(_manifest(tmp_path, {"Gull Rock": GULL_ROCK, "Gul Rock": "Gull Rock"},
                              joe={"Gull Rock": "Gul Rock", "Ava Marsh": "Ava Marsh"}), voices_dir)
    with caplog.at_level(logging.WARNING, logger="tasks.script.pronunciations"):
        check_pronunciations(script, None, "hibari")
    warned = " | ".join(r.getMessage() for r in caplog.records)
    assert len(caplog.records) == 2, warned
    assert 'pronunciations["Gul Rock"] matches no words in the script' in warned
    assert "voices.Joe.pronunciations[\"Ava Marsh\"] matches no words in Joe's lines" in warned


def test_render_and_sweep_refuse_an_unsayable_entry_with_exit_2_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    path = _manifest(tmp_path, {"Gull Rock": "/ɡˈʌl ʘɹˈɑk/"}, joe={"Gull Rock": "Gul Rawk"})
    result = run_cli("render", str(path), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr and "'ʘ' is not in engine hibari's phoneme alphabet" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    sweep = run_cli("sweep", str(path), "--chapter", "1", "--seeds", "2", "--no-wer", "--out", str(out))
    assert sweep.returncode == 2, sweep.stderr  # a sweep renders the same lines: the same check, before Prefect
    assert "'ʘ' is not in engine hibari's phoneme alphabet" in sweep.stderr and not out.exists()


def _request(text: str, entries=(), seed: int = 3) -> RenderRequest:
    return RenderRequest(text, VoicePrompt("v", "hash"), DecodingParams(seed=seed), pronunciations=entries)


def test_hibari_says_phoneme_entries_and_respellings():
    engine = warm_engine("hibari").engine
    line = "Gull Rock stood a mile off the coast."
    plain, phonemes, inline, respelt, respelt_text = engine.render([
        _request(line), _request(line, (("Gull Rock", GULL_ROCK),)),
        _request(f"[Gull Rock]({GULL_ROCK}) stood a mile off the coast."),
        _request(line, (("Gull Rock", "Gul Rawk"),)), _request("Gul Rawk stood a mile off the coast.")])
    assert not np.array_equal(plain, phonemes) and len(phonemes) > len(plain)  # a longer vowel and a break
    np.testing.assert_array_equal(phonemes, inline)  # through hibari's own inline phonemes
    np.testing.assert_array_equal(respelt, respelt_text)
    assert not np.array_equal(respelt, plain)


def test_piper_says_respellings_and_refuses_phonemes():
    piper = warm_engine("piper").engine
    assert piper.phoneme_alphabet() is None
    line = "I saw Gull Rock from the boat."
    plain, respelt, respelt_text = piper.render([_request(line), _request(line, (("Gull Rock", "Gul Rawk"),)),
                                                 _request("I saw Gul Rawk from the boat.")])
    assert not np.array_equal(plain, respelt)
    np.testing.assert_array_equal(respelt, respelt_text)
    with pytest.raises(EngineError, match="reads text only; give a plain-text respelling"):
        piper.render([_request(line, (("Gull Rock", GULL_ROCK),))])


def _run(path: Path, out: Path) -> dict[int, dict]:
    from flows.render import render_manifest

    summary = render_manifest(str(path), output_dir=str(out), review=False)
    found = rows(str(out / "provenance.duckdb"), "SELECT line, cache_key, cache_hit, pronunciations FROM renders "
                                                 "WHERE run_id = ? ORDER BY line", (summary.run_id,))
    return {r["line"]: r for r in found}


def test_an_entry_changes_the_cache_key_of_exactly_the_lines_it_matches(tmp_path):
    out = tmp_path / "out"
    before = _run(_manifest(tmp_path), out)
    assert not any(r["cache_hit"] for r in before.values()) and all(r["pronunciations"] is None for r in before.values())

    added = _run(_manifest(tmp_path, {"Gull Rock": GULL_ROCK}, joe={"Gull Rock": "Gul Rawk"}), out)
    assert [added[i]["cache_hit"] for i in range(3)] == [False, True, False]
    assert added[1]["cache_key"] == before[1]["cache_key"] and added[0]["cache_key"] != before[0]["cache_key"]
    assert json.loads(added[0]["pronunciations"]) == {"Gull Rock": GULL_ROCK}
    assert json.loads(added[2]["pronunciations"]) == {"Gull Rock": "Gul Rawk"}  # Joe's own entry
    assert added[1]["pronunciations"] is None

    # Editing the manifest's entry re-renders Ava's line only: Joe says his own respelling.
    edited = _run(_manifest(tmp_path, {"Gull Rock": "/ɡˈʌl ɹˈɑk,/"}, joe={"Gull Rock": "Gul Rawk"}), out)
    assert [edited[i]["cache_hit"] for i in range(3)] == [False, True, True]
    assert edited[0]["cache_key"] not in {before[0]["cache_key"], added[0]["cache_key"]}
    assert json.loads(edited[0]["pronunciations"]) == {"Gull Rock": "/ɡˈʌl ɹˈɑk,/"}

    # Back to the first entry: its take is still in the cache.
    again = _run(_manifest(tmp_path, {"Gull Rock": GULL_ROCK}, joe={"Gull Rock": "Gul Rawk"}), out)
    assert all(again[i]["cache_hit"] for i in range(3)) and again[0]["cache_key"] == added[0]["cache_key"]
