"""Export: a chapter's takes assembled into its WAV, chapters into the whole-book WAV, names made safe."""
from __future__ import annotations

import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from tasks.audio.assemble import CHAPTER_GAP_SECONDS, gap_audio
from tasks.audio.wav import OutputWriteError, to_pcm16, write_fix
from tasks.core.audio_format import SAMPLE_RATE
from tasks.core.errors import VoicebatchError
from tasks.core.files import append_range, atomic_write, sha256_file


@dataclass(frozen=True)
class OutputFile:
    kind: str  # chapter or book
    chapter: int | None
    title: str
    path: str
    sha256: str
    duration: float


def slug(text: str, fallback: str) -> str:
    """A file-name-safe, lowercase ASCII form of a title."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].strip("-")
    return cleaned or fallback


def book_dir(output_dir: Path, title: str) -> Path:
    return output_dir / slug(title, "book")


def chapter_path(output_dir: Path, book_title: str, index: int, title: str) -> Path:
    return book_dir(output_dir, book_title) / f"{index + 1:02d}-{slug(title, 'chapter')}.wav"


class OutputTooLarge(VoicebatchError):
    """An output file would exceed the configured size limit."""


WAV_MAX_BYTES = 2**32 - 1  # a RIFF WAV's sizes are 32-bit: 24.8 hours of 16-bit mono at 24 kHz


def wav_mb(samples: int) -> float:
    return (samples * 2 + 44) / 1024**2  # 16-bit mono WAV


def check_size(path: Path, samples: int, max_mb: float, title: str = "") -> None:
    """A chapter too large for the limit, or for a WAV at all, is refused with the fix that works."""
    size_mb = wav_mb(samples)
    split = f"split chapter {title!r} into shorter chapters in the manifest" if title else "split the chapter"
    if size_mb * 1024**2 > WAV_MAX_BYTES:
        raise OutputTooLarge(f"{path} would be {size_mb:.0f} MB, more than a WAV file can hold (4 GiB); {split}")
    if size_mb > max_mb:
        raise OutputTooLarge(f"{path} would be {size_mb:.0f} MB, over VOICEBATCH_MAX_OUTPUT_MB={max_mb:g}; {split}, "
                             f"or set VOICEBATCH_MAX_OUTPUT_MB={int(size_mb) + 1} and run again")


def book_samples(chapters: list[OutputFile], gap: float = CHAPTER_GAP_SECONDS) -> int:
    return sum(sf.info(c.path).frames for c in chapters) + max(0, len(chapters) - 1) * round(gap * SAMPLE_RATE)


def book_wav_skipped(path: Path, chapters: list[OutputFile], max_mb: float) -> str | None:
    """Why the whole-book WAV is not written (too large for a WAV, or for the limit), or None. The chapter
    files, the M4B and the MP3 are the deliverables: a long book never fails for its WAV."""
    size_mb = wav_mb(book_samples(chapters))
    if size_mb * 1024**2 > WAV_MAX_BYTES:
        return (f"{path} not written: it would be {size_mb:.0f} MB, more than a WAV file can hold (4 GiB); "
                "the chapter WAVs, the M4B and the MP3 hold the whole book")
    if size_mb > max_mb:
        return (f"{path} not written: it would be {size_mb:.0f} MB, over VOICEBATCH_MAX_OUTPUT_MB={max_mb:g}; the "
                f"chapter WAVs, the M4B and the MP3 hold the whole book (for the WAV too, set "
                f"VOICEBATCH_MAX_OUTPUT_MB={int(size_mb) + 1})")
    return None


class ChapterFileError(VoicebatchError):
    """A chapter file is not the WAV this program writes."""


def pcm16_samples(path: Path) -> tuple[int, int]:
    """Where a 16-bit mono WAV at SAMPLE_RATE (a chapter file) keeps its samples: bytes [start, end)."""
    with open(path, "rb") as f:
        head, fmt = f.read(12), None
        while head[:4] == b"RIFF" and head[8:12] == b"WAVE" and len(chunk := f.read(8)) == 8:
            kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if kind == b"fmt ":
                fmt = f.read(size + (size & 1))
            elif kind == b"data":
                start = f.tell()
                if fmt is not None and struct.unpack_from("<HHI", fmt) == (1, 1, SAMPLE_RATE) and \
                        struct.unpack_from("<H", fmt, 14)[0] == 16:
                    return start, start + size
                break
            else:
                f.seek(size + (size & 1), 1)
    raise ChapterFileError(f"{path} is not a 16-bit mono {SAMPLE_RATE} Hz WAV as voicebatch writes chapters; delete "
                           "it and render again")


def _wav_header(data_bytes: int) -> bytes:
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16) + b"data" +
            struct.pack("<I", data_bytes))


def export_book(chapters: list[OutputFile], path: Path, title: str, room_tone_dbfs: float | None = None) -> OutputFile:
    """The chapters in order with a gap between them (room tone at that level, else digital silence): each
    chapter's samples copied exactly from its file, in the kernel where it can, never the whole book in
    memory (a 4.8-hour book: 0.5 s, where reading and writing it through Python took ~2.5 s)."""
    gap = to_pcm16(gap_audio(CHAPTER_GAP_SECONDS, room_tone_dbfs)).astype("<i2").tobytes()
    spans = [pcm16_samples(Path(c.path)) for c in chapters]
    data_bytes = sum(end - start for start, end in spans) + len(gap) * max(0, len(chapters) - 1)
    if 36 + data_bytes > WAV_MAX_BYTES:
        raise OutputTooLarge(f"{path} would be {data_bytes / 1024**2:.0f} MB, more than a WAV file can hold (4 GiB)")
    try:
        with atomic_write(path) as temp, open(temp, "wb") as book:
            book.write(_wav_header(data_bytes))
            for i, (chapter, (start, end)) in enumerate(zip(chapters, spans)):
                if i:
                    book.write(gap)
                append_range(Path(chapter.path), start, end, book)
    except OSError as e:
        raise OutputWriteError(f"cannot write {path}: {e.strerror or e}; {write_fix(e)}") from None
    return OutputFile("book", None, title, str(path), sha256_file(path), data_bytes // 2 / SAMPLE_RATE)
