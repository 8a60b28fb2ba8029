"""Books of any length, through the real CLI with ffmpeg: a book whose whole-book WAV is over the size limit
still delivers its chapters, M4B and MP3 with a note; an edit of one line re-encodes only its chapter and the
M4B's chapter marks stay where each chapter is heard; files get the process's umask; the time split is never
negative."""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import rows, run_cli
from meters import decode, ffprobe

pytestmark = pytest.mark.usefixtures("ffmpeg_installed")
RATE = 44_100
SENTENCES = ["The tide came in over the flat sand.", "Nobody rang the bell that evening.",
             "She wrote the date in the green book.", "The boat was late again."]


def manifest(path: Path, edit: str | None = None) -> Path:
    chapters = []
    for c in range(3):
        lines = [{"speaker": ("Ava", "Joe")[i % 2], "text": SENTENCES[(c + i) % 4]} for i in range(3)]
        chapters.append({"title": f"Part {c + 1} \\", "lines": lines})  # a title ending in a backslash
    if edit:
        chapters[1]["lines"][1]["text"] = edit
    data = {"title": "Long Valley", "author": "Test Author", "voices": {"Ava": "ava", "Joe": "joe"},
            "defaults": {"seed": 3}, "chapters": chapters}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def render(work: Path, edit: str | None = None) -> tuple[dict, str]:
    # The whole book is ~1.5 MB as WAV, each chapter ~0.5 MB: a 1 MB limit refuses only the book's WAV.
    done = run_cli("render", str(manifest(work / "book.yaml", edit)), "--out", str(work / "out"), "--json",
                   env={"VOICEBATCH_MAX_OUTPUT_MB": "1", "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("[\n"):])[0], done.stdout + done.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("longbook")
    before = os.umask(0o022)
    try:
        first = render(work)
        edited = render(work, edit="A gull landed on the rail and looked at her.")
    finally:
        os.umask(before)
    return work, first, edited


def test_a_book_over_the_size_limit_delivers_chapters_m4b_and_mp3_with_a_note(runs):
    work, (first, _), _ = runs
    book_wav = work / "out" / "long-valley" / "long-valley.wav"
    assert first["status"] == "completed" and first["book"] is None and not book_wav.exists()
    assert len(first["chapters"]) == 3 and all(Path(c).is_file() for c in first["chapters"])
    assert {Path(p).suffix for p in first["encoded"]} == {".mp3", ".m4b"} and len(first["encoded"]) == 5
    note = next(w for w in first["warnings"] if "long-valley.wav" in w)
    assert "VOICEBATCH_MAX_OUTPUT_MB=1" in note and "M4B" in note
    needed = int(re.search(r"set VOICEBATCH_MAX_OUTPUT_MB=(\d+)", note)[1])
    assert needed > 1  # the fix names a limit the WAV fits under


def test_an_edit_re_encodes_only_its_chapter(runs):
    _, (first, _), (edited, _) = runs
    assert first["chapters_encoded"] == 6  # three chapters, each as MP3 and as AAC
    assert edited["chapters_encoded"] == 2 and edited["chapters_written"] == 1
    written = rows(edited["database"], "SELECT kind, path FROM outputs WHERE run_id = ? AND NOT reused",
                   [edited["run_id"]])
    assert sorted(r["kind"] for r in written if r["kind"].startswith("chapter")) == ["chapter", "chapter_mp3"]
    assert all("02-part-2" in r["path"] for r in written if r["kind"].startswith("chapter"))


def test_the_books_joined_while_the_run_is_recorded_are_recorded_with_it(runs):
    """The M4B and MP3 are joined while the run's rows and review page are written: their rows and the run's
    wall time come after, and must be there."""
    from tasks.core.files import sha256_file

    _, _, (edited, _) = runs
    books = rows(edited["database"], "SELECT kind, path, sha256 FROM outputs WHERE run_id = ? AND kind LIKE 'book_%'",
                 [edited["run_id"]])
    assert sorted(r["kind"] for r in books) == ["book_m4b", "book_mp3"]
    assert all(sha256_file(Path(r["path"])) == r["sha256"] for r in books)
    run = rows(edited["database"], "SELECT status, wall_seconds FROM runs WHERE run_id = ?", [edited["run_id"]])[0]
    assert run["status"] == "completed" and run["wall_seconds"] == pytest.approx(edited["wall_seconds"])
    assert Path(edited["review_page"]).is_file()


def test_an_edit_normalises_only_the_take_it_rendered(runs):
    _, _, (edited, _) = runs
    levels = rows(edited["database"], "SELECT key, worker FROM take_levels WHERE run_id = ?", [edited["run_id"]])
    assert edited["takes_rendered"] == 1 and sum(r["worker"] is not None for r in levels) == 1
    assert sum(r["worker"] is None for r in levels) == 2  # the edited chapter's other takes: the first run's files


def _heard_at(book: np.ndarray, chapter: np.ndarray, near: float, search: float = 0.3) -> float:
    """Where in the decoded book the chapter's opening seconds line up best, searched around `near`."""
    ref = chapter[:3 * RATE]
    lo = max(0, int((near - search) * RATE))
    window = book[lo:lo + ref.size + int(2 * search * RATE)]
    scores = np.correlate(window, ref, mode="valid")
    return (lo + int(np.argmax(scores))) / RATE


def test_m4b_chapter_marks_after_an_edit_sit_where_each_chapter_is_heard(runs):
    _, _, (edited, _) = runs
    m4b = next(p for p in edited["encoded"] if p.endswith(".m4b"))
    info = ffprobe(m4b)
    marks = [float(c["start_time"]) for c in info["chapters"]]
    assert [c["tags"]["title"] for c in info["chapters"]] == ["Part 1 \\", "Part 2 \\", "Part 3 \\"]
    assert {k.lower(): v for k, v in info["format"]["tags"].items()}["artist"] == "Test Author"
    book = decode(m4b, RATE)
    for mark, chapter in zip(marks, edited["chapters"]):
        heard = _heard_at(book, decode(chapter, RATE), mark)
        assert abs(heard - mark) <= 1024 / RATE  # within one AAC frame


def test_files_are_created_with_the_process_umask(runs):
    work, (first, _), (edited, _) = runs
    made = [*edited["chapters"], *edited["encoded"], edited["review_page"], edited["database"]]
    for path in made:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path


def test_the_time_split_is_never_negative(runs):
    work, _, _ = runs
    again = run_cli("render", str(work / "book.yaml"), "--out", str(work / "out"),
                    env={"VOICEBATCH_MAX_OUTPUT_MB": "1", "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    line = next(x for x in again.stdout.splitlines() if x.strip().startswith("time:"))
    assert re.findall(r"[\d.]+ s", line) and not re.search(r"-\d", line), line


def test_the_time_split_adds_up_when_lanes_overlap():
    from flows.cli import time_split
    from flows.render import RunSummary

    # Two lanes busy at once: 40 s of engine time in a 25 s run.
    summary = RunSummary(run_id="r", status="completed", chapters=[], book=None, takes_rendered=2, takes_reused=0,
                         failures=[], chapters_written=0, audio_seconds=10, load_seconds=2, render_seconds=40,
                         wall_seconds=25, lane_busy_seconds=40, render_phase_seconds=20, database="db")
    line = time_split(30.0, summary)
    parts = [float(x) for x in re.findall(r"(-?[\d.]+) s", line.split("=", 1)[1])]
    assert all(p >= 0 for p in parts) and sum(parts[:4]) == pytest.approx(30.0, abs=0.2)
