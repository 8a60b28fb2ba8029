"""Context chains against unchained rendering on the tiny random Higgs model (not a test; nothing is asserted).

    .venv/bin/python bench/chains.py

A 4-chapter book of 6 chunks per chapter, one voice: unchained, the 24 chunks go 8 to a generate call; chained,
link n of every chapter's chain goes in one call (4 rows), each prompted with its chapter's previous take.
Reported: rows per generate call, prefill tokens per take (the prompt without padding) and wall time.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SENTENCES = ["The boat came at dawn.", "Ava carried the crates up the steps.", "The lamp needed oil again.",
             "A gull watched from the rail.", "Fog closed over the bay by noon.", "The keeper lit the wick at dusk."]
CHAPTERS = 4
FRAMES = 40


def main() -> None:
    import soundfile as sf

    from engine.base import DecodingParams, RenderRequest, VoicePrompt
    from engine.higgs import HiggsEngine
    from engine.tiny_higgs import build_random_higgs
    from tasks.core.files import sha256_file

    engine = HiggsEngine("cpu", "float32")
    engine.attach(*build_random_higgs("tiny"))
    engine.batch_size = 8
    reference = ROOT / "voices" / "ava" / "reference.wav"
    voice = VoicePrompt("ava", sha256_file(reference), reference,
                        "The lighthouse keeper climbed the stairs every evening at dusk. She trimmed the wick, "
                        "wound the clockwork, and watched the first beam sweep across the water.")
    params = DecodingParams(seed=1, max_new_tokens=FRAMES)
    texts = [[f"{s[:-1]}, chapter {c + 1}." for s in SENTENCES] for c in range(CHAPTERS)]
    engine.render([RenderRequest("Warm up.", voice, params)])

    def prompt_tokens(requests) -> list[int]:
        return engine.model_inputs(requests)["attention_mask"].sum(dim=1).tolist()

    plain = [RenderRequest(t, voice, params, key=f"{c}-{i}") for c, chapter in enumerate(texts)
             for i, t in enumerate(chapter)]
    calls, start = engine.generate_calls, time.perf_counter()
    tokens = prompt_tokens(plain)
    engine.render(plain)
    plain_s, plain_calls = time.perf_counter() - start, engine.generate_calls - calls

    takes = Path(tempfile.mkdtemp(prefix="voicebatch-chains-"))
    previous: list[VoicePrompt | None] = [None] * CHAPTERS
    chained_tokens: list[int] = []
    calls, start = engine.generate_calls, time.perf_counter()
    for link in range(len(SENTENCES)):
        wave = [RenderRequest(texts[c][link], voice, params, key=f"{c}-{link}",
                              context=(previous[c],) if previous[c] else ()) for c in range(CHAPTERS)]
        chained_tokens += prompt_tokens(wave)
        for c, audio in enumerate(engine.render(wave)):
            path = takes / f"{c}-{link}.wav"
            sf.write(path, audio, 24_000)
            previous[c] = VoicePrompt("ava", f"take:{c}-{link}", path, texts[c][link])
    chained_s, chained_calls = time.perf_counter() - start, engine.generate_calls - calls

    print(f"{CHAPTERS} chapters x {len(SENTENCES)} chunks, {FRAMES} frames at most per chunk, tiny model on the CPU")
    print(f"  {'':<11}{'calls':>6}{'rows/call':>10}{'prefill tokens/take':>21}{'wall s':>8}")
    for name, n, toks, seconds in (("unchained", plain_calls, tokens, plain_s),
                                   ("chained", chained_calls, chained_tokens, chained_s)):
        print(f"  {name:<11}{n:>6}{len(toks) / n:>10.1f}{sum(toks) / len(toks):>21.0f}{seconds:>8.1f}")
    from bench.common import save

    save("chains", {"chapters": CHAPTERS, "chunks": len(SENTENCES), "frames": FRAMES,
                    "unchained": {"calls": plain_calls, "prefill_tokens_per_take": sum(tokens) / len(tokens),
                                  "wall_s": round(plain_s, 2)},
                    "chained": {"calls": chained_calls, "prefill_tokens_per_take":
                                sum(chained_tokens) / len(chained_tokens), "wall_s": round(chained_s, 2)}})


if __name__ == "__main__":
    main()
