"""Damage, refusals and read-only queries a user can trust (issue 25), each through the real CLI in a child
process: damaged takes rendered again, a damaged database named and recovered, bad input refused before
Prefect starts, `query` unable to touch files, the project's own folders apart from the books."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, rows, run_cli

pytestmark = pytest.mark.slow

DIALOGUE = ROOT / "manifests" / "demo-dialogue.yaml"
BOOK = "the-lighthouse-dialogue"


def _render(out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("render", str(DIALOGUE), "--out", str(out), *args, env=env)


def _deliverables(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / BOOK).glob("*.wav"))}


def _error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The dialogue demo rendered once: its output folder and its chapter and book bytes, as a clean render
    leaves them. Tests that damage it leave it as they found it."""
    out = tmp_path_factory.mktemp("trust") / "out"
    done = _render(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, _deliverables(out)


def _take_of_chapter_one(out: Path) -> tuple[Path, str]:
    row = rows(str(out / "provenance.duckdb"), "SELECT t.path, t.sha256 FROM takes t JOIN renders r USING (cache_key) "
               "WHERE r.chapter = 0 ORDER BY r.line LIMIT 1")[0]
    return Path(row["path"]), row["sha256"]


def _overwrite_keeping_stat(path: Path, start: int, data: bytes) -> None:
    """New bytes from `start`, same size and modification time: what a cheap stat check cannot see."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("damage", ["noise", "unreadable"])
def test_a_damaged_take_read_for_a_chapter_is_rendered_again_never_shipped(rendered, damage):
    out, clean = rendered
    take, sha = _take_of_chapter_one(out)
    size = take.stat().st_size
    if damage == "noise":  # valid header, samples replaced
        _overwrite_keeping_stat(take, size // 2, os.urandom(size - size // 2))
    else:  # a header libsndfile does not recognise
        _overwrite_keeping_stat(take, 0, b"\x00garbage" * 8)
    (out / BOOK / "01-at-the-harbour.wav").unlink()

    done = _render(out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert (done.stdout + done.stderr).count(f"cached take {take} does not match its recorded sha256") == 1
    assert "1 takes rendered" in done.stdout
    assert hashlib.sha256(take.read_bytes()).hexdigest() == sha
    assert _deliverables(out) == clean


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_database_is_named_then_recovered_by_our_command(rendered, damage):
    out, clean = rendered
    db = out / "provenance.duckdb"
    if damage == "truncated":
        os.truncate(db, db.stat().st_size // 2)
    else:
        with open(db, "r+b") as f:
            f.write(b"not a database " * 300)

    refused = _render(out)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stdout + refused.stderr
    [line] = _error_lines(refused)
    assert str(db) in line and "damaged" in line and "locked" not in line
    assert f"voicebatch db recover {db}" in line

    recovered = run_cli("db", "recover", str(db))
    assert recovered.returncode == 0, recovered.stderr
    [aside] = out.glob("provenance.damaged-*.duckdb")
    assert aside.stat().st_size > 0 and db.is_file()
    aside.unlink()

    again = _render(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 takes rendered, 8 reused" in again.stdout  # every take on disk adopted
    assert _deliverables(out) == clean


def test_recover_refuses_an_intact_database(rendered):
    out, _ = rendered
    done = run_cli("db", "recover", str(out / "provenance.duckdb"))
    assert done.returncode != 0 and "intact" in done.stderr
    assert not list(out.glob("provenance.damaged-*"))


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 'x') TO '{book}' (FORMAT csv)",
    "SELECT * FROM read_text('/etc/hostname')",
    "ATTACH '{out}/other.duckdb' AS other",
    "SET enable_external_access = true",
])
def test_query_reads_the_database_and_nothing_else(rendered, sql):
    out, clean = rendered
    book = out / BOOK / f"{BOOK}.wav"
    done = run_cli("query", sql.format(book=book, out=out), env={"VOICEBATCH_OUTPUT_DIR": str(out)})
    assert done.returncode == 2
    [line] = _error_lines(done)
    assert line.startswith("error: query refused: `voicebatch query` reads the provenance database only")
    assert _deliverables(out) == clean and not (out / "other.duckdb").exists()


def test_a_run_waiting_for_the_database_says_so_once_and_who_holds_it(rendered):
    out, _ = rendered
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(60)", str(out / "provenance.duckdb")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = run_cli("history", env={"VOICEBATCH_OUTPUT_DIR": str(out), "VOICEBATCH_DB_LOCK_WAIT": "3"})
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode != 0
    waiting = [line for line in done.stderr.splitlines() if "waiting up to 3 s for the provenance database" in line]
    assert len(waiting) == 1 and f"process {holder.pid} " in waiting[0]


def test_a_review_page_that_cannot_be_written_is_named_in_the_summary(rendered):
    out, clean = rendered
    blocker = out / ".voicebatch" / "review"
    moved = blocker.rename(out / "review-pages-aside")
    blocker.write_text("a file where the review folder should be")
    try:
        done = _render(out)
    finally:
        blocker.unlink()
        moved.rename(blocker)
    assert done.returncode == 1
    assert re.search(r"^  NOT WRITTEN review page: .*voicebatch review ", done.stdout, re.M), done.stdout[-2000:]
    assert _deliverables(out) == clean


def test_folders_of_the_old_layout_move_into_the_hidden_one(rendered):
    """`takes/`, `voices/` and `review/` beside the books (the old layout), their paths recorded as such."""
    import duckdb

    out, clean = rendered
    own = out / ".voicebatch"
    for name in ("takes", "voices", "review"):
        (own / name).rename(out / name)
    con = duckdb.connect(str(out / "provenance.duckdb"))
    try:
        for table, column in (("takes", "path"), ("renders", "take_path"), ("voices", "staged_path")):
            con.execute(f"UPDATE {table} SET {column} = replace({column}, '/.voicebatch/', '/')")
    finally:
        con.close()

    done = _render(out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 takes rendered, 8 reused" in done.stdout
    assert not any((out / name).exists() for name in ("takes", "voices", "review"))
    assert all((own / name).is_dir() for name in ("takes", "voices", "review"))
    recorded = rows(str(out / "provenance.duckdb"), "SELECT path FROM takes")
    assert recorded and all(f"{own}/takes/" in r["path"] for r in recorded)
    assert _deliverables(out) == clean


def test_a_book_titled_voices_keeps_apart_from_the_staged_voices(tmp_path):
    manifest = tmp_path / "voices-book.yaml"
    manifest.write_text(yaml.safe_dump({"title": "Voices", "voices": {"Ava": "ava"}, "chapters": [
        {"title": "One", "lines": [{"speaker": "Ava", "text": "A book whose title is the name of a folder."}]}]}))
    out = tmp_path / "out"
    done = run_cli("render", str(manifest), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p.name for p in (out / "voices").iterdir()} == {"01-one.wav", "01-one.mp3", "voices.wav", "voices.m4b",
                                                           "voices.mp3"}
    assert list((out / ".voicebatch" / "voices").glob("*.wav"))


def _voice_with_text_reference(tmp_path: Path) -> Path:
    voices = tmp_path / "voices"
    (voices / "fake").mkdir(parents=True)
    (voices / "fake" / "reference.wav").write_text("this is a text file, not a recording\n" * 40)
    (voices / "fake" / "voice.yaml").write_text(yaml.safe_dump({
        "name": "Fake", "reference": "reference.wav", "transcript": "Words.", "engine": "hibari",
        "engines": {"hibari": {"voice": "heart"}}}))
    return voices


def test_a_text_file_as_a_reference_clip_is_refused_before_start_up(tmp_path):
    voices = _voice_with_text_reference(tmp_path)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"title": "Fake", "voices": {"Ava": "fake"},
                                        "chapters": [{"title": "One", "lines": [{"speaker": "Ava", "text": "Hi."}]}]}))
    out = tmp_path / "out"
    done = run_cli("render", str(manifest), "--out", str(out), env={"VOICEBATCH_VOICES_DIR": str(voices)})
    assert done.returncode == 2
    [line] = _error_lines(done)
    assert str(voices / "fake" / "reference.wav") in line and "not a readable" in line
    assert not out.exists()


def test_qa_without_a_whisper_model_is_refused_before_start_up(tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "no-such-model.pt"
    done = _render(out, "--qa", env={"VOICEBATCH_WHISPER_MODEL": str(missing)})
    assert done.returncode != 0
    [line] = _error_lines(done)
    assert str(missing) in line and "without --qa" in line
    assert not out.exists()


def test_json_with_qa_force_and_several_manifests_parses(tmp_path, whisper_tiny_en):
    out = tmp_path / "out"
    done = run_cli("render", str(DIALOGUE), str(ROOT / "manifests" / "demo-audiobook.yaml"), "--out", str(out),
                   "--qa", "--force", "--json", env={"VOICEBATCH_WHISPER_MODEL": str(whisper_tiny_en)}, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    runs = json.loads(done.stdout)
    assert [Path(r["manifest"]).name for r in runs] == ["demo-dialogue.yaml", "demo-audiobook.yaml"]
    assert all(r["qa"] and r["takes_reused"] == 0 for r in runs)  # checked by ASR; --force rendered every take
    assert all(r["database"] == str(out / "provenance.duckdb") for r in runs)


def test_a_database_shortened_by_checkpoints_is_not_called_damaged(tmp_path):
    """DuckDB cuts free blocks off the end of the file while its header still counts them: after a few edits a
    healthy database is shorter than header + all its blocks, and the next render must not call it damaged."""
    import duckdb

    for name in ("demo-dialogue.yaml", "demo-dialogue-scene2.txt"):
        (tmp_path / name).write_bytes((ROOT / "manifests" / name).read_bytes())
    manifest, out = tmp_path / "demo-dialogue.yaml", tmp_path / "out"
    text, line = manifest.read_text(), "The fog came in faster than I have ever seen it."
    assert line in text

    def shorter_than_its_blocks() -> bool:
        con = duckdb.connect(str(out / "provenance.duckdb"), read_only=True)
        size, total = con.execute("SELECT block_size, total_blocks FROM pragma_database_size()").fetchone()
        con.close()
        return (out / "provenance.duckdb").stat().st_size < size * total

    for edit in range(4):
        manifest.write_text(text.replace(line, f"The fog came in faster than ever, take {edit}."))
        done = run_cli("render", str(manifest), "--out", str(out))
        assert done.returncode == 0, done.stderr[-3000:]
        if edit >= 2 and shorter_than_its_blocks():
            break
    else:
        pytest.fail("no render left the database shorter than the blocks its header counts: the case is not tested")
    done = run_cli("render", str(manifest), "--out", str(out))
    assert done.returncode == 0 and "damaged" not in done.stderr, done.stderr[-3000:]
