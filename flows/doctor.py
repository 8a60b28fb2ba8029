"""`voicebatch doctor`: what this machine has, and whether the configured engine can run here.

Each check says ok, warn (something optional is missing) or fail (the configured setup cannot run), with the
fix. Nothing is downloaded and no model is loaded.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from engine.registry import available_engines, engine_class
from engine.device import choose_device
from engine.whisper import local_model_file
from tasks.core.errors import EngineError
from tasks.core.settings import Settings
from tasks.store import db as provenance

HIGGS_DEFAULT = "bosonai/higgs-audio-v2-generation-3B-base"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def check_versions() -> tuple[dict[str, str | None], list[Check]]:
    found = {"python": platform.python_version(),
             **{p: _version(p) for p in ("voicebatch", "torch", "transformers", "prefect", "openai-whisper")}}
    checks = [Check("python", "ok", f"Python {found['python']} ({platform.system()} {platform.machine()})")]
    for package in ("torch", "transformers", "prefect"):
        if found[package]:
            checks.append(Check(package, "ok", f"{package} {found[package]}"))
        else:
            checks.append(Check(package, "fail", f"{package} is not installed",
                                "reinstall voicebatch: make install (or pip install -e .)"))
    return found, checks


def check_devices(settings: Settings) -> tuple[dict[str, Any], list[Check]]:
    import torch

    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    cuda = torch.cuda.is_available()
    facts: dict[str, Any] = {"cuda": cuda, "cuda_devices": [torch.cuda.get_device_name(i)
                                                            for i in range(torch.cuda.device_count())] if cuda else [],
                             "mps": mps, "setting": settings.device}
    chosen = choose_device(settings.device)
    facts["chosen"] = chosen
    detail = (f"CUDA: {'yes (' + ', '.join(facts['cuda_devices']) + ')' if cuda else 'no'}; MPS: {'yes' if mps else 'no'}; "
              f"VOICEBATCH_DEVICE={settings.device} chooses {chosen}")
    have = {"cpu"} | ({"cuda"} if cuda else set()) | ({"mps"} if mps else set())
    if chosen.split(":")[0] not in have:
        return facts, [Check("device", "fail", detail, f"this machine has {', '.join(sorted(have))}; set "
                             "VOICEBATCH_DEVICE=auto or one of those")]
    return facts, [Check("device", "ok", detail)]


def check_mps_fallback(user_value: str | None, mps: bool) -> Check:
    now = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK")
    origin = "set by you" if user_value is not None else "set by voicebatch at start-up"
    if now == "1":
        return Check("mps fallback", "ok", f"PYTORCH_ENABLE_MPS_FALLBACK=1 ({origin})")
    status = "warn" if mps else "ok"
    return Check("mps fallback", status, f"PYTORCH_ENABLE_MPS_FALLBACK={now!r} ({origin}); "
                 f"{'ops MPS lacks will fail' if mps else 'only matters on Apple silicon'}",
                 "unset it, or set PYTORCH_ENABLE_MPS_FALLBACK=1" if mps else "")


def check_engine(settings: Settings) -> Check:
    try:
        cls = engine_class(settings.engine)
    except EngineError as e:
        return Check("engine", "fail", f"VOICEBATCH_ENGINE={settings.engine}: {e}",
                     f"set VOICEBATCH_ENGINE to one of: {', '.join(available_engines())}, or install the engine")
    return Check("engine", "ok", f"{settings.engine} ({cls.__module__}.{cls.__name__}) imports")


def higgs_location(model: str, revision: str | None) -> str | None:
    """Where the Higgs checkpoint is on this machine (a directory, or the hub cache), or None."""
    local = Path(model).expanduser()
    if local.is_dir():
        return str(local) if (local / "config.json").is_file() else None
    if model.count("/") != 1:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "config.json", revision=revision)
    return str(Path(found).parent) if isinstance(found, str) else None


def check_higgs(settings: Settings) -> Check:
    model = getattr(settings, "higgs_model", HIGGS_DEFAULT)
    revision = getattr(settings, "higgs_revision", None)
    where = higgs_location(model, revision)
    if where:
        return Check("higgs model", "ok", f"{model} is here: {where}")
    needed = settings.engine == "higgs"
    return Check("higgs model", "fail" if needed else "warn",
                 f"{model}{'@' + revision if revision else ''} is not on this machine"
                 + ("" if needed else f" (not needed by the configured engine {settings.engine})"),
                 f"download it once while online (hf download {model}), or set VOICEBATCH_HIGGS_MODEL to a "
                 "local directory")


def check_whisper(settings: Settings) -> Check:
    found = local_model_file(settings.whisper_model)
    if found:
        return Check("whisper model", "ok", f"{settings.whisper_model} is here: {found}")
    return Check("whisper model", "warn", f"{settings.whisper_model} is not on this machine; voices without a "
                 "manual transcript cannot be transcribed offline",
                 "run once while online (it downloads on first use), set VOICEBATCH_WHISPER_MODEL to a local "
                 "checkpoint, or write transcripts in voice.yaml")


def check_ffmpeg() -> Check:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return Check("ffmpeg", "warn", "ffmpeg is not on PATH: MP3 and M4A references cannot be read "
                     "(WAV, FLAC and OGG still work)", "install ffmpeg (apt-get install ffmpeg, brew install ffmpeg)")
    try:
        first = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError) as e:
        return Check("ffmpeg", "warn", f"{exe} does not run ({e})", "reinstall ffmpeg")
    name = first[0].split(" Copyright")[0] if first else "ffmpeg"
    return Check("ffmpeg", "ok", f"{name} ({exe})")


def check_output_dir(out: Path) -> Check:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".voicebatch-doctor-"):
            pass
    except OSError as e:
        return Check("output dir", "fail", f"{out} is not writable ({e.strerror or e})",
                     "set VOICEBATCH_OUTPUT_DIR (or --out) to a writable folder")
    return Check("output dir", "ok", f"{out.resolve()} is writable")


def check_database(db: Path) -> Check:
    if not db.exists():
        return Check("provenance database", "ok", f"{db} does not exist yet; the first render creates it")
    try:
        with provenance.connect(db, read_only=True, wait=5) as con:
            applied = provenance.schema_version(con)
    except Exception as e:  # ProvenanceError, or duckdb's own errors for a damaged file
        return Check("provenance database", "fail", f"{db} cannot be opened ({e})",
                     "close programs that hold it open, or point VOICEBATCH_DB_PATH at another file")
    pending = len(provenance.MIGRATIONS) - applied
    return Check("provenance database", "ok", f"{db} opens (schema version {applied}"
                 + (f"; {pending} migration(s) apply on the next render)" if pending > 0 else ")"))


def diagnose(settings: Settings, mps_fallback_from_user: str | None) -> dict[str, Any]:
    """Every check, as one JSON-ready report; `ok` is False when any check failed."""
    versions, checks = check_versions()
    devices: dict[str, Any] = {}
    if versions["torch"]:
        devices, device_checks = check_devices(settings)
        checks += device_checks
    checks.append(check_mps_fallback(mps_fallback_from_user, bool(devices.get("mps"))))
    checks += [check_engine(settings), check_higgs(settings), check_whisper(settings), check_ffmpeg(),
               check_output_dir(settings.output_dir), check_database(settings.database)]
    return {"ok": not any(c.status == "fail" for c in checks), "engine": settings.engine, "versions": versions,
            "devices": devices, "checks": [asdict(c) for c in checks]}
