"""The ASGI application: ``create_app()`` builds it from the settings.

Run it with ``tutormax-api`` (gunicorn with uvicorn workers), or for development with
``uvicorn --factory tutormax.api.app:create_app``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tutormax import __version__
from tutormax.api import errors
from tutormax.api.observability import ObservabilityMiddleware, metrics_endpoint
from tutormax.api.routes import exports, health, tutors, ws
from tutormax.data.resources import open_resources
from tutormax.logconfig import configure_logging
from tutormax.settings import Settings, load_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; raises SettingsError (naming the setting) on a bad environment."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings, api=True) as resources:
            app.state.resources = resources
            log.info(
                "tutormax %s instance %s ready (replica: %s, redis: %s)",
                __version__,
                settings.api_instance_id,
                "yes" if resources.db.has_replica else "no",
                "sentinel" if settings.redis_sentinels else "url",
            )
            yield

    app = FastAPI(
        title="TutorMax",
        version=__version__,
        description="Tutor performance tracking: tutors, sessions, ratings, metrics, scores, churn risk, exports.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(tutors.router)
    app.include_router(exports.router)
    app.include_router(ws.router)
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.add_middleware(ObservabilityMiddleware, instance_id=settings.api_instance_id, access_log=settings.access_log)
    return app
