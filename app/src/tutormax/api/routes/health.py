"""GET /health and GET /api/health."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tutormax import __version__
from tutormax.api.deps import Res
from tutormax.domain import Health
from tutormax.services.health import check_health

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency is down (named in the body)"}},
)
@router.get(
    "/api/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency is down (named in the body)"}},
)
async def health(r: Res) -> JSONResponse:
    """Reachability of PostgreSQL and Redis, this instance's version and id; 503 when unhealthy."""
    result = await check_health(r, __version__, r.settings.api_instance_id)
    return JSONResponse(
        result.model_dump(),
        status_code=200 if result.status == "healthy" else 503,
        headers={"Cache-Control": "no-store"},
    )
