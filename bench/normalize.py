"""Normalising 100 takes: serial vs a thread pool sized to the cores (as the flow runs it), and how long the
render lane waited on normalisation while both ran together. Prints numbers; asserts nothing.

    .venv/bin/python bench/normalize.py [--takes 100] [--preset audiobook]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.base import DecodingParams, RenderRequest, VoicePrompt  # noqa: E402
from engine.pool import render_lane, warm_engine  # noqa: E402
from flows.deliver import audio_workers  # noqa: E402
from tasks.audio.assemble import measure
from tasks.audio.loudness import resolve_target
from tasks.audio.wav import write_wav_atomic
from tasks.output.mastering import normalise_takes
from tasks.render.batch import Take

SENTENCES = [
    "Gull Rock stood a mile off the coast, a grey tooth of stone with a white tower on its back.",
    "For ninety years the tower had sent its beam across the water.",
    "She kept a log in a green book.",
    "The supply boat came on Tuesdays, when the sea allowed it.",
    "They mean to put in an automatic lamp by spring.",
    "Yes.",
    "On calm nights she read by the lamp; on rough ones she did not sleep at all.",
    "The fog came in faster than I have ever seen it.",
]
BATCH = 16  # the flow's render batch size


def render(engine, texts: list[str], takes_dir: Path, first: int) -> list[Take]:
    """One render batch in the render lane, written as the flow writes takes."""
    voice = VoicePrompt("bench", "bench")
    with render_lane(engine.device):
        audios = engine.render([RenderRequest(t, voice, DecodingParams(seed=first + i)) for i, t in enumerate(texts)])
    takes = []
    for i, audio in enumerate(audios):
        key = f"{first + i:064x}"
        path = takes_dir / key[:2] / f"{key}.wav"
        digest = write_wav_atomic(path, audio, subtype="PCM_24")
        m = measure(audio)
        takes.append(Take(key, str(path), digest, m["duration"], 0.0, m["peak_dbfs"], m["rms_dbfs"], first // BATCH))
    return takes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=int, default=100)
    parser.add_argument("--preset", default="audiobook")
    parser.add_argument("--workers", type=int, default=audio_workers(), help="audio threads (default: the flow's)")
    args = parser.parse_args()
    target = resolve_target(args.preset)
    workers = args.workers
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.takes)]
    batches = [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]
    engine = warm_engine("hibari").engine
    with tempfile.TemporaryDirectory(prefix="vb-bench-") as warm:
        render(engine, texts[:2], Path(warm), 0)  # first call loads lexicons: not part of any timing

    with tempfile.TemporaryDirectory(prefix="vb-bench-") as tmp:
        takes_dir = Path(tmp) / "takes"
        start = time.perf_counter()
        takes = [t for b, batch in enumerate(batches) for t in render(engine, batch, takes_dir, b * BATCH)]
        render_alone = time.perf_counter() - start
        audio_seconds = sum(t.duration for t in takes)

        start = time.perf_counter()
        normalise_takes(takes, target, takes_dir)
        serial = time.perf_counter() - start

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda chunk: normalise_takes(chunk, target, takes_dir),
                          [takes[i:i + BATCH] for i in range(0, len(takes), BATCH)]))
        parallel = time.perf_counter() - start

        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(normalise_takes, [takes[i:i + BATCH] for i in range(0, len(takes), BATCH)],
                          [target] * len(batches), [takes_dir] * len(batches)))
        processes = time.perf_counter() - start

        # Render and normalise together, the way the flow does: the lane renders batch after batch while the
        # pool normalises the batches already rendered. The lane's wait is the time between one batch leaving
        # the lane and the next entering it, beyond what it takes with no normalisation going on.
        gaps, busy = [], 0.0
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = []
            last_end = None
            for b, batch in enumerate(batches):
                entered = time.perf_counter()
                if last_end is not None:
                    gaps.append(entered - last_end)
                done = render(engine, batch, takes_dir, b * BATCH)
                last_end = time.perf_counter()
                busy += last_end - entered
                pending.append(pool.submit(normalise_takes, done, target, takes_dir))
            lane_done = time.perf_counter() - start
            for f in pending:
                f.result()
        together = time.perf_counter() - start

    print(f"machine: {workers} usable cores; {args.takes} takes, {audio_seconds:.1f} s of audio, preset {args.preset}")
    print(f"render alone (hibari, one lane):          {render_alone:6.2f} s")
    print(f"normalise serial (one thread):            {serial:6.2f} s  ({1000 * serial / len(takes):.0f} ms per take)")
    print(f"normalise parallel ({workers} threads):            {parallel:6.2f} s  (speed-up {serial / parallel:.2f}x)")
    print(f"normalise, {workers} processes (for scale):   {processes:6.2f} s  (speed-up {serial / processes:.2f}x, "
          "start-up included)")
    print(f"render + normalise together:              {together:6.2f} s wall; render lane done after {lane_done:.2f} s")
    print(f"render lane waited between batches:       {sum(gaps) * 1000:6.1f} ms in all "
          f"(max {max(gaps, default=0) * 1000:.1f} ms) over {len(gaps)} hand-overs")
    print(f"render lane busy {busy:.2f} s with normalisation alongside vs {render_alone:.2f} s alone "
          f"(CPU shared, not waiting: {busy - render_alone:+.2f} s)")
    from bench.common import save

    save("normalize", {"takes": args.takes, "serial_s": round(serial, 2), "parallel_threads_s": round(parallel, 2),
                       "parallel_processes_s": round(processes, 2), "render_alone_s": round(render_alone, 2),
                       "render_lane_wait_ms": round(sum(gaps) * 1000, 1)})


if __name__ == "__main__":
    main()
