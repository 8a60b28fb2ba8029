"""All settings in one place: `VOICEBATCH_*` environment variables, then a `.env` file, then defaults."""
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICEBATCH_", env_file=".env", extra="ignore")

    engine: str = Field("hibari", description="Default engine for voices that name none.")
    device: str = Field("auto", description="auto (mps, else cuda, else cpu), or mps, cuda, cpu.")
    dtype: str = Field("auto", description="auto (bf16 on cuda, fp16 on mps, fp32 on cpu), float32, bfloat16 or float16.")
    higgs_model: str = Field("bosonai/higgs-audio-v2-generation-3B-base",
                             description="Higgs Audio v2 checkpoint in transformers format: a hub id or a local directory.")
    higgs_revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of higgs_model; pin one.")
    higgs_batch_size: int = Field(8, ge=1, le=256, description="Most Higgs jobs rendered in one generate call.")
    higgs_decode: Literal["auto", "eager", "static", "compiled"] = Field(
        "auto", description="Higgs decoding: auto (compiled with CUDA graphs on CUDA, else eager), eager (growing KV "
        "cache), static (pre-allocated cache, fixed shapes), compiled (static, CUDA only; elsewhere eager).")
    higgs_prefix_reuse: bool = Field(
        True, description="Higgs: keep the KV cache of the prompt prefix rows share (system prompt, scene, reference "
        "clips) and prefill only the rest of each prompt; false prefills every whole prompt.")
    output_dir: Path = Field(Path("outputs"), description="Where chapters, books and takes are written.")
    db_path: Path | None = Field(None, description="Provenance database; default <output_dir>/provenance.duckdb.")
    voices_dir: Path = Field(Path("voices"), description="Voice assets, one folder per voice id.")
    chunk_words: int = Field(60, ge=5, le=400, description="Default word budget per longform chunk.")
    batch_size: int | None = Field(None, ge=1, le=1024,
                                   description="Jobs per render batch (one Prefect task each); default: the engine's own.")
    import_max_mb: float = Field(100, gt=0, description="`voicebatch import` refuses a book file larger than this (MB).")
    max_takes_per_run: int = Field(50_000, ge=1, description="A manifest planning more chunks than this is refused.")
    take_seconds_per_word: float = Field(3.0, gt=0, description="A take longer than this per word is a run-on...")
    take_floor_seconds: float = Field(15.0, gt=0, description="...unless it is shorter than this.")
    max_output_mb: float = Field(2048, gt=0, description="A chapter or book file larger than this is refused (MB).")
    db_lock_wait: float = Field(120, ge=0, description="Seconds to wait for a database another process holds.")
    reference_max_seconds: float = Field(30.0, ge=2, le=600, description="Longest reference clip kept (seconds).")
    reference_over_max: Literal["trim", "refuse"] = Field(
        "trim", description="A longer reference: trim it (only when it has no manual transcript) or refuse it.")
    whisper_model: str = Field("turbo", description="Whisper model for missing transcripts: a name or a checkpoint path.")
    transcribe: Literal["auto", "always"] = Field(
        "auto", description="auto: Whisper only for voices whose engine reads the reference; always: every voice.")
    cpu_lanes: int | None = Field(None, ge=1, le=256,
                                  description="Render lanes for single-threaded CPU engines; default: one per core.")
    lane_dir: Path | None = Field(None, description="Folder of the per-device render-lane lock files shared by every "
                                  "process on this machine; default: a folder in the system's temp dir.")
    server: Literal["reuse", "temporary"] = Field(
        "reuse", description="Without PREFECT_API_URL: reuse a local Prefect server left running between commands, "
        "or start a temporary one per command (as --no-server does).")
    server_port: int = Field(4200, ge=0, le=65535, description="Port of the reused local server when it is free "
                             "(0: any free port).")
    server_start_timeout: float = Field(90, gt=0, description="Seconds a local Prefect server may take to start.")
    debug: bool = Field(False, description="Show tracebacks instead of one-line errors.")

    @property
    def database(self) -> Path:
        return self.db_path or self.output_dir / "provenance.duckdb"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
