"""Codec frames of encoded chapters, read without decoding: ADTS AAC and MPEG-1 Layer III frames, counted (a
chapter's encoded sample count, priming and padding included) and copied out without container headers (ID3
tags, the LAME Info frame), so that chapters join into one book by stream copy."""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from tasks.core.errors import VoicebatchError
from tasks.core.files import write_bytes_atomic

AAC_FRAME_SAMPLES = 1024
MP3_FRAME_SAMPLES = 1152
AAC_PRIMING = 1024  # samples ffmpeg's AAC encoder puts before the audio (its encoder delay)
MP3_PRIMING = 576  # LAME's encoder delay (decoders remove their own 529-sample delay themselves)
FRAMES_PER_PIECE = 4096  # ~1.5 MB of 128 kbps AAC
_MP3_KBPS = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]  # MPEG-1 Layer III
_MP3_RATES = [44_100, 48_000, 32_000]


class FrameError(VoicebatchError):
    """An encoded chapter is not the stream of frames its encoder should have written."""


@dataclass(frozen=True)
class FrameRun:
    """Where a file's audio frames lie: bytes [start, end), `count` frames, copied out in one piece; each
    frame begins with `header` bytes that an MP4 container does not keep (ADTS; 0 for MP3)."""
    start: int
    end: int
    count: int
    header: int = 0


def id3v2_size(data: bytes) -> int:
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    return 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]) + (10 if data[5] & 0x10 else 0)


def _mp3_frame_length(header: bytes) -> int:
    b2 = header[2]
    return 144_000 * _MP3_KBPS[b2 >> 4] // _MP3_RATES[(b2 >> 2) & 3] + ((b2 >> 1) & 1)


def _mp3_run(path: Path) -> FrameRun:
    """The audio frames of an MPEG-1 Layer III file, without its ID3 tags and its Xing/Info frame. The file is
    read whole (a chapter is the largest unit held): a read per frame cost ~1 s per hour of audio."""
    data = Path(path).read_bytes()
    start = end = first = id3v2_size(data)
    count = 0
    while end + 4 <= len(data) and data[end:end + 3] != b"TAG":  # an ID3v1 tag ends the file
        b1, b2 = data[end + 1], data[end + 2]
        if data[end] != 0xFF or (b1 & 0xFE) != 0xFA or not 0 < b2 >> 4 < 15 or b2 & 0x0C == 0x0C:
            raise FrameError(f"{path}: not a constant-bit-rate MPEG-1 Layer III frame at byte {end}")
        length = _mp3_frame_length(data[end:end + 4])
        if end == first and (b"Info" in data[end:end + 64] or b"Xing" in data[end:end + 64]):
            start = end + length  # the LAME tag: a frame of no audio, only ever the first
        else:
            count += 1
        end = min(end + length, len(data))
    return FrameRun(start, end, count)


def _adts_frame_length(header: bytes) -> int:
    return ((header[3] & 3) << 11) | (header[4] << 3) | (header[5] >> 5)


def _adts_frames(path: Path) -> tuple[FrameRun, np.ndarray]:
    """The frames of an ADTS AAC file, one raw block of 1024 samples each (as ffmpeg writes them), and each
    frame's length in bytes."""
    data = Path(path).read_bytes()
    end = count = 0
    lengths = []
    header = 9 if data[1:2] and not data[1] & 1 else 7  # 9 bytes with a CRC
    while end + 7 <= len(data):
        if data[end] != 0xFF or (data[end + 1] & 0xF6) != 0xF0 or data[end + 6] & 3 or \
                (9 if not data[end + 1] & 1 else 7) != header:
            raise FrameError(f"{path}: not an ADTS frame of one raw block at byte {end}")
        length = _adts_frame_length(data[end:end + 7])
        if length <= header or end + length > len(data):
            raise FrameError(f"{path}: the ADTS frame at byte {end} is cut short")
        lengths.append(length)
        end += length
        count += 1
    return FrameRun(0, end, count, header), np.array(lengths, np.uint16)


def frame_run(path: Path) -> FrameRun:
    """The frames' place in the file, each frame header checked (their audio is not read)."""
    return frames(path)[0]


def frames(path: Path) -> tuple[FrameRun, np.ndarray]:
    """frame_run(), and each frame's length in bytes where a container needs it (ADTS; empty for MP3)."""
    return _adts_frames(path) if Path(path).suffix == ".aac" else (_mp3_run(path), np.zeros(0, np.uint16))


def _noted(path: Path) -> tuple[str, list[int]]:
    """What notes about a file are filed under (its resolved path, hashed) and what tells that it is still the
    same file: its size, change time and inode."""
    status = Path(path).stat()
    return (hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest(),
            [status.st_size, status.st_mtime_ns, status.st_ino])


def remembered_frames(path: Path, notes: Path) -> tuple[FrameRun, np.ndarray]:
    """frames(), kept in a note in the folder `notes` for as long as the file is the same one (same size,
    change time and inode): a book is joined from its chapters again after every edit, and reading the frame
    headers of every unchanged chapter again cost ~0.35 s per hour of audio and codec."""
    key, identity = _noted(path)
    note = Path(notes) / f"{key}.frames.json"
    try:
        saved = json.loads(note.read_text())
        if saved["file"] == identity and saved.get("version") == 2:
            return FrameRun(*saved["run"]), np.frombuffer(base64.b64decode(saved["sizes"]), "<u2").astype(np.uint16)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no note, or one of another file: read the headers
    run, sizes = frames(path)
    write_bytes_atomic(note, json.dumps({"version": 2, "file": identity, "run": astuple(run),
                                         "sizes": base64.b64encode(sizes.astype("<u2").tobytes()).decode()}).encode())
    return run, sizes


def payload_file(path: Path, run: FrameRun, sizes: np.ndarray, notes: Path) -> Path:
    """The frames of the ADTS file `path` without their headers (what an MP4 keeps of them), as a file in the
    folder `notes`, made once for as long as `path` is the same file (same size, change time and inode): the
    book's M4B is then laid by the kernel's file copy, where taking the headers out of every chapter's frames
    after each edit cost seconds (a 14-hour book is 0.8 GB of them). A stale one of the same chapter goes."""
    key, identity = _noted(path)
    payload = Path(notes) / f"{key}-{'-'.join(map(str, identity))}.payload"
    expected = int(sizes.astype(np.int64).sum()) - run.header * run.count
    if payload.is_file() and payload.stat().st_size == expected:
        return payload
    with open(path, "rb") as f:
        f.seek(run.start)
        write_bytes_atomic(payload, b"".join(piece.tobytes() for piece in
                                             frame_payloads(f.read(run.end - run.start), sizes, run.header)))
    for stale in Path(notes).glob(f"{key}-*.payload"):
        if stale != payload:
            stale.unlink(missing_ok=True)
    return payload


def first_frames(path: Path, run: FrameRun, count: int = 3) -> bytes:
    """The file's first frames (ffmpeg's MP3 reader refuses a file of one frame: it checks the next one)."""
    with open(path, "rb") as f:
        f.seek(run.start)
        data = f.read(min(run.end - run.start, count * 8191))  # 8191: the longest ADTS frame; MP3's are shorter
    end = 0
    for _ in range(min(count, run.count)):
        end += _adts_frame_length(data[end:end + 7]) if run.header else _mp3_frame_length(data[end:end + 4])
    return data[:end]


def frame_samples(path: Path) -> int:
    return AAC_FRAME_SAMPLES if Path(path).suffix == ".aac" else MP3_FRAME_SAMPLES


def priming(path: Path) -> int:
    return AAC_PRIMING if Path(path).suffix == ".aac" else MP3_PRIMING


def encoded_samples(path: Path) -> int:
    """Samples the file's frames hold, priming and padding included."""
    return frame_run(path).count * frame_samples(path)


def frame_payloads(data: bytes, sizes: np.ndarray, header: int) -> Iterator[np.ndarray]:
    """The bytes of back-to-back frames of `sizes` bytes each (headers included), without their headers, in
    pieces of about a megabyte: written a piece at a time, a 14-hour book's frames took 0.25 s, not 1.9 s as
    one write per chapter."""
    raw = np.frombuffer(data, np.uint8)
    ends = np.cumsum(sizes, dtype=np.int64)
    starts = ends - sizes
    for first in range(0, sizes.size, FRAMES_PER_PIECE):
        lo, hi = int(starts[first]), int(ends[min(first + FRAMES_PER_PIECE, sizes.size) - 1])
        keep = np.ones(hi - lo, bool)
        keep[((starts[first:first + FRAMES_PER_PIECE] - lo)[:, None] + np.arange(header)).ravel()] = False
        yield raw[lo:hi][keep]
