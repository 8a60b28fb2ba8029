import numpy as np

from tasks.audio.assemble import FADE_SECONDS, Segment, assemble_book, assemble_chapter, fade_edges, gap_after, measure

RATE = 24_000


def tone(seconds: float, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * 220 * t) + level * 0.5).astype(np.float32)  # DC offset: a click if not faded


def test_gaps_follow_speaker_changes_and_pause_after():
    a, b = Segment(tone(0.1), "A", 0, None), Segment(tone(0.1), "B", 1, None)
    a2, paused = Segment(tone(0.1), "A", 1, None), Segment(tone(0.1), "A", 0, 1.5)
    assert gap_after(a, b, 0.6, 0.2) == 0.6
    assert gap_after(a, a2, 0.6, 0.2) == 0.2
    assert gap_after(paused, b, 0.6, 0.2) == 1.5


def test_chapter_length_is_takes_plus_gaps_and_joins_have_no_step():
    segs = [Segment(tone(0.5), "A", 0, None), Segment(tone(0.3), "B", 1, 0.25), Segment(tone(0.2), "A", 2, None)]
    audio = assemble_chapter(segs, speaker_pause=0.6, chunk_pause=0.2)
    assert len(audio) == int(0.5 * RATE) + int(0.6 * RATE) + int(0.3 * RATE) + int(0.25 * RATE) + int(0.2 * RATE)
    # Every take starts and ends at zero, and nothing jumps by more than a sine step of the tone itself.
    assert audio[0] == 0 and audio[-1] == 0
    max_step_in_tone = np.max(np.abs(np.diff(tone(0.5))))
    assert np.max(np.abs(np.diff(audio))) <= max_step_in_tone + 1e-6


def test_fade_leaves_the_middle_alone():
    x = tone(0.2)
    n = int(FADE_SECONDS * RATE)
    y = fade_edges(x.copy())
    np.testing.assert_array_equal(y[n:-n], x[n:-n])
    assert abs(y[0]) < 1e-6 and abs(y[-1]) < 1e-6


def test_book_puts_gaps_between_chapters_only():
    book = assemble_book([tone(0.1), tone(0.2)], gap=1.0)
    assert len(book) == int(0.1 * RATE) + RATE + int(0.2 * RATE)


def test_measure_reports_duration_peak_and_rms():
    x = np.full(RATE, 0.5, np.float32)
    m = measure(x)
    assert m["duration"] == 1.0
    assert abs(m["peak_dbfs"] - 20 * np.log10(0.5)) < 1e-9 and abs(m["rms_dbfs"] - m["peak_dbfs"]) < 1e-9
    assert measure(np.zeros(10, np.float32))["rms_dbfs"] == float("-inf")
