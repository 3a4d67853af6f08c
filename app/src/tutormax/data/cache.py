"""Redis-backed cache for hot reads, and the write markers behind read-your-own-write.

Cache failures never fail a request: a Redis error is a cache miss (and is logged). Keys live under
``tutormax:cache:`` and expire after ``CACHE_TTL_SECONDS``.

Write markers: after a write the service stores the primary's commit LSN under
``tutormax:lsn:<resource>`` for a few minutes. A later read of that resource, on any instance, asks
the replica to have replayed at least that far, else reads the primary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "tutormax:"
#: How long a write marker lives; replication lag longer than this is an outage, not lag.
WRITE_MARKER_TTL_SECONDS = 300
#: Returned when Redis cannot say whether a resource was written recently: no replica has
#: replayed this far, so the read goes to the primary (correct, just not offloaded).
UNKNOWN_LSN = "FFFFFFFF/FFFFFFFF"

CACHE_ERRORS = (RedisError, OSError, TimeoutError)
#: After a Redis failure, skip Redis for this long: requests degrade to database reads at once
#: instead of each waiting for its own timeouts. Short, so a failover costs about this much.
BREAKER_SECONDS = 1.0
T = TypeVar("T")


class Cache:
    """JSON-text cache with TTL, plus per-resource write markers."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._skip_until = 0.0

    async def _call(self, what: str, op: Callable[[], Awaitable[T]], fallback: T) -> T:
        if time.monotonic() < self._skip_until:
            return fallback
        try:
            return await op()
        except CACHE_ERRORS as exc:
            log.warning("redis %s failed (%s); skipping redis for %.1f s", what, type(exc).__name__, BREAKER_SECONDS)
            self._skip_until = time.monotonic() + BREAKER_SECONDS
            return fallback

    @property
    def redis(self) -> Redis:
        """The underlying client (for health checks)."""
        return self._redis

    async def get(self, key: str) -> str | None:
        """The cached text for ``key``, or None on a miss or a Redis error."""
        value = await self._call("get", lambda: self._redis.get(PREFIX + "cache:" + key), None)
        return value if isinstance(value, str) else None

    async def put(self, key: str, value: str, *, overwrite: bool) -> None:
        """Cache ``value``. ``overwrite=False`` (fills after a read) never replaces a fresher entry."""
        await self._call(
            "set", lambda: self._redis.set(PREFIX + "cache:" + key, value, ex=self._ttl, nx=not overwrite), None
        )

    async def invalidate(self, *keys: str) -> None:
        """Drop cached entries (after a write); on a Redis error they expire within the TTL."""
        if keys:
            await self._call("delete", lambda: self._redis.delete(*(PREFIX + "cache:" + key for key in keys)), None)

    async def get_field(self, key: str, field: str) -> str | None:
        """One field of a cached hash (a family of entries invalidated together)."""
        value = await self._call("hget", lambda: self._redis.hget(PREFIX + "cache:" + key, field), None)
        return value if isinstance(value, str) else None

    async def put_field(self, key: str, field: str, value: str) -> None:
        """Fill one field of a cached hash without replacing a fresher value; the hash expires as a whole."""
        name = PREFIX + "cache:" + key

        async def fill() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(name, field, value)
                pipe.expire(name, self._ttl, nx=True)
                await pipe.execute()

        await self._call("hsetnx", fill, None)

    async def mark_written(self, resource: str, lsn: str) -> None:
        """Remember that ``resource`` was written at ``lsn`` on the primary."""
        await self._call(
            "set", lambda: self._redis.set(PREFIX + "lsn:" + resource, lsn, ex=WRITE_MARKER_TTL_SECONDS), None
        )

    async def written_lsn(self, resource: str) -> str | None:
        """The LSN of the last recent write to ``resource``; None if none; UNKNOWN_LSN if Redis fails."""
        fallback: str | bytes | None = UNKNOWN_LSN
        value = await self._call("get", lambda: self._redis.get(PREFIX + "lsn:" + resource), fallback)
        return value if isinstance(value, str) else None

    async def publish(self, channel: str, message: str) -> int:
        """Publish on a pub/sub channel; returns the number of receivers (0 on a Redis error)."""
        receivers = await self._call("publish", lambda: self._redis.publish(channel, message), 0)
        return int(receivers)
