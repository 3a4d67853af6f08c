"""Health: is the primary reachable, is Redis reachable; answered within a fixed time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from tutormax.data.resources import Resources
from tutormax.domain import Health

log = logging.getLogger(__name__)


async def _ok(check: Awaitable[object], name: str) -> bool:
    try:
        await check
    except Exception as exc:
        log.warning("health: %s check failed: %s", name, type(exc).__name__)
        return False
    return True


async def check_health(r: Resources, version: str, instance_id: str) -> Health:
    """Check PostgreSQL (primary) and Redis concurrently; a check still running at the deadline fails.

    The deadline is ``HEALTH_TIMEOUT_SECONDS`` (default 0.5 s), so the answer comes within a
    second even when a dependency accepts connections but never replies.
    """
    timeout = r.settings.health_timeout_seconds
    tasks = {
        "database": asyncio.ensure_future(_ok(r.db.ping(timeout), "database")),
        "redis": asyncio.ensure_future(_ok(r.redis.ping(), "redis")),
    }
    await asyncio.wait(tasks.values(), timeout=timeout)
    results: dict[str, bool] = {}
    for name, task in tasks.items():
        if task.done():
            results[name] = task.result()
        else:
            log.warning("health: %s check timed out after %.1f s", name, timeout)
            task.cancel()
            results[name] = False
    healthy = all(results.values())
    return Health(
        status="healthy" if healthy else "unhealthy",
        database="connected" if results["database"] else "disconnected",
        redis="connected" if results["redis"] else "disconnected",
        version=version,
        instance_id=instance_id,
    )
