"""Map service and dependency errors to HTTP answers: 404, 409, 422 and 503, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError

from tutormax.data.db import UNAVAILABLE_ERRORS
from tutormax.services.errors import ConflictError, InvalidInputError, NotFoundError, UnavailableError

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


def _detail(status: int, message: str, retry_after: bool = False) -> JSONResponse:
    headers = {"Retry-After": "1"} if retry_after else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return _detail(404, str(exc))


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return _detail(409, str(exc))


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    loc = list(exc.loc) if isinstance(exc, InvalidInputError) else ["body"]
    return JSONResponse({"detail": [{"loc": loc, "msg": str(exc), "type": "value_error"}]}, status_code=422)


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return _detail(503, str(exc), retry_after=True)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: database unavailable (%s)", request.method, request.url.path, type(exc).__name__)
    return _detail(503, "the database is unavailable; try again", retry_after=True)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: redis unavailable (%s)", request.method, request.url.path, type(exc).__name__)
    return _detail(503, "redis is unavailable; try again", retry_after=True)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(ConflictError, _conflict)
    app.add_exception_handler(InvalidInputError, _invalid)
    app.add_exception_handler(UnavailableError, _unavailable)
    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _database_down)
    app.add_exception_handler(RedisError, _redis_down)
