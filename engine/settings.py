"""All settings in one place: `VOICEBATCH_*` environment variables, then a `.env` file, then defaults."""
from functools import lru_cache
from pathlib import Path

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
    output_dir: Path = Field(Path("outputs"), description="Where chapters, books and takes are written.")
    db_path: Path | None = Field(None, description="Provenance database; default <output_dir>/provenance.duckdb.")
    voices_dir: Path = Field(Path("voices"), description="Voice assets, one folder per voice id.")
    chunk_words: int = Field(60, ge=5, le=400, description="Default word budget per longform chunk.")
    debug: bool = Field(False, description="Show tracebacks instead of one-line errors.")

    @property
    def database(self) -> Path:
        return self.db_path or self.output_dir / "provenance.duckdb"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
