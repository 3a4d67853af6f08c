"""Build every data-access object from the settings, and close them again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

from redis.asyncio import Redis

from tutormax.data.cache import Cache
from tutormax.data.db import PRIMARY_READ_POOL, Database
from tutormax.data.events import EventHub
from tutormax.data.mailer import Mailer
from tutormax.data.redis_client import create_redis, current_master
from tutormax.data.taskqueue import TaskQueue, create_celery
from tutormax.settings import Settings


@dataclass
class Resources:
    """What the services use: databases, cache, event bus, task queue, mailer."""

    settings: Settings
    db: Database
    redis: Redis
    cache: Cache
    mailer: Mailer
    queue: TaskQueue | None = None
    hub: EventHub | None = None
    _extra_redis: list[Redis] = field(default_factory=list)

    async def aclose(self) -> None:
        """Close everything (in reverse order of dependency)."""
        if self.hub is not None:
            await self.hub.close()
        if self.queue is not None:
            self.queue.close()
        for client in (self.redis, *self._extra_redis):
            await client.aclose()
        await self.db.close()


@asynccontextmanager
async def open_resources(settings: Settings, *, api: bool) -> AsyncIterator[Resources]:
    """Resources for an API process (``api=True``: pools sized by settings, queue, event hub) or a task."""
    db = Database(
        settings.primary_dsn,
        settings.replica_dsn,
        min_size=settings.database_pool_min_size if api else 0,
        max_size=settings.database_pool_max_size if api else 2,
        timeout=settings.database_pool_timeout,
        connect_timeout=settings.database_connect_timeout,
        statement_timeout_ms=settings.database_statement_timeout_ms,
        application_name=f"tutormax-{'api' if api else 'worker'}-{settings.api_instance_id}",
        # A task's reads and writes take turns; the API's reads must not queue behind its writes.
        primary_read_pool=PRIMARY_READ_POOL if api else 0,
    )
    redis = create_redis(settings)
    resources = Resources(
        settings=settings, db=db, redis=redis, cache=Cache(redis, settings.cache_ttl_seconds), mailer=Mailer(settings)
    )
    if api:
        resources.queue = TaskQueue(create_celery(settings))
        listener = create_redis(settings, socket_timeout=5.0)
        resources._extra_redis.append(listener)
        lookup = partial(current_master, listener) if settings.redis_sentinels else None
        resources.hub = EventHub(listener, lookup)
    await db.open()
    try:
        yield resources
    finally:
        await resources.aclose()
