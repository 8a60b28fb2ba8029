"""Run overrides: validated with the manifest's models, applied on top of the manifest, recorded with the run,
and honoured by the render cache exactly as far as the engine honours the setting."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, rows, run_cli
from tasks.script.ingest import ingest
from tasks.script.overrides import OverridesError, apply_overrides, overrides_from_assignments, parse_overrides
from tasks.script.plan import resolve_params


def _manifest(folder: Path) -> Path:
    """Two speakers of one voice and one of another; one line sets its own seed."""
    data = {"title": "Override Drill", "defaults": {"seed": 5, "temperature": 0.7},
            "voices": {"Ava": "ava", "Hib": {"voice": "ava", "seed": 8}, "Joe": "joe"},
            "chapters": [{"title": "One", "lines": [
                {"speaker": "Ava", "text": "The tide is turning early tonight."},
                {"speaker": "Hib", "text": "Then we had better ring the bell."},
                {"speaker": "Joe", "text": "I will fetch the lantern from the shed."},
                {"speaker": "Ava", "text": "Bring the spare wick as well.", "seed": 3}]}]}
    path = folder / "drill.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _params(script) -> list[dict]:
    return [resolve_params(script, line.speaker, line).model_dump() for line in script.chapters[0].lines]


def test_overrides_beat_the_manifest_a_voice_beats_decoding_and_a_speaker_beats_its_voice(tmp_path):
    script = ingest(_manifest(tmp_path), ROOT / "voices")
    before = _params(script)
    assert [p["seed"] for p in before] == [5, 8, 11, 3]  # Joe's voice asset sets 11
    changed = apply_overrides(script, parse_overrides(
        {"decoding": {"seed": 14, "top_k": 20}, "voices": {"ava": {"seed": 12}, "Hib": {"seed": 13}}}))
    after = _params(changed)
    # Ava and Hib speak voice `ava` (12), Hib's own entry beats it (13), Joe gets `decoding` (14); the line
    # that set its own seed in the manifest is overridden too.
    assert [p["seed"] for p in after] == [12, 13, 14, 12]
    assert {p["top_k"] for p in after} == {20} and {p["temperature"] for p in after} == {0.7}
    assert _params(script) == before  # the script itself is left as it was


def test_loudness_overrides_merge_into_the_manifests_block(tmp_path):
    script = ingest(_manifest(tmp_path), ROOT / "voices")
    changed = apply_overrides(script, parse_overrides({"loudness": {"preset": "podcast", "ceiling": -2}}))
    target = changed.manifest.loudness.resolve()
    assert (target.preset, target.ceiling) == ("podcast", -2)
    assert script.manifest.loudness.resolve().preset == "audiobook"


@pytest.mark.parametrize("overrides, message", [
    ({"decoding": {"temprature": 0.5}}, "overrides.decoding.temprature: unknown key 'temprature'; allowed here: "
                                        "temperature, top_k"),
    ({"voices": {"Ava": {"min_p": 0.1}}}, "overrides.voices.Ava.min_p: unknown key 'min_p'; Higgs Audio's generate "
                                          "refuses min_p"),
    ({"voices": {"Ava": {"temperature": 0}}}, "overrides.voices.Ava.temperature: Input should be greater than 0"),
    ({"speed": 2}, "overrides.speed: unknown key 'speed'; allowed here: decoding, voices, loudness"),
    ({"loudness": {"target": 3}}, "overrides.loudness.target: Input should be less than or equal to 0 (got 3)"),
    ({"loudness": {"lufs": -16}}, "overrides.loudness.lufs: unknown key; allowed here: preset, mode, target"),
    ({"voices": {"Nobody": {"seed": 1}}}, "overrides.voices.Nobody: no speaker or voice 'Nobody' in "),
    (["seed=1"], "overrides: expected a mapping with decoding, voices and/or loudness (got list)"),
])
def test_bad_overrides_name_the_field_and_the_fix(tmp_path, overrides, message):
    script = ingest(_manifest(tmp_path), ROOT / "voices")
    with pytest.raises(OverridesError) as caught:
        apply_overrides(script, parse_overrides(overrides))
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_set_assignments_become_nested_overrides():
    assert overrides_from_assignments(["decoding.seed=7", "voices.Ava.temperature=0.5", "loudness.preset=podcast",
                                       "voices.Ava.top_k=40"]) == {
        "decoding": {"seed": 7}, "voices": {"Ava": {"temperature": 0.5, "top_k": 40}},
        "loudness": {"preset": "podcast"}}
    with pytest.raises(OverridesError, match="--set 'decoding.seed': write KEY=VALUE"):
        overrides_from_assignments(["decoding.seed"])


def test_cli_refuses_bad_set_before_prefect_starts(tmp_path):
    result = run_cli("render", str(_manifest(tmp_path)), "--out", str(tmp_path / "out"), "--set", "voices.Zed.seed=4")
    assert result.returncode == 2
    assert "overrides.voices.Zed: no speaker or voice 'Zed'" in result.stderr and "speakers: Ava, Hib, Joe" in result.stderr
    assert not (tmp_path / "out" / "provenance.duckdb").exists()


def test_flow_applies_records_and_caches_by_what_the_engine_honours(tmp_path):
    from tasks.core.errors import UserInputError
    from flows.render import render_manifest

    manifest, out = str(_manifest(tmp_path)), str(tmp_path / "out")
    db = tmp_path / "out" / "provenance.duckdb"
    first = render_manifest(manifest=manifest, output_dir=out)
    # Neither engine honours temperature (hibari: seed only; piper: nothing): nothing renders again, but the
    # loudness preset re-masters every chapter from the same takes.
    ignored = render_manifest(manifest=manifest, output_dir=out,
                              overrides={"decoding": {"temperature": 0.3}, "loudness": {"preset": "podcast"}})
    # A seed for voice `ava` re-renders the lines of both speakers who use it (hibari honours seeds), not Joe's.
    honoured = render_manifest(manifest=manifest, output_dir=out, overrides={"voices": {"ava": {"seed": 21}}})
    with pytest.raises(UserInputError, match="overrides.decoding.seed: Input should be greater than or equal to 0"):
        render_manifest(manifest=manifest, output_dir=out, overrides={"decoding": {"seed": -1}})

    assert (first.takes_rendered, ignored.takes_rendered, ignored.takes_reused) == (4, 0, 4)
    assert ignored.chapters_written == 1 and {r["preset"] for r in ignored.loudness} == {"podcast"}
    recorded = {r["run_id"]: r for r in rows(str(db), "SELECT run_id, overrides FROM runs")}
    assert json.loads(recorded[first.run_id]["overrides"]) == {}
    assert json.loads(recorded[ignored.run_id]["overrides"]) == {"decoding": {"temperature": 0.3},
                                                                 "loudness": {"preset": "podcast"}}
    takes = rows(str(db), "SELECT speaker, cache_hit, seed, params FROM renders WHERE run_id = ? ORDER BY line",
                 [honoured.run_id])
    assert [(t["speaker"], t["cache_hit"], t["seed"]) for t in takes] == [
        ("Ava", False, 21), ("Hib", False, 21), ("Joe", True, 11), ("Ava", False, 21)]
    assert honoured.takes_rendered == 3
    ignored_params = rows(str(db), "SELECT DISTINCT params FROM renders WHERE run_id = ?", [ignored.run_id])
    assert {json.loads(p["params"])["temperature"] for p in ignored_params} == {0.3}  # recorded as applied
