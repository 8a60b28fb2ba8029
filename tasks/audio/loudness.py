"""Loudness: targets and presets, BS.1770-4 measurement (tasks/audio/bs1770.py), normalisation in lufs/rms/peak mode
with a true-peak ceiling, and the per-chapter report checked against the preset. Pure numpy in and out."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from tasks.audio import bs1770
from tasks.audio.limiter import enforce_ceiling, exact_above, limit_true_peak, true_peak_dbtp, true_peak_envelope

MODES = ("lufs", "rms", "peak")
PRESETS = ("audiobook", "podcast", "broadcast", "custom")
OLD_WEB_UI_RMS_DBFS = 20 * math.log10(0.15)  # the old web UI's normalize_audio_volume target: 0.15 linear
# Limit this far under the ceiling: MP3/AAC encoding raises inter-sample peaks. At 0.5 dB, the codecs took most
# 20-minute chapters of speech over the ceiling (by 0.1-0.4 dB; 2026-12-07), each then encoded a second time.
ENCODE_MARGIN_DB = 1.0
MAX_GAIN_DB = 40.0  # a take quieter than this much under the target is a problem to see, not to amplify
GATE_BLOCK_SECONDS = 0.4  # BS.1770 gating block
NOISE_WINDOW_SECONDS = 0.05
NOISE_PERCENTILE = 5  # the noise floor is read in the quietest windows: the pauses and the room tone
NORMALISE_ROUNDS = 6  # gain, limit, re-measure: limiting lowers loudness a little, so converge on the target


@dataclass(frozen=True)
class LoudnessTarget:
    """What a chapter must measure: `target` is in LUFS (lufs), dBFS RMS (rms) or dBTP (peak)."""
    preset: str
    mode: str
    target: float
    ceiling: float  # dBTP: no true peak above it
    tolerance: float = 0.5  # LU (or dB) either side of the target that still passes
    rms_window: tuple[float, float] | None = None  # ACX: whole-file RMS between these, dBFS
    noise_floor_max: float | None = None  # ACX: dBFS RMS in the pauses
    room_tone: bool = False
    room_tone_dbfs: float = -75.0
    head_seconds: float = 0.0  # room tone (or silence) before the first line of a chapter
    tail_seconds: float = 0.0

    @property
    def limit_at(self) -> float:
        return self.ceiling - ENCODE_MARGIN_DB

    @property
    def aim(self) -> float:
        """The level normalisation aims at, in the mode's units (a peak target never above the limiter)."""
        return min(self.target, self.limit_at) if self.mode == "peak" else self.target

    def describe(self) -> str:
        unit = {"lufs": "LUFS", "rms": "dBFS RMS", "peak": "dBTP"}[self.mode]
        return f"{self.preset}: {self.target:g} {unit}, true peak <= {self.ceiling:g} dBTP"


# The audiobook preset meets ACX's technical audio specification (RMS -23..-18 dB, peaks <= -3 dB, noise
# floor <= -60 dB, room tone at head and tail). ACX reads RMS, so normalisation aims at a loudness that
# puts speech with pauses inside that RMS window; both are reported.
ACX_MAX_FILE_SECONDS = 120 * 60
PRESET_TARGETS: dict[str, LoudnessTarget] = {
    "audiobook": LoudnessTarget("audiobook", "lufs", -19.0, -3.0, rms_window=(-23.0, -18.0), noise_floor_max=-60.0,
                                room_tone=True, head_seconds=0.75, tail_seconds=2.0),
    "podcast": LoudnessTarget("podcast", "lufs", -16.0, -1.0),
    "broadcast": LoudnessTarget("broadcast", "lufs", -23.0, -1.0),  # EBU R128
}
MODE_DEFAULT_TARGETS = {"rms": OLD_WEB_UI_RMS_DBFS, "peak": -1.0}


def resolve_target(preset: str = "audiobook", mode: str | None = None, target: float | None = None,
                   ceiling: float | None = None, tolerance: float | None = None, room_tone: bool | None = None,
                   room_tone_dbfs: float | None = None) -> LoudnessTarget:
    """A preset with any overrides. ValueError (naming the setting and the fix) when it cannot be resolved."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    base = PRESET_TARGETS.get(preset) or LoudnessTarget("custom", mode or "lufs", float("nan"), -1.0)
    mode = mode or base.mode
    if target is None:
        target = base.target if mode == base.mode and preset != "custom" else MODE_DEFAULT_TARGETS.get(mode)
    if target is None:
        raise ValueError(f"preset {preset!r} in mode {mode!r} needs a target (LUFS), e.g. target: -18")
    changes = {"mode": mode, "target": float(target)}
    for name, value in (("ceiling", ceiling), ("tolerance", tolerance), ("room_tone", room_tone),
                        ("room_tone_dbfs", room_tone_dbfs)):
        if value is not None:
            changes[name] = value
    resolved = replace(base, **changes)
    if mode == "peak" and resolved.target > resolved.ceiling:
        raise ValueError(f"peak target {resolved.target:g} dBTP is above the ceiling {resolved.ceiling:g} dBTP; "
                         "lower the target or raise the ceiling")
    return resolved


def _db(power_or_amplitude: float, power: bool = False) -> float:
    if not power_or_amplitude > 0:
        return float("-inf")
    return (10 if power else 20) * math.log10(power_or_amplitude)


def integrated_lufs(audio: np.ndarray, rate: int) -> float:
    """BS.1770-4 integrated (gated) loudness. A take shorter than one gating block is measured repeated to
    that length, which keeps its mean square: the loudness of the take itself, ungated."""
    audio = np.asarray(audio)
    if audio.size == 0 or not np.any(audio):
        return float("-inf")
    block = int(math.ceil(GATE_BLOCK_SECONDS * rate)) + 1
    if audio.size < block:
        audio = np.tile(np.asarray(audio, dtype=np.float64), block // audio.size + 1)
    return bs1770.integrated_loudness(audio, rate)


def loudness_range(audio: np.ndarray, rate: int) -> float | None:
    """EBU Tech 3342 loudness range in LU; None when the audio is too short or quiet to have one."""
    value = bs1770.loudness_range(audio, rate)
    return None if value is None or not np.isfinite(value) else value


def rms_dbfs(audio: np.ndarray) -> float:
    audio = np.asarray(audio)
    power = sum(float(np.dot(piece, piece)) for piece in bs1770.float_chunks(audio))
    return _db(power / audio.size if audio.size else 0.0, power=True)


def sample_peak_dbfs(audio: np.ndarray) -> float:
    audio = np.asarray(audio)
    return _db(max((float(np.max(np.abs(piece))) for piece in bs1770.float_chunks(audio)), default=0.0))


def noise_floor_dbfs(audio: np.ndarray, rate: int) -> float:
    """RMS level of the quietest 50 ms windows (the pauses); -inf when they are digital silence."""
    audio = np.asarray(audio)
    n = max(1, int(NOISE_WINDOW_SECONDS * rate))
    if audio.size < n:
        return rms_dbfs(audio)
    whole = audio[: audio.size // n * n]
    power = np.concatenate([np.mean(np.square(piece).reshape(-1, n), axis=1)
                            for piece in bs1770.float_chunks(whole, size=n * (bs1770.CHUNK_SAMPLES // n))])
    return _db(float(np.percentile(power, NOISE_PERCENTILE)), power=True)


def level(audio: np.ndarray, mode: str, rate: int) -> float:
    """The level `mode` normalises: integrated LUFS, RMS dBFS or true peak dBTP."""
    if mode == "lufs":
        return integrated_lufs(audio, rate)
    if mode == "rms":
        return rms_dbfs(audio)
    return true_peak_dbtp(audio, rate)


@dataclass(frozen=True)
class Adjustment:
    """What normalisation did to one piece of audio, in the target's mode units."""
    before: float
    gain_db: float
    after: float
    true_peak_dbtp: float


def normalise(audio: np.ndarray, target: LoudnessTarget, rate: int) -> tuple[np.ndarray, Adjustment]:
    """Gain to the target level, then any peak above the ceiling limited (never clipped); re-measured and
    corrected until the limiter's loss of level is made up."""
    x = np.asarray(audio, dtype=np.float32)
    before = level(x, target.mode, rate)
    if not math.isfinite(before):  # silence: nothing to scale
        return x.copy(), Adjustment(before, 0.0, before, true_peak_dbtp(x, rate))
    aim = target.aim
    # The envelope scales with gain, so x's serves every round; it is exact only above the level where the
    # limiter acts at the gain in hand (cheap), and read again further down only if a round's gain needs it.
    acts_at = 10 ** (target.limit_at / 20) * 0.995
    envelope, exact_from = np.zeros(0), math.inf
    gain, out, now = 0.0, x, before
    slope = 1.0  # level change per dB of gain: below 1 once the limiter takes part of each step
    for _ in range(NORMALISE_ROUNDS):
        step = aim - now
        if abs(step) < 0.02 and (gain or out is x):  # already on target: no gain, only the ceiling checked
            break
        previous_gain, previous_level = gain, now
        gain = float(np.clip(gain + step / slope, -MAX_GAIN_DB, MAX_GAIN_DB))
        scale = 10 ** (gain / 20)
        if acts_at / scale < exact_from:  # 6 dB to spare: later rounds, which raise the gain, reuse it
            exact_from = exact_above(x, acts_at / scale / 2)
            envelope = true_peak_envelope(x, rate, floor=exact_from)
        out = None  # the previous round's audio is not needed beside the next one
        out = limit_true_peak(x * scale, target.limit_at, rate, envelope=envelope, envelope_scale=scale, in_place=True)
        now = level(out, target.mode, rate)
        if abs(gain - previous_gain) > 1e-3:
            slope = float(np.clip((now - previous_level) / (gain - previous_gain), 0.25, 1.0))
    del envelope  # the ceiling check reads the result's own
    checked, peak = enforce_ceiling(out, target.limit_at, rate)
    after = now if checked is out else level(checked, target.mode, rate)  # unchanged: already measured
    return (x.copy() if checked is x else checked), Adjustment(before, gain, after, peak)


@dataclass(frozen=True)
class LoudnessReport:
    """One chapter measured against its target."""
    integrated_lufs: float
    loudness_range_lu: float | None
    rms_dbfs: float
    true_peak_dbtp: float
    sample_peak_dbfs: float
    noise_floor_dbfs: float
    passed: bool
    problems: tuple[str, ...]


def check(values: dict[str, float], target: LoudnessTarget) -> list[str]:
    """Everything that fails the target, one sentence each."""
    problems = []
    measured = {"lufs": values["integrated_lufs"], "rms": values["rms_dbfs"], "peak": values["true_peak_dbtp"]}
    unit = {"lufs": "LUFS", "rms": "dBFS RMS", "peak": "dBTP"}[target.mode]
    got = measured[target.mode]
    if target.mode != "peak" and not abs(got - target.target) <= target.tolerance:
        problems.append(f"{target.mode} level {got:.1f} {unit} is outside {target.target:g} ± {target.tolerance:g}")
    if target.mode == "peak" and not got >= target.target - target.tolerance - ENCODE_MARGIN_DB:
        problems.append(f"true peak {got:.1f} dBTP is below the peak target {target.target:g}")
    if values["true_peak_dbtp"] > target.ceiling:
        problems.append(f"true peak {values['true_peak_dbtp']:.2f} dBTP is above the ceiling {target.ceiling:g} dBTP")
    if values["sample_peak_dbfs"] >= 0:
        problems.append("samples reach full scale (clipped)")
    if target.rms_window and not target.rms_window[0] <= values["rms_dbfs"] <= target.rms_window[1]:
        low, high = target.rms_window
        problems.append(f"RMS {values['rms_dbfs']:.1f} dBFS is outside {low:g} to {high:g} dBFS (ACX)")
    if target.noise_floor_max is not None:
        floor = values["noise_floor_dbfs"]
        if floor > target.noise_floor_max:
            problems.append(f"noise floor {floor:.1f} dBFS is above {target.noise_floor_max:g} dBFS (ACX)")
        elif floor == float("-inf"):
            problems.append("the pauses are digital silence, which ACX's checks can reject; set loudness.room_tone: true")
    return problems


def length_problems(seconds: float, target: LoudnessTarget) -> list[str]:
    """ACX refuses a file longer than 120 minutes: the audiobook preset flags such a chapter with the fix."""
    if target.preset == "audiobook" and seconds > ACX_MAX_FILE_SECONDS:
        return [f"{seconds / 60:.0f} minutes long, over ACX's limit of {ACX_MAX_FILE_SECONDS // 60} minutes per "
                "file; split the chapter into shorter chapters in the manifest"]
    return []


def on_target(measured: LoudnessReport, target: LoudnessTarget, within_db: float = 0.02) -> bool:
    """Whether audio with this report needs no gain: its level within `within_db` of the aim (0.02: what
    normalise() would leave as it is) and its true peak under the limiter's threshold."""
    got = {"lufs": measured.integrated_lufs, "rms": measured.rms_dbfs, "peak": measured.true_peak_dbtp}[target.mode]
    return abs(got - target.aim) < within_db and measured.true_peak_dbtp <= target.limit_at


def report(audio: np.ndarray, target: LoudnessTarget, rate: int) -> LoudnessReport:
    """Every meter of the report, each reading the audio piece by piece (a chapter is never copied whole). The
    true peak, the slowest, is read meanwhile in two more threads, each over half of the audio (numpy and scipy
    let go of the GIL): a 24-minute chapter's report took 0.97 s with one, as long as its true peak alone."""
    audio = np.asarray(audio)
    middle = audio.size // 2
    with ThreadPoolExecutor(max_workers=2) as beside:
        halves = [beside.submit(true_peak_dbtp, audio, rate, 0, middle),
                  beside.submit(true_peak_dbtp, audio, rate, middle)]
        if audio.size >= int(math.ceil(GATE_BLOCK_SECONDS * rate)) + 1 and np.any(audio):  # a chapter: K-weighted once
            integrated, lra = bs1770.integrated_and_range(audio, rate)
            lra = None if lra is None or not np.isfinite(lra) else lra
        else:
            integrated, lra = integrated_lufs(audio, rate), loudness_range(audio, rate)
        values = dict(integrated_lufs=integrated, rms_dbfs=rms_dbfs(audio), sample_peak_dbfs=sample_peak_dbfs(audio),
                      noise_floor_dbfs=noise_floor_dbfs(audio, rate))
        values["true_peak_dbtp"] = max(half.result() for half in halves)
    problems = check(values, target) + length_problems(audio.size / rate, target)
    return LoudnessReport(loudness_range_lu=lra, passed=not problems, problems=tuple(problems),
                          **values)
