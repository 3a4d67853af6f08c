"""Map service and dependency errors to HTTP answers: 404, 409, 422 and 503, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from tutormax.data.db import UNAVAILABLE_ERRORS, unavailable_reason
from tutormax.services.errors import ConflictError, NotFoundError, UnavailableError

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    """Body of 404, 409 and 503 answers."""

    detail: str


#: OpenAPI documentation of the error answers, for ``responses=`` on routes.
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorDetail, "description": "Unknown id"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorDetail, "description": "Conflicts with the current state"}
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorDetail, "description": "A dependency is unavailable"}
}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _detail(status: int, message: str, retry_after: bool = False) -> JSONResponse:
    headers = {"Retry-After": "1"} if retry_after else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return _detail(404, str(exc))


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return _detail(409, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        # Starlette's Allow header names the methods of the first route with this path only:
        # ask every route which methods it takes on this path.
        allowed = {
            method
            for method in _METHODS
            if any(
                route.matches({**request.scope, "method": method})[0] == Match.FULL
                for route in request.app.router.routes
            )
        }
        return JSONResponse(
            {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(sorted(allowed))}
        )
    if exc.status_code == 400:
        # A body that is not JSON at all: invalid input like any other, with the reason.
        return JSONResponse(
            {"detail": [{"loc": ["body"], "msg": str(exc.detail), "type": "json_invalid"}]}, status_code=422
        )
    return await http_exception_handler(request, exc)


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return _detail(503, str(exc), retry_after=True)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    reason = unavailable_reason(exc)
    log.warning("%s %s: database unavailable (%s: %s)", request.method, request.url.path, type(exc).__name__, reason)
    return _detail(503, f"the database is unavailable ({reason}); try again", retry_after=True)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: redis unavailable (%s)", request.method, request.url.path, type(exc).__name__)
    return _detail(503, "redis is unavailable; try again", retry_after=True)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(ConflictError, _conflict)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(UnavailableError, _unavailable)
    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _database_down)
    app.add_exception_handler(RedisError, _redis_down)
