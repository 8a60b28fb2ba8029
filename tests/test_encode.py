"""ffmpeg export on synthetic chapters: MP3 and M4B read back with ffprobe (chapters, tags, format), and the
PATH without ffmpeg seen as no ffmpeg."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.core.files import sha256_file
from tasks.audio.assemble import CHAPTER_GAP_SECONDS
from tasks.audio.wav import write_wav_atomic
from tasks.output.encode import EncodeError, chapter_marks, encode_book, encode_chapter_mp3, ffmetadata, find_ffmpeg
from tasks.output.export import OutputFile, export_book
from meters import ebur128, ffprobe

RATE = 24_000
pytestmark = pytest.mark.usefixtures("ffmpeg_installed")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    folder = tmp_path_factory.mktemp("book")
    rng = np.random.default_rng(0)
    chapters = []
    titles = ["One; the = start", "Two # middle", "Three \\ end"]
    for i, (seconds, title) in enumerate(zip([3.2, 5.05, 2.4], titles)):
        audio = (0.05 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)
        path = folder / f"{i + 1:02d}-ch.wav"
        chapters.append(OutputFile("chapter", i, title, str(path), write_wav_atomic(path, audio), seconds))
    whole = export_book(chapters, folder / "book.wav", "A Book: Its Title", room_tone_dbfs=-75.0)
    return chapters, whole


def test_chapter_marks_start_where_each_chapter_starts_in_the_book(book):
    chapters, whole = book
    marks = chapter_marks(chapters)
    assert [round(m.start, 3) for m in marks] == [0.0, 3.2 + CHAPTER_GAP_SECONDS, 3.2 + 5.05 + 2 * CHAPTER_GAP_SECONDS]
    assert marks[-1].end == pytest.approx(whole.duration, abs=1e-3)


def test_ffmetadata_escapes_its_special_characters():
    text = ffmetadata("T=1;#", "A\\B", chapter_marks([OutputFile("chapter", 0, "x\ny", "p", "s", 1.5)]))
    assert "title=T\\=1\\;\\#\n" in text and "artist=A\\\\B\n" in text and "title=x\\\ny\n" in text
    assert "START=0\nEND=1500\n" in text and text.startswith(";FFMETADATA1\n")


@pytest.mark.parametrize("kind,codec", [("book_m4b", "aac"), ("book_mp3", "mp3")])
def test_book_has_chapter_markers_titles_and_tags(book, kind, codec):
    chapters, whole = book
    encoded = encode_book(find_ffmpeg(), whole, chapters, "Ann Author", kind)
    assert encoded.kind == kind and Path(encoded.path).suffix == {"book_m4b": ".m4b", "book_mp3": ".mp3"}[kind]
    info = ffprobe(encoded.path)
    assert info["streams"][0]["codec_name"] == codec and int(info["streams"][0]["sample_rate"]) == 44_100
    tags = {k.lower(): v for k, v in info["format"]["tags"].items()}
    assert tags["title"] == "A Book: Its Title" and tags["artist"] == "Ann Author"
    read = [(float(c["start_time"]), float(c["end_time"]), c["tags"]["title"]) for c in info["chapters"]]
    expected = chapter_marks(chapters)
    assert [t for _, _, t in read] == [c.title for c in chapters]
    for (start, end, _), mark in zip(read, expected):
        assert abs(start - mark.start) <= 0.05 and abs(end - mark.end) <= 0.05
    assert float(info["format"]["duration"]) == pytest.approx(whole.duration, abs=0.1)
    if kind == "book_m4b":
        assert info["format"]["format_name"].startswith("mov,mp4,m4a")


def test_chapter_mp3_is_cbr_192k_44k1_mono_with_tags(book):
    chapters, _ = book
    mp3 = encode_chapter_mp3(find_ffmpeg(), chapters[1], "A Book", "Ann Author", 2, 3)
    info = ffprobe(mp3.path)
    stream = info["streams"][0]
    assert (stream["codec_name"], int(stream["sample_rate"]), stream["channels"]) == ("mp3", 44_100, 1)
    assert int(stream["bit_rate"]) == 192_000
    tags = info["format"]["tags"]
    assert (tags["title"], tags["album"], tags["artist"], tags["track"]) == ("Two # middle", "A Book", "Ann Author", "2/3")


def test_ffmpeg_failure_names_the_file(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not a wav at all")
    chapter = OutputFile("chapter", 0, "x", str(broken), "s", 1.0)
    with pytest.raises(EncodeError, match="broken.mp3"):
        encode_chapter_mp3(find_ffmpeg(), chapter, "B", None, 1, 1)
    assert not (tmp_path / "broken.mp3").exists() and [p.name for p in tmp_path.iterdir()] == ["broken.wav"]


def test_no_ffmpeg_on_path_is_no_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_ffmpeg() is None


def test_an_encode_over_the_ceiling_is_redone_under_it(tmp_path):
    rng = np.random.default_rng(1)
    loud = (0.3 * rng.standard_normal(2 * RATE)).clip(-0.97, 0.97).astype(np.float32)  # peaks near full scale
    path = tmp_path / "loud.wav"
    chapter = OutputFile("chapter", 0, "Loud", str(path), write_wav_atomic(path, loud), 2.0)
    mp3 = encode_chapter_mp3(find_ffmpeg(), chapter, "B", None, 1, 1, ceiling_dbtp=-3.0)
    assert ebur128(mp3.path).true_peak_dbtp <= -3.0
    assert ebur128(mp3.path).integrated_lufs < ebur128(path).integrated_lufs - 1  # made quieter, not clipped


def test_the_book_carries_each_chapters_samples_exactly(book):
    from tasks.audio.wav import read_pcm16

    chapters, whole = book
    samples, start = read_pcm16(Path(whole.path)), 0
    for chapter in chapters:
        own = read_pcm16(Path(chapter.path))
        assert np.array_equal(samples[start:start + own.size], own)
        gap = samples[start + own.size:start + own.size + round(CHAPTER_GAP_SECONDS * RATE)]
        assert gap.size == 0 or 0 < np.abs(gap).max() < 40  # room tone at -75 dBFS between chapters, not silence
        start += own.size + round(CHAPTER_GAP_SECONDS * RATE)
    assert start - round(CHAPTER_GAP_SECONDS * RATE) == samples.size
    assert whole.sha256 == sha256_file(Path(whole.path))

