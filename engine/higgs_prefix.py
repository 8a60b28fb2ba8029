"""Higgs prompts as token rows split at their shared prefix: the system prompt, the scene and the reference
exchange every row of one voice starts with (a dialogue's rows: the system prompt and a scene holding each
speaker's reference); only the chained takes and the line differ.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


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
