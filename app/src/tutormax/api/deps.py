"""Request-scoped access to the process's resources."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from tutormax.data.resources import Resources


def get_resources(request: Request) -> Resources:
    """The Resources opened by the lifespan handler."""
    return cast(Resources, request.app.state.resources)


def connection_resources(conn: HTTPConnection) -> Resources:
    """The same for a WebSocket."""
    return cast(Resources, conn.app.state.resources)


Res = Annotated[Resources, Depends(get_resources)]
