"""The `nightly-catalog` flow: every manifest under a folder rendered incrementally, each as a subflow of
`render-manifest` (the render cache makes an unchanged manifest cost a few database reads)."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.doctor import check_whisper
from flows.render import render_manifest
from tasks.core.errors import UserInputError, VoicebatchError
from tasks.core.settings import get_settings

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def catalog_manifests(folder: Path) -> list[Path]:
    """The manifests directly under `folder`, in name order."""
    if not folder.is_dir():
        raise UserInputError(f"{folder}: no such manifests folder; pass manifests_dir= or create it")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in MANIFEST_SUFFIXES and p.is_file())


def qa_available() -> str | None:
    """None when the configured Whisper model is on this machine; else why QA cannot run, with the fix."""
    check = check_whisper(get_settings())
    if check.status == "ok":
        return None
    return (f"QA is off for this catalog run: Whisper model {get_settings().whisper_model!r} is not on this machine "
            f"and cannot be downloaded offline. Fix: {check.fix}; `voicebatch doctor` checks it")


@flow(name="nightly-catalog", log_prints=True)
def render_catalog(manifests_dir: str = "manifests", engine: str | None = None,
                   output_dir: str | None = None, qa: bool = True) -> list[dict]:
    """Render every manifest under `manifests_dir`, with the ASR check of every take unless `qa` is false
    (or no Whisper model is available offline: then each manifest's own `qa:` decides, with a warning). One
    bad manifest does not stop the others, but fails the catalog run at the end with every problem listed."""
    logger = get_run_logger()
    results, problems = [], []
    missing = qa_available() if qa else None
    if missing:
        logger.warning(missing)
    for manifest in catalog_manifests(Path(manifests_dir)):
        try:
            summary = render_manifest(manifest=str(manifest), engine=engine, output_dir=output_dir,
                                      qa=True if qa and not missing else None)
        except VoicebatchError as e:
            logger.error("%s: %s", manifest, e)
            problems.append(f"{manifest}: {e}")
            continue
        results.append({"manifest": str(manifest), "run_id": summary.run_id, "status": summary.status,
                        "takes_rendered": summary.takes_rendered, "takes_reused": summary.takes_reused,
                        "qa_flagged": sum(bool(r["flagged"]) for r in summary.qa if r["kept"]) if summary.qa else None})
    if problems:
        raise UserInputError(f"{len(problems)} of {len(problems) + len(results)} manifests failed:\n"
                             + "\n".join(f"  - {p}" for p in problems))
    return results
