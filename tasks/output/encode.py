"""Encoded delivery files through ffmpeg: each chapter encoded once, as a CBR MP3 (a deliverable) and as AAC
frames; the whole book as MP3 and as M4B (AAC in an MP4 container) joined from those by stream copy, with
chapter marks and title/author metadata. Without ffmpeg, no encode: the caller keeps its WAVs and says how to
get the rest."""
from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.audio.limiter import true_peak_between
from tasks.core.errors import VoicebatchError
from tasks.core.files import append_range, atomic_write, make_temp_beside, sha256_file
from tasks.output import frames, mp4
from tasks.output.export import OutputFile

log = logging.getLogger(__name__)

DELIVERY_RATE = 44_100  # Hz: ACX asks for 44.1 kHz MP3
MP3_BITRATE = "192k"  # ACX: constant bit rate of at least 192 kbps
# LAME's quality 7 (noise shaping off) at 192 kbps mono: 3.9 s instead of 7.1 s for a 24-minute chapter, with the
# same 30.4 dB waveform SNR as its default quality 3 (on 2 minutes of it); the chapters have nothing above 12 kHz.
MP3_OPTIONS = ["-compression_level", "7", "-cutoff", "12000"]
AAC_BITRATE = "128k"  # ffmpeg's native AAC at 96k overshot peaks by 2.4 dB on the dialogue demo; 128k by 0.1
# The chapters are 24 kHz speech, with nothing above 12 kHz to code. With the default coder and no cutoff, a
# 24-minute chapter took 18.5 s to encode and overshot its true peak by 0.7 dB; with these, 4.3 s and 0.3 dB
# (and a waveform SNR of 38 dB, not 30, on 2 minutes of it).
AAC_OPTIONS = ["-aac_coder", "fast", "-cutoff", "12000"]
PEAK_RETRIES = 4
PEAK_RETRY_MARGIN_DB = 0.2  # when an encoded file overshoots the ceiling, re-encode this much under it
PEAK_BLOCK_SAMPLES = 1 << 20  # decoded samples checked at a time (~24 s at 44.1 kHz)
PEAK_BLOCK_OVERLAP = 256  # samples of context either side of a block: more than the oversampling filter's reach
FFMPEG_TIMEOUT_SECONDS = 3600
NO_FFMPEG = ("ffmpeg was not found on PATH, so only WAV files were written. For MP3 and M4B with chapter markers, "
             "install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg) and render again")


class EncodeError(VoicebatchError):
    """ffmpeg failed to encode a file."""


@dataclass(frozen=True)
class ChapterMark:
    title: str
    start: float  # seconds from the start of the book
    end: float


def find_ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def chapter_marks(titles: list[str], encoded_samples: list[int], priming: int,
                  rate: int = DELIVERY_RATE) -> list[ChapterMark]:
    """Where each chapter starts in a book joined from its encoded chapters: after every earlier chapter's
    frames (priming and padding included) and this chapter's own priming; the first mark is 0."""
    marks, offset = [], 0
    for i, (title, samples) in enumerate(zip(titles, encoded_samples)):
        start = 0 if i == 0 else offset + priming
        marks.append(ChapterMark(title, start / rate, 0.0))
        offset += samples
    return [ChapterMark(m.title, m.start, marks[i + 1].start if i + 1 < len(marks) else offset / rate)
            for i, m in enumerate(marks)]


def ffmetadata(marks: list[ChapterMark]) -> str:
    """An ffmetadata document of the chapters' times in milliseconds. Titles and tags go on the command line
    (-metadata): ffmetadata cannot carry a value that ends in a backslash (ffmpeg 5 and 6 read on into the
    next line)."""
    lines = [";FFMETADATA1"]
    for mark in marks:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(mark.start * 1000)}", f"END={round(mark.end * 1000)}"]
    return "\n".join(lines) + "\n"


def _ffmpeg(ffmpeg: str, args: list[str], output: Path, container: str, what: str) -> None:
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, "-f", container, str(output)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise EncodeError(f"ffmpeg could not write {what} (exit {done.returncode}): "
                          f"{done.stderr.strip()[-800:] or 'no message'}")


def _run_ffmpeg(ffmpeg: str, args: list[str], target: Path, container: str) -> str:
    """Run ffmpeg into a temporary file beside `target`, then rename it into place; returns the sha256."""
    with atomic_write(target) as temp:
        _ffmpeg(ffmpeg, args, temp, container, str(target))
    return sha256_file(target)


def encoded_true_peak_dbtp(ffmpeg: str, path: Path, above_dbtp: float | None = None) -> float:
    """The true peak of an encoded file as a player decodes it, read in blocks (memory stays flat however
    long the file), each measured with its neighbours' samples around it: a block's edge neither hides an
    inter-sample peak nor makes one up. With `above_dbtp`, only a peak above it is measured exactly; under it
    the result is some value no higher than it (stretches that cannot reach it are not interpolated)."""
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-ac", "1",
           "-ar", str(DELIVERY_RATE), "-f", "f32le", "-"]
    floor = 0.0 if above_dbtp is None else 10 ** (above_dbtp / 20)
    # Each block is read into one array behind the samples carried over from the block before (at most twice
    # PEAK_BLOCK_OVERLAP): no copy of a block to join them.
    audio = np.empty(2 * PEAK_BLOCK_OVERLAP + PEAK_BLOCK_SAMPLES, np.float32)
    into = memoryview(audio).cast("B")
    peak, carried, measured_from = 0.0, 0, 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        while read := proc.stdout.readinto(into[4 * carried:]):
            size = carried + read // 4
            # The last samples' points need the next block's samples: they are measured with it.
            upto = max(measured_from, size - PEAK_BLOCK_OVERLAP)
            peak = max(peak, true_peak_between(audio[:size], DELIVERY_RATE, measured_from, upto, max(peak, floor)))
            kept_from = max(0, upto - PEAK_BLOCK_OVERLAP)  # context for the points still to measure
            carried, measured_from = size - kept_from, upto - kept_from
            audio[:carried] = audio[kept_from:size]
        peak = max(peak, true_peak_between(audio[:carried], DELIVERY_RATE, measured_from, carried, max(peak, floor)))
        errors = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise EncodeError(f"ffmpeg could not decode {path} to check its peaks: {errors[-800:]}")
    return 20 * math.log10(peak) if peak > 0 else float("-inf")


def _encode_under_ceiling(ffmpeg: str, args: list[str], target: Path, container: str,
                          ceiling_dbtp: float | None) -> str:
    """Encode; when the codec pushed a true peak over the ceiling, encode again that much quieter (codecs
    add inter-sample peaks the WAV never had)."""
    digest = _run_ffmpeg(ffmpeg, args, target, container)
    if ceiling_dbtp is None:
        return digest
    reduction = 0.0
    for attempt in range(PEAK_RETRIES + 1):
        over = encoded_true_peak_dbtp(ffmpeg, target, above_dbtp=ceiling_dbtp) - ceiling_dbtp
        if over <= 0:
            break
        if attempt == PEAK_RETRIES:
            raise EncodeError(f"{target}: the encoder keeps the true peak over the {ceiling_dbtp:g} dBTP ceiling even "
                              f"{reduction:.1f} dB quieter; lower loudness.target or raise loudness.ceiling")
        reduction += over + PEAK_RETRY_MARGIN_DB
        log.warning("%s: the encoder raised the true peak %.2f dB over the %g dBTP ceiling; encoding it %.2f dB "
                    "quieter", target, over, ceiling_dbtp, reduction)
        digest = _run_ffmpeg(ffmpeg, [*args, "-af", f"volume={-reduction:.2f}dB"], target, container)
    return digest


def _tags(**tags: str | None) -> list[str]:
    return [arg for name, value in tags.items() if value for arg in ("-metadata", f"{name}={value}")]


def encode_chapter_mp3(ffmpeg: str, chapter: OutputFile, book_title: str, author: str | None,
                       track: int, tracks: int, ceiling_dbtp: float | None = None) -> OutputFile:
    """One chapter as 44.1 kHz mono CBR MP3 with ID3 title, artist, album and track number."""
    target = Path(chapter.path).with_suffix(".mp3")
    args = ["-i", chapter.path, "-map", "0:a", "-ac", "1", "-ar", str(DELIVERY_RATE), "-c:a", "libmp3lame",
            "-b:a", MP3_BITRATE, *MP3_OPTIONS, "-id3v2_version", "3",
            *_tags(title=chapter.title, artist=author, album_artist=author, album=book_title,
                   track=f"{track}/{tracks}", genre="Audiobook")]
    digest = _encode_under_ceiling(ffmpeg, args, target, "mp3", ceiling_dbtp)
    return OutputFile("chapter_mp3", chapter.chapter, chapter.title, str(target), digest, chapter.duration)


def encode_chapter_aac(ffmpeg: str, chapter: OutputFile, target: Path,
                       ceiling_dbtp: float | None = None) -> OutputFile:
    """One chapter as 44.1 kHz mono AAC frames (ADTS, no container): the part of the M4B this chapter is,
    joined to the others by stream copy."""
    args = ["-i", chapter.path, "-map", "0:a", "-ac", "1", "-ar", str(DELIVERY_RATE), "-c:a", "aac",
            "-b:a", AAC_BITRATE, *AAC_OPTIONS]
    digest = _encode_under_ceiling(ffmpeg, args, target, "adts", ceiling_dbtp)
    return OutputFile("chapter_aac", chapter.chapter, chapter.title, str(target), digest, chapter.duration)


def _ffmpeg_header(ffmpeg: str, first_frames: bytes, raw: str, container: str, marks: list[ChapterMark],
                   target: Path, tag_args: list[str]) -> bytes:
    """A file ffmpeg makes of the book's first frames with the book's title, tags and chapter marks: everything
    the book's own file needs but its frames."""
    staged_fd, staged = make_temp_beside(target, f".{raw}")
    meta_fd, meta = make_temp_beside(target, ".ffmeta")
    made_fd, made = make_temp_beside(target, f".head.{container}")
    os.close(made_fd)
    try:
        with open(staged_fd, "wb") as f:
            f.write(first_frames)
        with open(meta_fd, "w", encoding="utf-8") as f:
            f.write(ffmetadata(marks))
        _ffmpeg(ffmpeg, ["-f", raw, "-i", staged, "-f", "ffmetadata", "-i", meta, "-map", "0:a", "-map_metadata",
                         "-1", "-map_chapters", "1", "-c", "copy", *tag_args], Path(made), container,
                f"the chapter marks and tags of {target}")
        return Path(made).read_bytes()
    finally:
        for path in (staged, meta, made):
            Path(path).unlink(missing_ok=True)


def join_book(ffmpeg: str, parts: list[OutputFile], target: Path, title: str, author: str | None,
              kind: str, notes: Path | None = None) -> OutputFile:
    """The book as `book_m4b` (from the chapters' AAC) or `book_mp3` (from the chapter MP3s): their frames copied
    in order, never re-encoded, with a chapter mark at each chapter's first sample, title and author. ffmpeg
    writes those over the book's first frames; the frames are laid after that here (ffmpeg's own stream copy
    spent seconds per book hour on per-frame work). With `notes`, a folder where each chapter's frames are
    remembered for the next join."""
    if not parts:
        raise EncodeError(f"{target}: a book needs at least one chapter")
    container, raw = {"book_m4b": ("ipod", "aac"), "book_mp3": ("mp3", "mp3")}[kind]
    paths = [Path(p.path) for p in parts]
    found = [frames.remembered_frames(p, notes) if notes else frames.frames(p) for p in paths]
    marks = chapter_marks([p.title for p in parts], [r.count * frames.frame_samples(p) for p, (r, _) in zip(paths, found)],
                          frames.priming(paths[0]))
    tag_args = [*_tags(title=title, album=title, artist=author, album_artist=author, genre="Audiobook"),
                *[arg for i, m in enumerate(marks) for arg in (f"-metadata:c:{i}", f"title={m.title}")],
                *(["-id3v2_version", "3", "-write_xing", "0"] if kind == "book_mp3" else [])]
    header = _ffmpeg_header(ffmpeg, frames.first_frames(paths[0], found[0][0]), raw, container, marks, target, tag_args)
    with atomic_write(target) as temp, open(temp, "wb") as out:
        if kind == "book_mp3":
            tag = frames.id3v2_size(header)
            if not tag:
                raise EncodeError(f"ffmpeg wrote no ID3 tag for {target}")
            out.write(header[:tag])
            for path, (run, _) in zip(paths, found):
                append_range(path, run.start, run.end, out)
        else:
            out.write(mp4.book_head(header, [sizes.astype(np.int64) - run.header for run, sizes in found],
                                    DELIVERY_RATE, frames.AAC_FRAME_SAMPLES))
            for path, (run, sizes) in zip(paths, found):
                payload = frames.payload_file(path, run, sizes, notes) if notes else None
                if payload:
                    append_range(payload, 0, payload.stat().st_size, out)
                else:
                    with open(path, "rb") as f:
                        f.seek(run.start)
                        for piece in frames.frame_payloads(f.read(run.end - run.start), sizes, run.header):
                            out.write(piece)
    return OutputFile(kind, None, title, str(target), sha256_file(target), marks[-1].end)
