"""A clear error, before any flow starts, when PREFECT_API_URL names a Prefect server that does not answer."""
from __future__ import annotations

from tasks.core.errors import VoicebatchError


class PrefectServerDown(VoicebatchError):
    """PREFECT_API_URL points at a server that does not answer."""


def require_api(timeout: float = 5.0) -> None:
    """With PREFECT_API_URL set, its server must answer /health; without it, nothing to check (a temporary
    local server starts with the first flow)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except httpx.HTTPError as e:
        raise PrefectServerDown(f"PREFECT_API_URL={url}: no Prefect server answers there ({type(e).__name__}: {e}); "
                                "start one with `prefect server start`, or unset PREFECT_API_URL to use a temporary "
                                "local server") from None
