"""Encoded delivery files through ffmpeg: a CBR MP3 per chapter, and the whole book as MP3 and as M4B
(AAC in an MP4 container), both with chapter markers and title/author metadata. Without ffmpeg, no encode:
the caller keeps its WAVs and says how to get the rest."""
from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tasks.audio.assemble import CHAPTER_GAP_SECONDS
from tasks.audio.limiter import true_peak_dbtp
from tasks.core.errors import VoicebatchError
from tasks.core.files import atomic_write, sha256_file
from tasks.output.export import OutputFile

log = logging.getLogger(__name__)

DELIVERY_RATE = 44_100  # Hz: ACX asks for 44.1 kHz MP3
MP3_BITRATE = "192k"  # ACX: constant bit rate of at least 192 kbps
AAC_BITRATE = "128k"  # ffmpeg's native AAC at 96k overshot peaks by 2.4 dB on the dialogue demo; 128k by 0.1
PEAK_RETRIES = 4
PEAK_RETRY_MARGIN_DB = 0.2  # when an encoded file overshoots the ceiling, re-encode this much under it
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


def chapter_marks(chapters: list[OutputFile], gap: float = CHAPTER_GAP_SECONDS) -> list[ChapterMark]:
    """Where each chapter starts in the whole-book file; a chapter owns the gap after it."""
    marks, start = [], 0.0
    for i, chapter in enumerate(chapters):
        end = start + chapter.duration + (gap if i + 1 < len(chapters) else 0.0)
        marks.append(ChapterMark(chapter.title, start, end))
        start = end
    return marks


def _escape(value: str) -> str:
    """ffmetadata escapes '=', ';', '#', '\\' and newlines with a backslash."""
    out = "".join("\\" + ch if ch in "=;#\\\n" else ch for ch in value)
    return out.replace("\r", " ")


def ffmetadata(title: str, author: str | None, marks: list[ChapterMark]) -> str:
    """An ffmetadata document: the book's tags and one [CHAPTER] per mark, in milliseconds."""
    lines = [";FFMETADATA1", f"title={_escape(title)}", f"album={_escape(title)}"]
    if author:
        lines += [f"artist={_escape(author)}", f"album_artist={_escape(author)}"]
    lines.append("genre=Audiobook")
    for mark in marks:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(mark.start * 1000)}", f"END={round(mark.end * 1000)}",
                  f"title={_escape(mark.title)}"]
    return "\n".join(lines) + "\n"


def _run_ffmpeg(ffmpeg: str, args: list[str], target: Path, container: str) -> str:
    """Run ffmpeg into a temporary file beside `target`, then rename it into place; returns the sha256."""
    with atomic_write(target) as temp:
        cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, "-f", container, str(temp)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_SECONDS)
        if done.returncode != 0:
            raise EncodeError(f"ffmpeg could not write {target} (exit {done.returncode}): "
                              f"{done.stderr.strip()[-800:] or 'no message'}")
    return sha256_file(target)


def encoded_true_peak_dbtp(ffmpeg: str, path: Path) -> float:
    """The true peak of an encoded file as a player decodes it."""
    import numpy as np

    done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-ac", "1",
                           "-ar", str(DELIVERY_RATE), "-f", "f32le", "-"], capture_output=True,
                          timeout=FFMPEG_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise EncodeError(f"ffmpeg could not decode {path} to check its peaks: {done.stderr.decode()[-800:]}")
    return true_peak_dbtp(np.frombuffer(done.stdout, dtype=np.float32), DELIVERY_RATE)


def _encode_under_ceiling(ffmpeg: str, args: list[str], target: Path, container: str,
                          ceiling_dbtp: float | None) -> str:
    """Encode; when the codec pushed a true peak over the ceiling, encode again that much quieter (codecs
    add inter-sample peaks the WAV never had)."""
    digest = _run_ffmpeg(ffmpeg, args, target, container)
    if ceiling_dbtp is None:
        return digest
    reduction = 0.0
    for attempt in range(PEAK_RETRIES + 1):
        over = encoded_true_peak_dbtp(ffmpeg, target) - ceiling_dbtp
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
            "-b:a", MP3_BITRATE, "-id3v2_version", "3",
            *_tags(title=chapter.title, artist=author, album_artist=author, album=book_title,
                   track=f"{track}/{tracks}", genre="Audiobook")]
    digest = _encode_under_ceiling(ffmpeg, args, target, "mp3", ceiling_dbtp)
    return OutputFile("chapter_mp3", chapter.chapter, chapter.title, str(target), digest, chapter.duration)


def encode_book(ffmpeg: str, book: OutputFile, chapters: list[OutputFile], author: str | None,
                kind: str, ceiling_dbtp: float | None = None) -> OutputFile:
    """The whole book as `book_m4b` (AAC, MP4 container) or `book_mp3` (ID3 chapter frames), chapter markers at
    the chapter boundaries and the manifest's title and author."""
    suffix, container, codec = {"book_m4b": (".m4b", "ipod", ["-c:a", "aac", "-b:a", AAC_BITRATE]),
                                "book_mp3": (".mp3", "mp3", ["-c:a", "libmp3lame", "-b:a", MP3_BITRATE,
                                                             "-id3v2_version", "3"])}[kind]
    target = Path(book.path).with_suffix(suffix)
    meta = ffmetadata(book.title, author, chapter_marks(chapters))
    with tempfile.NamedTemporaryFile("w", suffix=".ffmeta", encoding="utf-8", delete=False) as f:
        f.write(meta)
    try:
        args = ["-i", book.path, "-f", "ffmetadata", "-i", f.name, "-map", "0:a", "-map_metadata", "1",
                "-map_chapters", "1", "-ac", "1", "-ar", str(DELIVERY_RATE), *codec]
        digest = _encode_under_ceiling(ffmpeg, args, target, container, ceiling_dbtp)
    finally:
        Path(f.name).unlink(missing_ok=True)
    return OutputFile(kind, None, book.title, str(target), digest, book.duration)
