"""Higgs Audio v2 through transformers: voice cloning and smart voice, many jobs per `generate` call.

Everything Higgs lives here: loading (hub id or local directory, pinned revision), prompts (system, scene,
the voice's transcript and reference audio as a prior turn, then the line), batching with left padding and
halving on out-of-memory, and the per-process cache of reference audio codes keyed by the clip's hash. The
decoding loop (per-row random streams, the static and compiled paths) is in engine/higgs_decode.py.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from engine.base import Engine, EngineInfo, RenderRequest, VoicePrompt
from engine.device import choose_device, choose_dtype, is_out_of_memory, torch_dtype
from engine.higgs_decode import COMPILED, EAGER, STATIC, Sampling, StaticKV, generate_frames, stream_seed
from engine.higgs_prefix import PrefixCache, PromptRow, batch_prefix, suffix_inputs, whole_inputs
from tasks.core.audio_format import SAMPLE_RATE
from tasks.core.errors import EngineError
from tasks.core.settings import get_settings

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "Generate audio following instruction."
DEFAULT_SCENE = "Audio is recorded from a quiet room."  # Higgs' own examples use this when none is given
REFERENCE_CACHE = 512  # encoded clips kept per process: every voice, and the recent takes of context chains
TORCHAUDIO_FIX = ("torchaudio's compiled extension does not load with this torch (PyPI's Linux wheel is built "
                  "for CUDA); `make install` removes it so torchaudio runs as pure Python, or run: "
                  "rm \"$(python -c 'import importlib.util as u, os; "
                  "print(os.path.dirname(u.find_spec(\"torchaudio\").origin))')\"/lib/*.so")


def _transformers():
    """transformers' Higgs classes; their audio tokenizer imports torchaudio at module level."""
    try:
        from transformers import AutoProcessor, HiggsAudioV2ForConditionalGeneration
    except OSError as e:
        raise EngineError(f"Higgs Audio cannot be imported ({e}). {TORCHAUDIO_FIX}") from e
    except ImportError as e:
        raise EngineError(f"Higgs Audio needs transformers>=5.23 and torchaudio ({e}); "
                          "reinstall voicebatch with `make install`") from e
    return AutoProcessor, HiggsAudioV2ForConditionalGeneration


def _from_pretrained(loader, source: str, **kwargs):
    """The local cache first (no network round trips when the files are there), then the hub unless offline."""
    from huggingface_hub import constants

    try:
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError:
        if constants.HF_HUB_OFFLINE:
            raise
    return loader.from_pretrained(source, **kwargs)


class Conversation(NamedTuple):
    """A request's chat turns and the audio codes of its audio turns; the first `shared_turns` turns (holding the
    first `shared_codes` clips) are the prefix that rows of the same voice, or the same dialogue voices, share."""
    turns: list[dict]
    codes: list
    shared_turns: int
    shared_codes: int


def torch_cat(clips: list, codebooks: int):
    """Audio codes of several clips end to end: [frames, codebooks], empty when there are none."""
    import torch

    return torch.cat(clips) if clips else torch.empty((0, codebooks), dtype=torch.long)


def read_reference(path: Path) -> np.ndarray:
    """A reference clip as mono float32 at 24 kHz."""
    import soundfile as sf

    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as e:
        raise EngineError(f"reference clip {path} cannot be read as audio ({e})") from None
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, rate, SAMPLE_RATE)
    return np.ascontiguousarray(audio, dtype=np.float32)


class HiggsEngine(Engine):
    id = "higgs"
    code_version = "2"  # 2: per-row random streams
    honours = frozenset({"temperature", "top_k", "top_p", "seed", "max_new_tokens", "ras_win_len", "scene",
                         "context"})
    batches = True
    seed_per_row = True

    def __init__(self, device: str = "auto", dtype: str = "auto") -> None:
        settings = get_settings()
        chosen = choose_device(device)
        super().__init__(chosen, choose_dtype(dtype, chosen))
        local = Path(settings.higgs_model).expanduser()
        self.local = local.is_dir()
        self.model_name = str(local.resolve()) if self.local else settings.higgs_model
        self.revision = settings.higgs_revision
        self.batch_size = settings.higgs_batch_size
        self._model = None
        self._processor = None
        self._reference_codes: OrderedDict[str, object] = OrderedDict()
        self._static_kv: StaticKV | None = None  # pre-allocated caches and the compiled step, kept while warm
        self._compile_failed = False
        self.prefix_reuse = settings.higgs_prefix_reuse
        self._prefixes = PrefixCache()
        # Counters, for tests and the benchmark: what reuse saved is visible, not assumed.
        self.reference_encodings = 0
        self.generate_calls = 0
        self.generate_rows = 0
        self.prefill_tokens = 0  # prompt tokens run through the model (padding not counted)
        self.prefill_tokens_reused = 0  # prompt tokens whose keys and values came from the prefix cache instead

    # ---- loading -------------------------------------------------------------------------------------------
    def load(self) -> None:
        if self._model is not None:
            return
        AutoProcessor, HiggsModel = _transformers()
        source = self.model_name
        if not self.local and ("/" not in source or source.startswith((".", "/", "~"))):
            raise EngineError(f"Higgs model {source!r} is neither a local directory nor a hub id (owner/name); "
                              "set VOICEBATCH_HIGGS_MODEL to a checkpoint directory or a hub id")
        try:
            processor = _from_pretrained(AutoProcessor, source, revision=self.revision)
            model = _from_pretrained(HiggsModel, source, revision=self.revision, dtype=torch_dtype(self.dtype))
        except OSError as e:
            at = f" at revision {self.revision}" if self.revision else ""
            if self.local:
                raise EngineError(f"Higgs checkpoint {source} cannot be loaded ({str(e).splitlines()[0]}); a moved "
                                  "checkpoint breaks the audio tokenizer path recorded in its processor_config.json "
                                  "(audio_tokenizer_name_or_path): point it at the audio tokenizer's folder") from None
            raise EngineError(
                f"Higgs model {source!r}{at} is not in the local Hugging Face cache and cannot be downloaded here "
                f"({str(e).splitlines()[0][:160]}). Fetch it on a machine with network access: `hf download {source}"
                f"{' --revision ' + self.revision if self.revision else ''}` (and its audio tokenizer, "
                "bosonai/higgs-audio-v2-tokenizer), or set VOICEBATCH_HIGGS_MODEL to a local checkpoint "
                "directory") from None
        self.attach(model, processor)

    def attach(self, model, processor) -> None:
        """Use an already built model and processor (load() ends here; the benchmark's random full-size model
        starts here)."""
        if type(processor).__name__ != "HiggsAudioV2Processor":
            raise EngineError(f"{self.model_name} is not a Higgs Audio v2 checkpoint in transformers format "
                              f"(its processor is {type(processor).__name__})")
        codebooks = processor.audio_tokenizer.config.num_quantizers
        if codebooks != model.config.num_codebooks:
            raise EngineError(f"{self.model_name}: the audio tokenizer has {codebooks} quantizers but the model "
                              f"expects {model.config.num_codebooks} codebooks; the checkpoint and its tokenizer "
                              "do not match")
        self._reference_codes.clear()
        self._prefixes.clear()
        self._static_kv = None
        self._model = model.to(self.device).eval()
        # Higgs' own MPS port keeps the audio tokenizer on the CPU: some of its ops have no MPS kernel.
        processor.audio_tokenizer.to("cpu" if self.device == "mps" else self.device).eval()
        self._processor = processor

    def _loaded(self):
        if self._model is None:
            self.load()
        return self._model, self._processor

    # ---- prompts -------------------------------------------------------------------------------------------
    def effective_options(self, voice: VoicePrompt) -> dict:
        options = super().effective_options(voice)
        if voice.reference is not None and not (voice.transcript or "").strip():
            raise EngineError(f"voice {voice.voice_id!r} has a reference clip but no transcript; Higgs clones a "
                              "voice from the clip and what it says: add `transcript:` to its voice.yaml")
        return options

    def reference_codes(self, voice: VoicePrompt):
        """The voice's reference clip (or a chained take) as audio codes (delay pattern, stream bos/eos): encoded
        once per process, the most recent REFERENCE_CACHE kept."""
        import torch

        codes = self._reference_codes.get(voice.content_hash)
        if codes is not None:
            self._reference_codes.move_to_end(voice.content_hash)
            return codes
        _, processor = self._loaded()
        tokenizer = processor.audio_tokenizer
        features = processor.feature_extractor(read_reference(voice.reference), sampling_rate=SAMPLE_RATE,
                                               return_tensors="pt")
        with torch.inference_mode():
            raw = tokenizer.encode(features["input_values"].to(tokenizer.device), return_dict=False)
        bos = raw.new_full((*raw.shape[:2], 1), processor.audio_stream_bos_id)
        eos = raw.new_full((*raw.shape[:2], 1), processor.audio_stream_eos_id)
        codes = processor.build_delay_pattern(torch.cat([bos, raw, eos], dim=2))[0].transpose(0, 1).cpu()
        self.reference_encodings += 1
        self._reference_codes[voice.content_hash] = codes
        if len(self._reference_codes) > REFERENCE_CACHE:
            self._reference_codes.popitem(last=False)
        return codes

    def conversation(self, request: RenderRequest) -> Conversation:
        """Chat turns for one request and the audio codes of its audio turns, in order. Alone: the voice's
        reference as a prior exchange of words and audio, then, in a context chain, the takes before it the same
        way, then the line (Higgs' own long-form prompting). In a dialogue chain (a speaker tag): each speaker's
        reference in the scene as `SPEAKER<n>:` and its clip, then the earlier turns and the line, each tagged
        `[SPEAKER<n>]` (Higgs' multi-speaker cloning). The system prompt, the scene and the reference exchange
        come first: the prefix rows share."""
        text = lambda t: [{"type": "text", "text": t}]  # noqa: E731
        tagged = lambda tag, t: t if request.speaker_tag is None else f"[SPEAKER{tag}] {t}"  # noqa: E731
        scene, codes = text(request.scene or DEFAULT_SCENE), []
        if request.speaker_tag is not None:
            speakers = {e.tag: e.voice for e in request.context} | {request.speaker_tag: request.voice}
            for tag, voice in sorted(speakers.items()):
                if voice.reference is not None:  # a voice without one is Higgs' smart voice
                    scene += [{"type": "text", "text": f"SPEAKER{tag}:"}, {"type": "audio"}]
                    codes.append(self.reference_codes(voice))
        turns = [{"role": "system", "content": text(SYSTEM_PROMPT)}, {"role": "scene", "content": scene}]
        if request.speaker_tag is None and request.voice.reference is not None:  # cloning: clip and words as a turn
            turns += [{"role": "user", "content": text(request.voice.transcript or "")},
                      {"role": "assistant", "content": [{"type": "audio"}]}]
            codes.append(self.reference_codes(request.voice))
        shared_turns, shared_codes = len(turns), len(codes)
        for earlier in request.context:
            turns += [{"role": "user", "content": text(tagged(earlier.tag, earlier.take.transcript or ""))},
                      {"role": "assistant", "content": [{"type": "audio"}]}]
            codes.append(self.reference_codes(earlier.take))
        turns.append({"role": "user", "content": text(tagged(request.speaker_tag, self.spoken_text(request)))})
        return Conversation(turns, codes, shared_turns, shared_codes)

    def prompt_rows(self, requests: Sequence[RenderRequest]) -> list[PromptRow]:
        """Each request's prompt as token ids and audio codes, split after the prefix rows share; built from cached
        codes (the processor's own call would re-encode every reference clip for every line)."""
        _, processor = self._loaded()
        talks = [self.conversation(r) for r in requests]
        texts = processor.apply_chat_template([t.turns for t in talks], tokenize=False, add_generation_prompt=True)
        heads = processor.apply_chat_template([t.turns[:t.shared_turns] for t in talks], tokenize=False)
        parts, codes = [], []
        for request, talk, whole, head in zip(requests, talks, texts, heads):
            if not whole.startswith(head):
                raise EngineError(f"Higgs prompt for {request.text[:40]!r} does not start with its system and scene "
                                  "turns; the checkpoint's chat template is not Higgs'")
            shared = talk.shared_codes
            for piece, clips in ((head, talk.codes[:shared]), (whole[len(head):], talk.codes[shared:])):
                slots = piece.split(processor.audio_token)
                if len(slots) != len(clips) + 1:
                    raise EngineError(f"Higgs prompt for {request.text[:40]!r} has {len(slots) - 1} audio slots for "
                                      f"{len(clips)} clips; the checkpoint's chat template is not Higgs'")
                expanded = (processor.get_audio_tokens(len(c)) + s for c, s in zip(clips, slots[1:]))
                parts.append(slots[0] + "".join(expanded))
                codes.append(torch_cat(clips, self._model.config.num_codebooks))
        ids = processor.tokenizer(parts, add_special_tokens=False)["input_ids"]
        return [PromptRow(tuple(ids[i]), codes[i], tuple(ids[i + 1]), codes[i + 1]) for i in range(0, len(parts), 2)]

    def model_inputs(self, requests: Sequence[RenderRequest]) -> dict:
        """Left-padded text and right-padded audio codes for one generate call, whole prompts (no prefix reuse)."""
        model, processor = self._loaded()
        return whole_inputs(self.prompt_rows(requests), processor.tokenizer.pad_token_id,
                            processor.audio_stream_eos_id, model.device)

    # ---- rendering -----------------------------------------------------------------------------------------
    def render(self, requests: Sequence[RenderRequest]) -> list[np.ndarray]:
        """Requests sharing decoding parameters (their seeds aside: each row has its own stream) and scene go
        through one generate call per `batch_size`."""
        out: list[np.ndarray | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.params.model_copy(update={"seed": 0}), r.scene), []).append(i)
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                part = members[start:start + self.batch_size]
                for i, audio in zip(part, self._render_halving([requests[i] for i in part])):
                    out[i] = audio
        return out

    def _render_halving(self, requests: list[RenderRequest]) -> list[np.ndarray]:
        try:
            return self.generate(requests)
        except Exception as e:  # noqa: BLE001 (only out-of-memory is handled; the rest re-raises)
            if not is_out_of_memory(e):
                raise
            self._static_kv = None  # its caches were sized for the batch that did not fit
            self._prefixes.clear()
            self.clear_caches()
            if len(requests) == 1:
                raise EngineError(f"Higgs ran out of memory on {self.device} rendering one line "
                                  f"({requests[0].text[:60]!r}); shorten the chunk (chunk_words), lower "
                                  "max_new_tokens or use a device with more memory") from None
            half = len(requests) // 2
            log.warning("Higgs ran out of memory on %s with %d jobs in one call; retrying as %d + %d",
                        self.device, len(requests), half, len(requests) - half)
            return self._render_halving(requests[:half]) + self._render_halving(requests[half:])

    def decode_path(self, prompt_tokens: int, max_new_tokens: int) -> str:
        """The decode path for one call: VOICEBATCH_HIGGS_DECODE, where `auto` compiles on CUDA only; a cache
        longer than the model's positions, or a compile that failed before, falls back to eager."""
        model, _ = self._loaded()
        wish = get_settings().higgs_decode
        path = {"auto": COMPILED if self.device.startswith("cuda") else EAGER, "eager": EAGER, "static": STATIC,
                "compiled": COMPILED}[wish]
        if path == COMPILED and (not self.device.startswith("cuda") or self._compile_failed):
            path = EAGER  # CUDA graphs need CUDA
        if path != EAGER and prompt_tokens + max_new_tokens > model.config.max_position_embeddings:
            path = EAGER
        return path

    def generate(self, requests: Sequence[RenderRequest]) -> list[np.ndarray]:
        """One decoding run for requests that share decoding parameters (seeds aside); one waveform per request.
        Each row samples from its own stream, seeded from its job, so its audio does not depend on its batch-mates.
        With prefix reuse, each prompt's shared prefix comes from the prefix cache and only the rest is prefilled."""
        import torch

        model, processor = self._loaded()
        params = requests[0].params
        rows = self.prompt_rows(requests)
        seeds = [stream_seed(r.params.seed, r.key, self.spoken_text(r)) for r in requests]
        sampling = Sampling(params.temperature, params.top_k, params.top_p, params.ras_win_len)
        pad, eos = processor.tokenizer.pad_token_id, processor.audio_stream_eos_id
        with torch.inference_mode():
            prefix = None
            if self.prefix_reuse:
                found = [self._prefixes.get(model, row) for row in rows]
                computed = {row.prefix_key: len(row.prefix_ids) for row, (_, new) in zip(rows, found) if new}
                prefix = batch_prefix([kv for kv, _ in found])
                inputs = suffix_inputs(rows, pad, eos, model.device)
                self.prefill_tokens += sum(len(r.suffix_ids) for r in rows) + sum(computed.values())
                self.prefill_tokens_reused += sum(len(r.prefix_ids) for r in rows) - sum(computed.values())
            else:
                inputs = whole_inputs(rows, pad, eos, model.device)
                self.prefill_tokens += sum(len(r) for r in rows)
            path = self.decode_path(inputs["attention_mask"].shape[1], params.max_new_tokens)
            try:
                frames = generate_frames(model, inputs, seeds, sampling, params.max_new_tokens, self._static(path),
                                         prefix)
            except Exception as e:  # noqa: BLE001 (a compile that fails falls back to eager; the rest re-raises)
                if path != COMPILED or is_out_of_memory(e):
                    raise
                log.warning("Higgs' compiled decoding failed on %s (%s); decoding eagerly from now on", self.device, e)
                self._compile_failed, path = True, EAGER
                frames = generate_frames(model, inputs, seeds, sampling, params.max_new_tokens, None, prefix)
        self.generate_calls += 1
        self.generate_rows += len(requests)
        steps: list[int] = []
        audios = self.decode(frames, None, steps)
        for request, row, count in zip(requests, rows, steps):
            request.measured.update(decode_steps=count, decode_path=path, prompt_tokens=len(row))
        return audios

    def _static(self, path: str) -> StaticKV | None:
        if path == EAGER:
            return None
        compiled = path == COMPILED
        if self._static_kv is None or self._static_kv.compiled != compiled:
            self._static_kv = StaticKV(self._model, compiled)
        return self._static_kv

    def decode(self, sequences, prompt_audio=None, steps: list[int] | None = None) -> list[np.ndarray]:
        """Waveforms of the generated frames, row by row: from the first frame after the prompt's audio to each
        row's first all-end frame, delay pattern undone. A row too short to decode gives an empty array.
        `steps`, when given, receives each row's decode steps: the frames it generated up to its end."""
        import torch

        model, processor = self._loaded()
        tokenizer = processor.audio_tokenizer
        start = 0 if prompt_audio is None else prompt_audio.shape[1]
        generated = sequences[:, start:].to(tokenizer.device)
        codebooks = model.config.num_codebooks
        out = []
        with torch.inference_mode():
            for row in generated:
                ended = (row == processor.audio_stream_eos_id).all(dim=-1).nonzero()
                end = int(ended[0, 0]) if len(ended) else len(row)
                if steps is not None:
                    steps.append(end)  # frames 0..end-1; the batch may have decoded longer for other rows
                frames = row[1:end]  # frame 0 is the all-start frame of the stream
                if len(frames) < codebooks:  # nothing left once the delay pattern is undone
                    out.append(np.zeros(0, np.float32))
                    continue
                codes = processor.revert_delay_pattern(frames).clip(0, processor.audio_stream_bos_id - 1)
                audio = tokenizer.decode(codes.transpose(0, 1).unsqueeze(0), return_dict=False)
                out.append(audio.float().reshape(-1).cpu().numpy())
        return out

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def clear_caches(self) -> None:
        import gc

        import torch

        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        elif self.device == "mps":
            torch.mps.empty_cache()

    def close(self) -> None:
        if self._processor is not None:
            _release_audio_tokenizer(self._processor.audio_tokenizer)
        self._model = None
        self._processor = None
        self._static_kv = None
        self._reference_codes.clear()
        self._prefixes.clear()
        self.clear_caches()

    def info(self) -> EngineInfo:
        versions = {}
        for package in ("transformers", "torch", "torchaudio"):
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                versions[package] = "missing"
        return EngineInfo(engine=self.id, model=self.model_name, revision=self.revision, device=self.device,
                          dtype=self.dtype, code_version=self.code_version, versions=versions)


def _release_audio_tokenizer(tokenizer) -> None:
    """transformers (5.24) caches the audio tokenizer's `_get_conv1d_layers` with functools.lru_cache on the
    method, so the cache holds every tokenizer it has seen, with its weights (~0.8 GiB of GPU memory at full
    size), for the life of the process; clearing it lets close() free them. The cache is only a list of layers,
    rebuilt on the next call by any tokenizer still in use."""
    for cls in type(tokenizer).__mro__:
        cached = vars(cls).get("_get_conv1d_layers")
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
