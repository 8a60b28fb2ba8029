"""Higgs prompts as token rows split at their shared prefix, and the KV cache of that prefix kept across calls.

Every row of one voice starts with the same system prompt, scene and reference exchange (a dialogue's rows: the
system prompt and a scene holding each speaker's reference); only the chained takes and the line differ. The
prefix's keys and values are computed once, alone, and kept (PREFIX_CACHE of them per process); a batch then
lays each row out as [padding][prefix][padding][rest] and runs only the rest through the model. Positions
count real tokens only, as in the plain left-padded layout, so a row sees the same prompt either way.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import torch

PREFIX_CACHE = 8  # prefixes kept per process; full size: ~0.11 MB of bf16 keys and values per prefix token


@dataclass(frozen=True)
class PromptRow:
    """One request's prompt: token ids and audio codes ([frames, codebooks]) of its shared prefix and the rest."""
    prefix_ids: tuple[int, ...]
    prefix_codes: torch.Tensor
    suffix_ids: tuple[int, ...]
    suffix_codes: torch.Tensor

    @property
    def prefix_key(self) -> str:
        digest = hashlib.sha256(torch.tensor(self.prefix_ids, dtype=torch.long).numpy().tobytes())
        digest.update(self.prefix_codes.to(torch.long).contiguous().numpy().tobytes())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)


def _audio(codes: list[torch.Tensor], eos: int, device) -> dict:
    """Audio codes right-padded with the stream end code, and which frames are real; nothing when none is."""
    longest = max(len(c) for c in codes)
    if not longest:
        return {}
    padded = torch.stack([torch.nn.functional.pad(c, (0, 0, 0, longest - len(c)), value=eos) for c in codes])
    mask = torch.arange(longest)[None, :] < torch.tensor([len(c) for c in codes])[:, None]
    return {"audio_input_ids": padded.to(device), "audio_input_ids_mask": mask.to(device)}


def whole_inputs(rows: list[PromptRow], pad_id: int, eos: int, device) -> dict:
    """The plain layout: each whole prompt left-padded, audio codes right-padded (what the processor builds)."""
    width = max(len(r) for r in rows)
    ids = [[pad_id] * (width - len(r)) + list(r.prefix_ids + r.suffix_ids) for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return {"input_ids": torch.tensor(ids, device=device), "attention_mask": torch.tensor(mask, device=device),
            **_audio([torch.cat([r.prefix_codes, r.suffix_codes]) for r in rows], eos, device)}


def suffix_inputs(rows: list[PromptRow], pad_id: int, eos: int, device) -> dict:
    """The layout after a cached prefix: ids and audio of the rest only, and the attention mask over
    [padding][prefix][padding][rest] (prefixes left-padded to the longest, the rests too)."""
    prefix = max(len(r.prefix_ids) for r in rows)
    rest = max(len(r.suffix_ids) for r in rows)
    ids = [[pad_id] * (rest - len(r.suffix_ids)) + list(r.suffix_ids) for r in rows]
    mask = [[0] * (prefix - len(r.prefix_ids)) + [1] * len(r.prefix_ids) + [0] * (rest - len(r.suffix_ids))
            + [1] * len(r.suffix_ids) for r in rows]
    return {"input_ids": torch.tensor(ids, device=device), "attention_mask": torch.tensor(mask, device=device),
            **_audio([r.suffix_codes for r in rows], eos, device)}


class PrefixCache:
    """Keys and values of prompt prefixes, computed alone (batch of one, no padding) and kept by content."""

    def __init__(self, size: int = PREFIX_CACHE) -> None:
        self.size = size
        self.entries: OrderedDict[str, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()

    def clear(self) -> None:
        self.entries.clear()

    def get(self, model, row: PromptRow) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], bool]:
        """The prefix's keys and values per layer ([1, heads, tokens, head_dim] each), and whether they were
        computed now."""
        from transformers import DynamicCache

        key = row.prefix_key
        kv = self.entries.get(key)
        if kv is not None:
            self.entries.move_to_end(key)
            return kv, False
        device = model.device
        tokens = len(row.prefix_ids)
        cache = DynamicCache(config=model.config)
        audio = {"audio_input_ids": row.prefix_codes[None].to(device),
                 "audio_input_ids_mask": torch.ones((1, len(row.prefix_codes)), dtype=torch.bool, device=device)} \
            if len(row.prefix_codes) else {}
        model(input_ids=torch.tensor([row.prefix_ids], device=device),
              attention_mask=torch.ones((1, tokens), dtype=torch.long, device=device),
              position_ids=torch.arange(tokens, device=device)[None], cache=cache, use_cache=True, logits_to_keep=1,
              **audio)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.entries[key] = kv
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return kv, True


def batch_prefix(kvs: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the rows' prefix keys and values left-padded with zeros to the longest prefix and stacked (the
    padding is masked out; zeros keep it finite)."""
    longest = max(kv[0][0].shape[2] for kv in kvs)
    pad = lambda t: torch.nn.functional.pad(t, (0, 0, longest - t.shape[2], 0))  # noqa: E731
    return [(torch.cat([pad(kv[layer][0]) for kv in kvs]), torch.cat([pad(kv[layer][1]) for kv in kvs]))
            for layer in range(len(kvs[0]))]
