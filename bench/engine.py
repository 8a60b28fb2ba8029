"""Higgs engine throughput, printed side by side (not a test; nothing is asserted).

    .venv/bin/python bench/engine.py                 # tiny random model on this machine's device (CPU here)
    .venv/bin/python bench/engine.py --full-size     # random-weight full-size model (~5.4B, bf16): a GPU job

Every line runs to a fixed frame count (the random model is told never to end a line), so batched and
one-at-a-time rendering produce the same audio duration and only the wall time differs. Reported:
jobs/s and audio-seconds/s for both; reference encoding with and without reuse; the prefill's share
of a batch, which bounds what a shared voice-prompt prefix cache could save; and the decode paths (eager,
static, static+compiled) side by side at several batch sizes: audio s/s, ms per frame step, the first call
(compile and graph capture included) and peak GPU memory.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LINES = [
    "The tide is coming in faster than I thought.", "Fog rolled over the harbour wall.",
    "She trimmed the wick and wound the clockwork.", "A hundred and twelve steps to the lamp room.",
    "The supply boat came on Tuesdays.", "He counted the beams as they crossed the bay.",
    "Nobody had kept the light longer than she had.", "The letter was short, and it was final.",
]


def timed(fn, repeats: int = 1):
    """The result and the best wall time of `repeats` runs (the best is the least disturbed on a shared machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="full-size random model (needs a GPU)")
    parser.add_argument("--jobs", type=int, default=8, help="lines per measurement (one batch)")
    parser.add_argument("--frames", type=int, default=None, help="frames per line (25/s); default 100 tiny, 250 full")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best is reported")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--paths", default=None, help="decode paths to compare, comma-separated; default "
                        "eager,static+compiled on CUDA, else eager,static")
    parser.add_argument("--batches", default=None, help="batch sizes for the path comparison; default 1,8,32 "
                        "full-size, 1,8 tiny")
    args = parser.parse_args()

    import torch

    from engine.base import DecodingParams, RenderRequest, VoicePrompt
    from engine.device import choose_device, choose_dtype
    from engine.higgs import HiggsEngine
    from engine.tiny_higgs import build_random_higgs, build_tiny_checkpoint
    from tasks.core.files import sha256_file
    from tasks.core.settings import get_settings

    size = "full" if args.full_size else "tiny"
    frames = args.frames or (250 if args.full_size else 100)
    device = choose_device(args.device)
    dtype = choose_dtype(args.dtype, device)
    if args.full_size:  # built in place on the device: saving and reloading ~11 GB would only cost time
        (model, processor), build_s = timed(lambda: build_random_higgs(size, end_lean=-1.0, device=device,
                                                                       dtype=dtype))
        engine = HiggsEngine(device, dtype)
        engine.attach(model, processor)
        how = "built in memory"
    else:  # saved, then loaded through the engine's own from_pretrained path, as a user's checkpoint is
        checkpoint = build_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="voicebatch-tiny-higgs-")), end_lean=-1.0)
        os.environ["VOICEBATCH_HIGGS_MODEL"] = str(checkpoint)
        get_settings.cache_clear()
        engine = HiggsEngine(device, dtype)
        _, build_s = timed(engine.load)
        model = engine._model
        processor = engine._processor
        how = "loaded from a saved checkpoint"
    engine.batch_size = args.jobs
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"best of {args.repeats} runs per measurement")
    print(f"Higgs {size} random model: {params:,.1f} M parameters, {device} {dtype} "
          f"({next(model.parameters()).device}, {next(model.parameters()).dtype}), {how} in {build_s:.1f} s; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    reference = ROOT / "voices" / "ava" / "reference.wav"
    voice = VoicePrompt("ava", sha256_file(reference), reference,
                        "The lighthouse keeper climbed the stairs every evening at dusk. She trimmed the wick, "
                        "wound the clockwork, and watched the first beam sweep across the water.")
    decoding = DecodingParams(seed=1, max_new_tokens=frames)
    requests = [RenderRequest(LINES[i % len(LINES)], voice, decoding) for i in range(args.jobs)]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    engine.render(requests[:1])  # warm-up: first-call allocations and the reference encoding
    sync()

    # Reference encoding: what one encoding costs, and what N lines cost with and without reuse.
    _, encode_s = timed(lambda: (engine._reference_codes.clear(), engine.reference_codes(voice), sync()), args.repeats)
    print(f"\nreference clip 9.1 s -> {len(engine.reference_codes(voice))} code frames: {encode_s * 1000:.0f} ms to encode")
    print(f"  {args.jobs} lines of one voice: {encode_s * 1000:.0f} ms of encoding with reuse (once per process), "
          f"{encode_s * args.jobs * 1000:.0f} ms without (once per line, as the processor's own call does)")

    # Batched vs one at a time.
    audio_s = args.jobs * frames / 25
    batched, batched_s = timed(lambda: (engine.render(requests), sync())[0], args.repeats)
    single, single_s = timed(lambda: ([engine.render([r])[0] for r in requests], sync())[0], args.repeats)
    got = sum(len(a) for a in batched) / 24_000
    print(f"\n{args.jobs} lines x {frames} frames ({audio_s:.0f} s of audio; decoded {got:.1f} s):")
    print(f"  {'':<22}{'wall s':>8}{'jobs/s':>9}{'audio s/s':>11}")
    for name, seconds in (("batched (1 call)", batched_s), (f"one at a time ({args.jobs} calls)", single_s)):
        print(f"  {name:<22}{seconds:>8.2f}{args.jobs / seconds:>9.2f}{audio_s / seconds:>11.2f}")
    print(f"  batching speed-up: {single_s / batched_s:.1f}x")

    # Prefill share: a shared voice-prompt prefix KV cache could save at most the prefill.
    inputs = engine.model_inputs(requests)
    prompt_tokens = inputs["input_ids"].shape[1]
    with torch.inference_mode():
        _, prefill_s = timed(lambda: (model.generate(**inputs, max_new_tokens=1, do_sample=True), sync()), args.repeats)
    print(f"\nprefill of {args.jobs} prompts x {prompt_tokens} tokens (+1 step): {prefill_s:.2f} s = "
          f"{100 * prefill_s / batched_s:.1f}% of the batched render: the most a shared prefix cache could save")
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    if peak_gib is not None:
        print(f"peak GPU memory allocated: {peak_gib:.1f} GiB ({torch.cuda.get_device_name()})")
    info = engine.info()
    print(f"engine info: device {info.device}, dtype {info.dtype}, model {info.model}")
    if args.full_size:  # the path comparison attaches the same model to fresh engines
        paths_model = (model, processor)
    model = processor = inputs = None  # the engine's own references to GPU memory are the only ones left
    engine.close()  # frees the model and the allocator's cache
    if device.startswith("cuda"):
        print(f"GPU memory allocated after close(): {torch.cuda.memory_allocated() / 2**30:.2f} GiB")
    paths = compare_paths(args, device, dtype, frames, voice, paths_model if args.full_size else None, sync)
    if not args.full_size:
        shutil.rmtree(checkpoint, ignore_errors=True)
    from bench.common import save

    save("engine", {"decode_paths": paths, "model": size, "device": device, "jobs": args.jobs, "frames": frames,
                    "peak_gpu_gib": round(peak_gib, 2) if peak_gib is not None else None,
                    "batched_s": round(batched_s, 3), "one_at_a_time_s": round(single_s, 3),
                    "batched_audio_s_per_s": round(audio_s / batched_s, 2),
                    "single_audio_s_per_s": round(audio_s / single_s, 2),
                    "reference_encode_ms_once": round(encode_s * 1000, 1),
                    "reference_encode_ms_per_line_without_reuse": round(encode_s * args.jobs * 1000, 1),
                    "prefill_share_of_batched": round(prefill_s / batched_s, 4)})


def compare_paths(args, device: str, dtype: str, frames: int, voice, built, sync) -> list[dict]:
    """Each decode path at each batch size on a fresh engine: the first call (compile and capture included),
    then the best of `repeats`; the path each request really took is printed (a fallback shows)."""
    import torch

    from engine.base import DecodingParams, RenderRequest
    from engine.higgs import HiggsEngine
    from tasks.core.settings import get_settings

    cuda = device.startswith("cuda")
    paths = (args.paths or ("eager,static+compiled" if cuda else "eager,static")).split(",")
    sizes = [int(b) for b in (args.batches or ("1,8,32" if args.full_size else "1,8")).split(",")]
    setting = {"eager": "eager", "static": "static", "static+compiled": "compiled"}
    print(f"\ndecode paths, {frames} frames per line ({frames / 25:.0f} s of audio):")
    print(f"  {'path':<17}{'batch':>6}{'first s':>9}{'best s':>8}{'ms/step':>9}{'audio s/s':>11}{'peak GiB':>10}  took")
    results = []
    for path in paths:
        os.environ["VOICEBATCH_HIGGS_DECODE"] = setting[path]
        get_settings.cache_clear()
        engine = HiggsEngine(device, dtype)
        if built is not None:
            engine.attach(*built)
        engine.load()
        for size in sizes:
            engine.batch_size = size
            batch = [RenderRequest(LINES[i % len(LINES)], voice, DecodingParams(seed=1, max_new_tokens=frames))
                     for i in range(size)]
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            _, first_s = timed(lambda: (engine.render(batch), sync()))
            _, best_s = timed(lambda: (engine.render(batch), sync()), args.repeats)
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
            took = sorted({r.measured.get("decode_path") for r in batch})
            audio_s = size * frames / 25
            row = dict(path=path, batch=size, took=took, first_call_s=round(first_s, 3), best_s=round(best_s, 3),
                       ms_per_step=round(1000 * best_s / frames, 2), audio_s_per_s=round(audio_s / best_s, 2),
                       peak_gpu_gib=round(peak, 2) if peak is not None else None)
            results.append(row)
            print(f"  {path:<17}{size:>6}{first_s:>9.2f}{best_s:>8.2f}{row['ms_per_step']:>9.1f}"
                  f"{row['audio_s_per_s']:>11.2f}{peak if peak is not None else float('nan'):>10.1f}  {','.join(took)}")
        engine._model = engine._processor = None  # the shared model stays with the caller
        engine.close()
    os.environ.pop("VOICEBATCH_HIGGS_DECODE", None)
    get_settings.cache_clear()
    return results


if __name__ == "__main__":
    main()
