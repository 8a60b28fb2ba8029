"""The provenance schema as migrations: plain functions appended in order and never renamed once released;
tasks/store/db.py applies each one with its record in one transaction and refuses a database that has
migrations this version does not know."""
from __future__ import annotations

from typing import Callable


def _m001_runs_and_renders(con) -> None:
    con.execute("""
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            flow_run_id VARCHAR,
            manifest_path VARCHAR NOT NULL,
            manifest_sha256 VARCHAR NOT NULL,
            title VARCHAR,
            engines VARCHAR,            -- JSON: engine name -> {model, revision, device, dtype, code_version}
            device VARCHAR,
            dtype VARCHAR,
            versions VARCHAR,           -- JSON: package -> version
            load_seconds DOUBLE,
            output_dir VARCHAR,
            started_at TIMESTAMP NOT NULL,
            ended_at TIMESTAMP,
            status VARCHAR NOT NULL,    -- running, completed, failed
            error VARCHAR,
            takes_rendered INTEGER,
            audio_seconds DOUBLE,
            wall_seconds DOUBLE
        )""")
    con.execute("""
        CREATE TABLE renders (
            run_id VARCHAR NOT NULL,
            chapter INTEGER NOT NULL,
            line INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            source VARCHAR,
            speaker VARCHAR NOT NULL,
            voice_id VARCHAR NOT NULL,
            voice_sha256 VARCHAR,
            engine VARCHAR NOT NULL,
            model VARCHAR,
            revision VARCHAR,
            device VARCHAR,
            dtype VARCHAR,
            engine_options VARCHAR,     -- JSON, after fallbacks
            text VARCHAR NOT NULL,
            params VARCHAR NOT NULL,    -- JSON: the resolved decoding parameters
            seed BIGINT,
            batch INTEGER,
            cache_key VARCHAR NOT NULL,
            take_path VARCHAR,
            take_sha256 VARCHAR,
            duration DOUBLE,
            render_seconds DOUBLE,
            peak_dbfs DOUBLE,
            rms_dbfs DOUBLE,
            status VARCHAR NOT NULL,    -- rendered, failed
            error VARCHAR,
            created_at TIMESTAMP NOT NULL
        )""")
    con.execute("""
        CREATE TABLE outputs (
            run_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,      -- chapter, book
            chapter INTEGER,
            title VARCHAR,
            path VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            duration DOUBLE,
            created_at TIMESTAMP NOT NULL
        )""")


def _m002_take_cache(con) -> None:
    """The render cache: one row per take on disk, cache hits on renders, chapter fingerprints on outputs,
    and who runs a run (to tell a killed run from a running one)."""
    con.execute("""
        CREATE TABLE takes (
            cache_key VARCHAR PRIMARY KEY,
            path VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            bytes BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            duration DOUBLE,
            peak_dbfs DOUBLE,
            rms_dbfs DOUBLE,
            render_seconds DOUBLE,
            engine VARCHAR,
            run_id VARCHAR,
            created_at TIMESTAMP NOT NULL
        )""")
    con.execute("ALTER TABLE renders ADD COLUMN cache_hit BOOLEAN DEFAULT false")
    con.execute("ALTER TABLE outputs ADD COLUMN fingerprint VARCHAR")
    con.execute("ALTER TABLE outputs ADD COLUMN reused BOOLEAN DEFAULT false")
    con.execute("ALTER TABLE outputs ADD COLUMN bytes BIGINT")
    con.execute("ALTER TABLE outputs ADD COLUMN mtime_ns BIGINT")
    con.execute("ALTER TABLE renders ADD COLUMN take_run_id VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN takes_reused INTEGER")
    con.execute("ALTER TABLE runs ADD COLUMN host VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")
    con.execute("ALTER TABLE runs ADD COLUMN forced BOOLEAN DEFAULT false")


def _m003_loudness(con) -> None:
    con.execute("""
        CREATE TABLE take_levels (
            run_id VARCHAR NOT NULL,
            key VARCHAR NOT NULL,       -- the take's cache key (renders.cache_key)
            path VARCHAR NOT NULL,      -- the normalised take
            sha256 VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,      -- lufs, rms, peak: the unit of the levels below
            level_before DOUBLE,
            gain_db DOUBLE,
            level_after DOUBLE,
            true_peak_dbtp DOUBLE
        )""")
    con.execute("""
        CREATE TABLE chapter_loudness (
            run_id VARCHAR NOT NULL,
            chapter INTEGER NOT NULL,
            title VARCHAR,
            path VARCHAR NOT NULL,
            preset VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,
            target DOUBLE,
            ceiling DOUBLE,             -- dBTP
            chapter_gain_db DOUBLE,     -- the correction after assembly
            integrated_lufs DOUBLE,
            loudness_range_lu DOUBLE,
            rms_dbfs DOUBLE,
            true_peak_dbtp DOUBLE,
            sample_peak_dbfs DOUBLE,
            noise_floor_dbfs DOUBLE,
            passed BOOLEAN NOT NULL,
            problems VARCHAR            -- JSON list of sentences
        )""")


def _m004_voice_transcripts(con) -> None:
    """Whisper transcripts cached by staged reference and model, and the voices each run spoke with."""
    con.execute("""
        CREATE TABLE voice_transcripts (
            audio_key VARCHAR NOT NULL,     -- staged reference: sha256 of the source's hash + conversion settings
            model VARCHAR NOT NULL,         -- Whisper model name, or file:<sha256> of a checkpoint
            transcript VARCHAR NOT NULL,
            language VARCHAR,
            seconds DOUBLE,                 -- transcription time
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (audio_key, model)
        )""")
    con.execute("""
        CREATE TABLE voices (
            run_id VARCHAR NOT NULL,
            voice_id VARCHAR NOT NULL,
            name VARCHAR,
            source_path VARCHAR,
            source_sha256 VARCHAR,
            staged_path VARCHAR,
            staged_key VARCHAR,
            duration DOUBLE,
            trimmed_from DOUBLE,            -- the source duration when the clip was trimmed
            converted BOOLEAN,              -- converted in this run (false: found staged)
            transcript VARCHAR,
            transcript_source VARCHAR,      -- manual, whisper, none
            whisper_model VARCHAR,
            transcribed BOOLEAN,            -- Whisper ran in this run (false: manual, cached or none)
            created_at TIMESTAMP NOT NULL
        )""")


def _m005_take_qa(con) -> None:
    """ASR scores cached by take and model, and every QA attempt of every run (re-takes included)."""
    con.execute("""
        CREATE TABLE qa_scores (
            cache_key VARCHAR NOT NULL,     -- the take (takes.cache_key)
            asr_model VARCHAR NOT NULL,     -- Whisper model name, or file:<sha256> of a checkpoint
            transcript VARCHAR NOT NULL,
            wer DOUBLE NOT NULL,
            seconds_per_word DOUBLE,
            flagged BOOLEAN NOT NULL,
            reasons VARCHAR,                -- JSON list of sentences
            asr_seconds DOUBLE,             -- transcription time
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (cache_key, asr_model)
        )""")
    con.execute("""
        CREATE TABLE qa_takes (
            run_id VARCHAR NOT NULL,
            chapter INTEGER NOT NULL,
            line INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            text VARCHAR,
            job_key VARCHAR NOT NULL,       -- the planned take's cache key (first attempt)
            cache_key VARCHAR,              -- this attempt's take
            attempt INTEGER NOT NULL,       -- 1 = the planned take, 2.. = re-takes
            seed BIGINT,
            asr_model VARCHAR NOT NULL,
            transcript VARCHAR,
            wer DOUBLE,
            seconds_per_word DOUBLE,
            duration DOUBLE,
            flagged BOOLEAN,
            reasons VARCHAR,                -- JSON list
            kept BOOLEAN NOT NULL,          -- the take the chapter uses
            scored BOOLEAN,                 -- transcribed in this run (false: score from qa_scores)
            error VARCHAR,                  -- a re-take that failed to render
            created_at TIMESTAMP NOT NULL
        )""")


def _m006_lane_timestamps(con) -> None:
    """When each take's engine call ran (inside the device's render lane) and when each take was normalised:
    enough to show from the database alone that two runs shared a device without rendering at once."""
    con.execute("ALTER TABLE renders ADD COLUMN render_started_at TIMESTAMP")
    con.execute("ALTER TABLE renders ADD COLUMN render_ended_at TIMESTAMP")
    con.execute("ALTER TABLE take_levels ADD COLUMN normalise_started_at TIMESTAMP")
    con.execute("ALTER TABLE take_levels ADD COLUMN normalise_ended_at TIMESTAMP")


def _m007_sweeps(con) -> None:
    """Grid sweeps: runs say what kind they are, takes their decode steps (where the engine reports them),
    and each take of a sweep names its grid point and the scores measured on it."""
    con.execute("ALTER TABLE runs ADD COLUMN kind VARCHAR DEFAULT 'render'")  # render, sweep
    con.execute("ALTER TABLE renders ADD COLUMN decode_steps INTEGER")
    con.execute("ALTER TABLE takes ADD COLUMN decode_steps INTEGER")
    con.execute("""
        CREATE TABLE sweep_takes (
            run_id VARCHAR NOT NULL,
            point VARCHAR NOT NULL,         -- the grid point's name, e.g. t0.3_k50_p0.95
            point_params VARCHAR NOT NULL,  -- JSON: the settings the point sets
            chapter INTEGER NOT NULL,
            line INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            seed BIGINT,
            cache_key VARCHAR NOT NULL,     -- renders.cache_key / takes.cache_key
            words INTEGER,                  -- spoken words in the text, as WER counts them
            asr_model VARCHAR,              -- NULL when the sweep ran without ASR
            wer DOUBLE,
            lufs DOUBLE,                    -- the take's integrated loudness as rendered (before normalising)
            render_seconds DOUBLE,          -- the take's own render time, also when this run reused it
            decode_steps INTEGER            -- NULL when the engine does not report them
        )""")


def _m008_qa_rescores(con) -> None:
    """`voicebatch qa RUN_ID`: each re-score of a past run's takes, one row per take, apart from the run's own
    QA attempts (qa_takes)."""
    con.execute("""
        CREATE TABLE qa_rescores (
            rescore_id VARCHAR NOT NULL,    -- one per `voicebatch qa` invocation
            run_id VARCHAR NOT NULL,        -- the run whose takes were scored
            chapter INTEGER NOT NULL,
            line INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            text VARCHAR,
            cache_key VARCHAR NOT NULL,     -- the take
            seed BIGINT,
            asr_model VARCHAR NOT NULL,
            wer_threshold DOUBLE,
            transcript VARCHAR,
            wer DOUBLE,
            seconds_per_word DOUBLE,
            pace_low DOUBLE,                -- the voice's accepted seconds per word at the time
            pace_high DOUBLE,
            duration DOUBLE,
            flagged BOOLEAN,
            reasons VARCHAR,                -- JSON list
            scored BOOLEAN,                 -- transcribed now (false: transcript from qa_scores)
            created_at TIMESTAMP NOT NULL
        )""")


def _m009_overrides_and_workers(con) -> None:
    """A run's overrides (JSON, as given), and which process rendered and normalised each take, with each
    worker's share of the run (Dask workers load their own engines: their load seconds are here)."""
    con.execute("ALTER TABLE runs ADD COLUMN overrides VARCHAR")
    con.execute("ALTER TABLE renders ADD COLUMN worker VARCHAR")
    con.execute("ALTER TABLE take_levels ADD COLUMN worker VARCHAR")
    con.execute("""
        CREATE TABLE run_workers (
            run_id VARCHAR NOT NULL,
            worker VARCHAR NOT NULL,        -- host:pid
            batches INTEGER,
            takes_rendered INTEGER,
            render_seconds DOUBLE,          -- engine calls
            load_seconds DOUBLE,            -- model loads in that process for this run (0: it was warm)
            takes_normalised INTEGER,
            normalise_seconds DOUBLE
        )""")


def _m010_pronunciations(con) -> None:
    """The manifest pronunciations applied to each render: JSON {term: "/phonemes/" or respelling}, NULL when
    none matched its text."""
    con.execute("ALTER TABLE renders ADD COLUMN pronunciations VARCHAR")


def _m011_decode_path_and_predecessor(con) -> None:
    """How the engine decoded each take (Higgs: eager, static or static+compiled; NULL for engines that do not
    say), and a chained take's predecessor: the cache key of the take it was prompted with."""
    con.execute("ALTER TABLE renders ADD COLUMN decode_path VARCHAR")
    con.execute("ALTER TABLE takes ADD COLUMN decode_path VARCHAR")
    con.execute("ALTER TABLE renders ADD COLUMN predecessor VARCHAR")


# Append only; never rename or reorder an applied migration.
MIGRATIONS: list[tuple[str, Callable]] = [
    ("001_runs_and_renders", _m001_runs_and_renders),
    ("002_take_cache", _m002_take_cache),
    ("003_loudness", _m003_loudness),
    ("004_voice_transcripts", _m004_voice_transcripts),
    ("005_take_qa", _m005_take_qa),
    ("006_lane_timestamps", _m006_lane_timestamps),
    ("007_sweeps", _m007_sweeps),
    ("008_qa_rescores", _m008_qa_rescores),
    ("009_overrides_and_workers", _m009_overrides_and_workers),
    ("010_pronunciations", _m010_pronunciations),
    ("011_decode_path_and_predecessor", _m011_decode_path_and_predecessor),
]
