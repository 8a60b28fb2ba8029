"""Device and dtype for torch engines: mps, else cuda, else cpu; a dtype that suits the device. Overridable."""
from __future__ import annotations

import re

from tasks.core.errors import EngineError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "half": "float16"}
# bf16 is what the weights were trained in; MPS gets fp16, which every macOS version runs.
AUTO_DTYPE = {"cuda": "bfloat16", "mps": "float16", "cpu": "float32"}


def available_devices() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def choose_device(setting: str = "auto") -> str:
    """`auto` picks mps, else cuda, else cpu; a named device must exist on this machine."""
    wanted = setting.strip().lower()
    if not DEVICE_PATTERN.match(wanted):
        raise EngineError(f"VOICEBATCH_DEVICE={setting!r} is not a device; use auto, cpu, mps, cuda or cuda:N")
    found = available_devices()
    if wanted == "auto":
        return next(d for d in ("mps", "cuda", "cpu") if d in found)
    if wanted.split(":")[0] not in found:
        raise EngineError(f"VOICEBATCH_DEVICE={setting!r}, but this machine has only: {', '.join(found)}; "
                          "set VOICEBATCH_DEVICE=auto or one of those")
    if wanted.startswith("cuda:"):
        import torch

        index = int(wanted.split(":")[1])
        if index >= torch.cuda.device_count():
            raise EngineError(f"VOICEBATCH_DEVICE={setting!r}, but this machine has {torch.cuda.device_count()} "
                              "CUDA device(s), counted from 0")
    return wanted


def choose_dtype(setting: str, device: str) -> str:
    """`auto` gives bfloat16 on cuda, float16 on mps and float32 on cpu; otherwise the named dtype."""
    wanted = setting.strip().lower()
    if wanted == "auto":
        return AUTO_DTYPE[device.split(":")[0]]
    if wanted not in DTYPES:
        raise EngineError(f"VOICEBATCH_DTYPE={setting!r} is not a dtype; use auto, float32, bfloat16 or float16")
    return DTYPES[wanted]


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an engine call failed for lack of device memory (torch.OutOfMemoryError, or the RuntimeError
    that older torch and MPS raise), told by name so that callers need not import torch."""
    return "OutOfMemory" in type(error).__name__ or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())
