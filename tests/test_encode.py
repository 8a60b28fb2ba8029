"""ffmpeg export on synthetic chapters: chapters encoded once, books joined from them by stream copy, read
back with ffprobe (chapter marks against where each chapter really starts, titles, tags, format), and the PATH
without ffmpeg seen as no ffmpeg."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.core.files import sha256_file
from tasks.audio.assemble import CHAPTER_GAP_SECONDS
from tasks.audio.wav import write_wav_atomic
from tasks.output.encode import (EncodeError, chapter_marks, encode_chapter_aac, encode_chapter_mp3, ffmetadata,
                                 find_ffmpeg, join_book)
from tasks.output.export import OutputFile, export_book
from tasks.output.frames import encoded_samples, frame_run
from meters import decode, ebur128, ffprobe

RATE = 24_000
pytestmark = pytest.mark.usefixtures("ffmpeg_installed")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    folder = tmp_path_factory.mktemp("book")
    rng = np.random.default_rng(0)
    chapters = []
    # ffmetadata's special characters, and a title ending in a backslash (issue 25: it gained a newline).
    titles = ["One; the = start", "Two # middle", "Three \\ end \\"]
    for i, (seconds, title) in enumerate(zip([3.2, 5.05, 2.4], titles)):
        audio = (0.05 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)
        audio[:240] = 0.6  # a burst on each chapter's first samples: where the chapter starts, when decoded
        path = folder / f"{i + 1:02d}-ch.wav"
        chapters.append(OutputFile("chapter", i, title, str(path), write_wav_atomic(path, audio), seconds))
    whole = export_book(chapters, folder / "book.wav", "A Book: Its Title", room_tone_dbfs=-75.0)
    return chapters, whole


def test_chapter_marks_follow_the_encoded_sample_counts_and_priming():
    marks = chapter_marks(["a", "b", "c"], [44_100, 2 * 44_100, 1024], priming=1024)
    assert [m.start for m in marks] == [0.0, (44_100 + 1024) / 44_100, (3 * 44_100 + 1024) / 44_100]
    assert [m.end for m in marks] == [marks[1].start, marks[2].start, (3 * 44_100 + 1024) / 44_100]


def test_ffmetadata_holds_only_the_chapter_times():
    text = ffmetadata(chapter_marks(["x\ny \\"], [44_100 + 441], priming=0))
    assert text == ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1010\n"


def _onsets(audio: np.ndarray, rate: int) -> list[float]:
    """Where a burst starts after at least a second of quiet."""
    loud = np.flatnonzero(np.abs(audio) > 0.3)
    return [i / rate for n, i in enumerate(loud) if n == 0 or i - loud[n - 1] > rate]


@pytest.fixture(scope="module")
def encoded(book, tmp_path_factory):
    chapters, _ = book
    folder = tmp_path_factory.mktemp("encoded")
    aac = [encode_chapter_aac(find_ffmpeg(), c, folder / f"{i}.aac") for i, c in enumerate(chapters)]
    mp3 = [encode_chapter_mp3(find_ffmpeg(), c, "A Book", "Ann Author", i + 1, 3) for i, c in enumerate(chapters)]
    return {"book_m4b": aac, "book_mp3": mp3}


@pytest.mark.parametrize("kind,codec", [("book_m4b", "aac"), ("book_mp3", "mp3")])
def test_book_joined_from_encoded_chapters_has_marks_where_they_start(book, encoded, tmp_path, kind, codec):
    chapters, _ = book
    target = tmp_path / ("book.m4b" if kind == "book_m4b" else "book.mp3")
    # Joined twice, the second time from the frame runs remembered the first time: the same book.
    first = join_book(find_ffmpeg(), encoded[kind], target, "A Book: Its Title \\", "Ann Author", kind, tmp_path)
    joined = join_book(find_ffmpeg(), encoded[kind], target, "A Book: Its Title \\", "Ann Author", kind, tmp_path)
    assert joined.sha256 == first.sha256 and len(list(tmp_path.glob("*.frames.json"))) == len(encoded[kind])
    # The M4B's frames without their headers are kept as files, laid by file copy: the same bytes as without.
    plain = join_book(find_ffmpeg(), encoded[kind], tmp_path / f"plain{target.suffix}", "A Book: Its Title \\",
                      "Ann Author", kind)
    assert plain.sha256 == joined.sha256 == sha256_file(target)
    assert len(list(tmp_path.glob("*.payload"))) == (len(encoded[kind]) if kind == "book_m4b" else 0)
    assert joined.kind == kind and joined.path == str(target)
    info = ffprobe(joined.path)
    assert info["streams"][0]["codec_name"] == codec and int(info["streams"][0]["sample_rate"]) == 44_100
    tags = {k.lower(): v for k, v in info["format"]["tags"].items()}
    assert tags["title"] == "A Book: Its Title \\" and tags["artist"] == "Ann Author"
    read = [(float(c["start_time"]), float(c["end_time"]), c["tags"]["title"]) for c in info["chapters"]]
    assert [t for _, _, t in read] == [c.title for c in chapters]
    # Each mark within one codec frame of where the chapter's first sample is heard in the decoded book.
    frame = (1024 if kind == "book_m4b" else 1152) / 44_100
    heard = _onsets(decode(joined.path, 44_100), 44_100)
    assert len(heard) == len(chapters)
    for (start, _, _), onset in zip(read, heard):
        assert abs(start - onset) <= frame
    # Stream copy: the book holds exactly the chapters' frames.
    assert encoded_samples(Path(encoded[kind][0].path)) > 3.2 * 44_100
    assert float(info["format"]["duration"]) == pytest.approx(
        sum(encoded_samples(Path(p.path)) for p in encoded[kind]) / 44_100, abs=0.1)
    if kind == "book_m4b":
        assert info["format"]["format_name"].startswith("mov,mp4,m4a")
        assert info["format"]["tags"]["major_brand"].strip() == "M4B"  # an audiobook: players keep its place
    # The book decodes exactly as the chapters' frames do played one after the other.
    played = tmp_path / f"frames.{codec}"
    with open(played, "wb") as f:
        for part in encoded[kind]:
            run = frame_run(Path(part.path))
            f.write(Path(part.path).read_bytes()[run.start:run.end])
    assert np.array_equal(decode(joined.path, 44_100), decode(str(played), 44_100))


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


@pytest.mark.parametrize("block", [1000, 4099, 1 << 20])
def test_an_encoded_files_true_peak_read_in_blocks_is_the_whole_files(encoded, monkeypatch, tmp_path, block):
    from tasks.audio.limiter import true_peak_dbtp
    from tasks.output import encode

    monkeypatch.setattr(encode, "PEAK_BLOCK_SAMPLES", block)
    steady = tmp_path / "tone.wav"  # loud at every block edge: an edge read as the signal's end rings over it
    write_wav_atomic(steady, 0.5 * np.sin(2 * np.pi * 441 * np.arange(3 * RATE) / RATE), sample_rate=RATE)
    for path in (encoded["book_mp3"][0].path, encoded["book_m4b"][1].path, steady):
        whole = true_peak_dbtp(decode(path, 44_100), 44_100)
        assert encode.encoded_true_peak_dbtp(find_ffmpeg(), Path(path)) == pytest.approx(whole, abs=1e-6)
        # Asked only whether it is above a level: exact above it, and never over it when under it.
        assert encode.encoded_true_peak_dbtp(find_ffmpeg(), Path(path), whole - 0.5) == pytest.approx(whole, abs=1e-6)
        assert encode.encoded_true_peak_dbtp(find_ffmpeg(), Path(path), whole + 0.01) <= whole + 1e-6


def test_frame_runs_are_remembered_only_for_the_same_file(encoded, tmp_path):
    from tasks.output.frames import frame_run, frames, remembered_frames

    notes = tmp_path / "notes"
    for kind in ("book_m4b", "book_mp3"):
        first, second = (Path(p.path) for p in encoded[kind][:2])
        assert remembered_frames(first, notes)[0] == frame_run(first)
        run, sizes = remembered_frames(first, notes)  # from its note
        assert run == frame_run(first) and np.array_equal(sizes, frames(first)[1])
        assert (sizes.size == run.count and sizes.sum() == run.end - run.start) if kind == "book_m4b" else not sizes.size
        assert frame_run(first) != frame_run(second)
        moved = tmp_path / f"chapter{first.suffix}"
        moved.write_bytes(first.read_bytes())
        assert remembered_frames(moved, notes)[0] == frame_run(first)
        (tmp_path / "new").write_bytes(second.read_bytes())
        (tmp_path / "new").replace(moved)  # another chapter written where the first was, as encodes write
        assert remembered_frames(moved, notes)[0] == frame_run(second)
    assert len(list(notes.iterdir())) == 4


def test_a_chapters_headerless_frames_are_made_again_when_its_file_is_another(encoded, tmp_path):
    from tasks.output.frames import frames, payload_file

    first, second = (Path(p.path) for p in encoded["book_m4b"][:2])
    chapter, notes = tmp_path / "chapter.aac", tmp_path / "notes"
    chapter.write_bytes(first.read_bytes())
    made = payload_file(chapter, *frames(chapter), notes)
    assert payload_file(chapter, *frames(chapter), notes) == made
    (tmp_path / "new").write_bytes(second.read_bytes())
    (tmp_path / "new").replace(chapter)  # another chapter written where the first was, as encodes write
    remade = payload_file(chapter, *frames(chapter), notes)
    assert remade != made and not made.exists() and list(notes.iterdir()) == [remade]
    run, sizes = frames(second)
    data, at, kept = second.read_bytes(), 0, []
    for size in sizes.astype(int):
        kept.append(data[at + run.header:at + size])
        at += size
    assert remade.read_bytes() == b"".join(kept)


def test_a_chapter_file_that_is_not_codec_frames_is_refused_by_name(tmp_path):
    from tasks.output.frames import FrameError, encoded_samples

    for name in ("bad.mp3", "bad.aac"):
        (tmp_path / name).write_bytes(b"\xff\xfb\x00\x00" + bytes(100))
        with pytest.raises(FrameError, match=name):
            encoded_samples(tmp_path / name)


def test_a_45_hour_m4b_gets_64_bit_durations_and_offsets(encoded, tmp_path):
    """Past 27 hours a sample count, and past 4 GB an offset, no longer fits 32 bits. The book's head is written
    for 45 hours of frames, the frames themselves left as a sparse hole: ffprobe reads it as 45 hours long,
    with every chapter mark where it should be."""
    from tasks.output import frames, mp4
    from tasks.output.encode import _ffmpeg_header, _tags

    chapter_frames = [2_000_000, 2_000_000, 1_000_000]  # 1024 samples each at 44.1 kHz: 46.4 + 46.4 + 23.2 hours
    source = Path(encoded["book_m4b"][0].path)
    marks = chapter_marks(["One", "Two", "Three"], [n * 1024 for n in chapter_frames], priming=1024)
    args = [*_tags(title="Long"), *[a for i, m in enumerate(marks) for a in (f"-metadata:c:{i}", f"title={m.title}")]]
    target = tmp_path / "long.m4b"
    template = _ffmpeg_header(find_ffmpeg(), frames.first_frames(source, frames.frame_run(source)), "aac", "ipod",
                              marks, target, args)
    sizes = [np.full(n, 900, np.int64) for n in chapter_frames]  # 4.5 GB of frames
    head = mp4.book_head(template, sizes, 44_100, 1024)
    with open(target, "wb") as f:
        f.write(head)
        f.truncate(len(head) + 5_000_000 * 900)
    moov_at = head.index(b"moov") - 4
    moov = mp4.parse(head, moov_at, moov_at + int.from_bytes(head[moov_at:moov_at + 4], "big"))[0]
    audio = moov.children[1]
    assert audio.child(b"mdia").child(b"mdhd").payload[0] == 1  # version 1: 64-bit duration
    assert audio.child(b"mdia").child(b"minf").child(b"stbl").child(b"co64")  # 64-bit chunk offsets
    info = ffprobe(str(target))
    assert float(info["streams"][0]["duration"]) == pytest.approx(5_000_000 * 1024 / 44_100, abs=0.01)
    assert [round(float(c["start_time"]), 2) for c in info["chapters"]] == [round(m.start, 2) for m in marks]
    assert int(info["streams"][0]["nb_frames"]) == 5_000_000


def test_a_chapter_file_that_is_not_a_16_bit_wav_is_refused_by_name(book, tmp_path):
    from tasks.output.export import ChapterFileError

    chapters, _ = book
    float_wav = tmp_path / "02-float.wav"
    write_wav_atomic(float_wav, np.zeros(RATE, np.float32), subtype="FLOAT")
    odd = [chapters[0], OutputFile("chapter", 1, "Two", str(float_wav), "", 1.0)]
    with pytest.raises(ChapterFileError, match="02-float.wav"):
        export_book(odd, tmp_path / "book.wav", "B")
    assert not (tmp_path / "book.wav").exists()
