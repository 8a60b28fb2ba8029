"""A test dummy shipped in the package: a tiny, randomly initialised Whisper checkpoint that
`whisper.load_model(path)` accepts, for exercising transcription mechanics without downloading weights.
Its transcripts are gibberish, but deterministic for a given seed and clip."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

# English-only vocabulary (51864 tokens) keeps decoding free of language detection; a short text context
# bounds every decode at 16 tokens.
TINY_DIMS = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=1,
                 n_vocab=51864, n_text_ctx=32, n_text_state=16, n_text_head=2, n_text_layer=1)


def write_tiny_whisper(path: Path, seed: int = 0) -> Path:
    """Write a tiny random Whisper checkpoint to `path` (about 3.5 MB) and return the path."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(**TINY_DIMS)
    generator = torch.Generator().manual_seed(seed)
    model = Whisper(dims)
    with torch.no_grad():
        for tensor in model.state_dict(keep_vars=True).values():
            if tensor.is_floating_point():
                # Every tensor, the decoder's uninitialised positional_embedding included.
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.05)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path
