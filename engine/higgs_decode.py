"""Higgs' decoding loop: one random stream per row, on a growing (eager) or a pre-allocated (static) KV cache.

Each row samples from a counter-based stream keyed by its own seed: the noise for (row seed, step, codebook,
code) is a hash, so a row's codes do not depend on its batch-mates, the batch size or an out-of-memory split,
and drawing it needs no generator state (a CUDA graph can hold it). The static path pads the batch to a
power of two and the cache to a multiple of CACHE_BUCKET, so the decode step has one shape per bucket: on a
GPU that step is compiled with CUDA graphs (captured once per bucket, reused by every later batch).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

EAGER, STATIC, COMPILED = "eager", "static", "static+compiled"
PATHS = (EAGER, STATIC, COMPILED)
CACHE_BUCKET = 512  # static cache lengths are rounded up to this: few shapes, so few graph captures
RAS_MAX_REPEATS = 2  # with ras_win_len: a code repeated this often in the window is resampled
_M32 = 0xFFFFFFFF
_SAMPLE, _RESAMPLE = 0, 1  # salts: the first draw of a step and repetition-aware resampling


def stream_seed(seed: int, key: str, text: str) -> int:
    """A row's 32-bit stream seed, from its decoding seed and its job (cache key, and text where none)."""
    digest = hashlib.sha256(f"{seed}\0{key}\0{text}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """x * c mod 2**32 for x < 2**32, in two 16-bit halves so no int64 product overflows."""
    return ((((x * (c >> 16)) & 0xFFFF) << 16) + x * (c & 0xFFFF)) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' lowbias32) on int64 tensors holding values below 2**32."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def gumbel(seeds: torch.Tensor, step: int, salt: int, cells: torch.Tensor) -> torch.Tensor:
    """Gumbel noise [rows, *cells.shape] for one step: a pure function of (row seed, step, salt, cell)."""
    row = _mix32(seeds ^ _mix32(torch.full_like(seeds, ((step << 1) | salt) & _M32)))
    bits = _mix32(cells[None] ^ row.view(-1, *([1] * cells.dim())))
    uniform = ((bits >> 8).to(torch.float32) + 0.5) * 2.0**-24  # in (0, 1), never 0 or 1
    return -torch.log(-torch.log(uniform))


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_k: int
    top_p: float
    ras_win_len: int


class RowSampler:
    """Higgs' per-step token choice (delay pattern, temperature/top-k/top-p, repetition-aware resampling), each
    row from its own stream. Sampling by argmax(scores + Gumbel noise) draws from softmax(scores) exactly."""

    def __init__(self, config, seeds: list[int], sampling: Sampling, device) -> None:
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, \
            TopPLogitsWarper

        rows, books, size = len(seeds), config.num_codebooks, config.codebook_size
        self.config, self.sampling, self.books, self.size = config, sampling, books, size
        self.seeds = torch.tensor(seeds, dtype=torch.long, device=device)
        self.cells = _mix32(torch.arange(books * size, device=device).view(books, size) + 0x9E3779B9)
        self.warpers = [TemperatureLogitsWarper(sampling.temperature), TopKLogitsWarper(sampling.top_k),
                        TopPLogitsWarper(sampling.top_p)]
        # The prompt ends with <|audio_out_bos|>: codebook k opens its stream k frames late (the delay pattern).
        self.bos_countdown = torch.arange(books, device=device).repeat(rows, 1)
        self.eos_countdown = torch.arange(1, books + 1, device=device).repeat(rows, 1)
        self.window = torch.full((rows, max(sampling.ras_win_len, 1), books), config.audio_stream_bos_id,
                                 dtype=torch.long, device=device)  # generated frames only, never the prompt's
        self.last_text = torch.full((rows,), config.audio_bos_token_id, dtype=torch.long, device=device)
        self.unfinished = torch.ones(rows, dtype=torch.bool, device=device)

    def __call__(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """The next frame [rows, codebooks] from the last position's logits [rows, codebooks * codebook_size]."""
        config, rows = self.config, logits.shape[0]
        raw = logits.float().view(rows, self.books, self.size)
        scores = raw.clone()
        vocab = torch.arange(self.size, device=logits.device)
        opening = (self.bos_countdown >= 0)[..., None] & (vocab != config.audio_stream_bos_id)
        self.bos_countdown -= 1
        self.eos_countdown[self.last_text == config.audio_delay_token_id] -= 1
        closing = (self.eos_countdown <= 0)[..., None] & (vocab != config.audio_stream_eos_id)
        scores = scores.masked_fill(opening | closing, -float("inf")).view(rows * self.books, self.size)
        for warp in self.warpers:
            scores = warp(None, scores)
        scores = scores.view(rows, self.books, self.size)
        tokens = (scores + gumbel(self.seeds, step, _SAMPLE, self.cells)).argmax(-1)
        if self.sampling.ras_win_len:
            counted = (self.window != config.audio_stream_bos_id) & (self.window != config.audio_stream_eos_id)
            repeated = ((self.window == tokens[:, None]) & counted).sum(dim=1) >= RAS_MAX_REPEATS
            if bool(repeated.any()):  # Higgs resamples from the untempered logits
                again = (raw + gumbel(self.seeds, step, _RESAMPLE, self.cells)).argmax(-1)
                tokens = torch.where(repeated, again, tokens)
        tokens = torch.where(self.unfinished[:, None], tokens, config.audio_stream_eos_id)
        self.window = torch.cat([self.window[:, 1:], tokens[:, None]], dim=1)
        any_end = (tokens == config.audio_stream_eos_id).any(-1)
        all_end = (tokens == config.audio_stream_eos_id).all(-1)
        text = torch.full_like(self.last_text, config.audio_token_id)
        text[any_end | (self.last_text == config.audio_delay_token_id)] = config.audio_delay_token_id
        text[all_end] = config.eos_token_id
        self.last_text = text
        self.unfinished &= ~all_end
        return tokens


def bucket(rows: int) -> int:
    """The batch size a static decode step is captured for: the next power of two."""
    return 1 << (rows - 1).bit_length()


class StaticKV:
    """Pre-allocated KV caches, one per (batch bucket, cache length), kept across generate calls so a compiled
    step's CUDA graphs (captured per shape) are replayed by later batches; `compiled` compiles the decode step."""

    def __init__(self, model, compiled: bool) -> None:
        self.model, self.compiled = model, compiled
        self.path = COMPILED if compiled else STATIC
        self.caches: dict[tuple[int, int], object] = {}
        self.step = torch.compile(model.forward, mode="reduce-overhead", fullgraph=False) if compiled else model

    def cache(self, rows: int, length: int):
        from transformers import StaticCache

        cache = self.caches.get((rows, length))
        if cache is None:
            cache = self.caches[(rows, length)] = StaticCache(config=self.model.config, max_cache_len=length)
        else:
            cache.reset()
        return cache


def generate_frames(model, inputs: dict, seeds: list[int], sampling: Sampling, max_new_tokens: int,
                    static: StaticKV | None = None, prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None
                    ) -> torch.Tensor:
    """Generated frames [rows, steps, codebooks], the all-start frame first: on the growing cache, or on
    `static`'s pre-allocated one with the batch padded to its bucket. With `prefix` (per layer, the rows' prompt
    prefix keys and values, engine/higgs_prefix.py), the cache starts from them and `inputs` hold the rest of
    each prompt, its attention mask covering both."""
    from transformers import DynamicCache

    rows = len(seeds)
    if static is not None:  # pad to the bucket with copies of the last row: rows never see each other
        extra = bucket(rows) - rows
        inputs = {k: torch.cat([v, v[-1:].expand(extra, *v.shape[1:])]) for k, v in inputs.items()}
        seeds = seeds + [seeds[-1]] * extra
        if prefix is not None:
            prefix = [tuple(torch.cat([t, t[-1:].expand(extra, *t.shape[1:])]) for t in kv) for kv in prefix]
    mask = inputs["attention_mask"].bool()
    prompt = mask.shape[1]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # padding: each row counts its own tokens only
    sampler = RowSampler(model.config, seeds, sampling, mask.device)
    if static is None:
        cache, step_forward = DynamicCache(config=model.config), model
    else:
        length = -(-(prompt + max_new_tokens) // CACHE_BUCKET) * CACHE_BUCKET
        cache, step_forward = static.cache(len(seeds), length), static.step
        mask = torch.cat([mask, mask.new_zeros((len(seeds), length - prompt))], dim=1)
    for layer, (keys, values) in enumerate(prefix or ()):
        cache.update(keys, values, layer)
    out = model(input_ids=inputs["input_ids"], attention_mask=mask, audio_input_ids=inputs.get("audio_input_ids"),
                audio_input_ids_mask=inputs.get("audio_input_ids_mask"),
                position_ids=positions[:, prompt - inputs["input_ids"].shape[1]:], cache=cache, use_cache=True,
                logits_to_keep=1)
    position = positions[:, -1:]
    frames = []
    for step in range(max_new_tokens):
        frame = sampler(out.logits[:, -1], step)
        frames.append(frame)
        if step == max_new_tokens - 1 or not bool(sampler.unfinished[:rows].any()):
            break
        position = position + 1
        if static is None:
            mask = torch.cat([mask, mask.new_ones((len(seeds), 1))], dim=1)
        else:
            mask[:, prompt + step] = True
        out = step_forward(audio_input_ids=frame[:, None], attention_mask=mask, position_ids=position, cache=cache,
                           use_cache=True)
    return torch.stack(frames, dim=1)[:rows]
