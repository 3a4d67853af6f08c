"""Redis-backed cache for hot reads, and the write markers behind read-your-own-write.

Cache failures never fail a request: a Redis error is a cache miss (and is logged). Keys live under
``tutormax:cache:`` and expire after ``CACHE_TTL_SECONDS``.

Write markers: after a write the service stores the primary's commit LSN under
``tutormax:lsn:<resource>`` for a few minutes. A later read of that resource, on any instance, asks
the replica to have replayed at least that far, else reads the primary.
"""

from __future__ import annotations

import logging

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


class Cache:
    """JSON-text cache with TTL, plus per-resource write markers."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    @property
    def redis(self) -> Redis:
        """The underlying client (for health checks)."""
        return self._redis

    async def get(self, key: str) -> str | None:
        """The cached text for ``key``, or None on a miss or a Redis error."""
        try:
            value = await self._redis.get(PREFIX + "cache:" + key)
        except CACHE_ERRORS as exc:
            log.warning("cache get failed (%s); treating as a miss", type(exc).__name__)
            return None
        return value if isinstance(value, str) else None

    async def put(self, key: str, value: str, *, overwrite: bool) -> None:
        """Cache ``value``. ``overwrite=False`` (fills after a read) never replaces a fresher entry."""
        try:
            await self._redis.set(PREFIX + "cache:" + key, value, ex=self._ttl, nx=not overwrite)
        except CACHE_ERRORS as exc:
            log.warning("cache put failed (%s)", type(exc).__name__)

    async def invalidate(self, *keys: str) -> None:
        """Drop cached entries (after a write)."""
        if not keys:
            return
        try:
            await self._redis.delete(*(PREFIX + "cache:" + key for key in keys))
        except CACHE_ERRORS as exc:
            log.warning("cache invalidation failed (%s); entries expire within the TTL", type(exc).__name__)

    async def invalidate_prefix(self, prefix: str) -> None:
        """Drop every cached entry whose key starts with ``prefix`` (bounded SCAN, not KEYS)."""
        try:
            batch: list[str] = []
            async for key in self._redis.scan_iter(match=PREFIX + "cache:" + prefix + "*", count=200):
                batch.append(key)
                if len(batch) >= 200:
                    await self._redis.delete(*batch)
                    batch.clear()
            if batch:
                await self._redis.delete(*batch)
        except CACHE_ERRORS as exc:
            log.warning("cache invalidation failed (%s); entries expire within the TTL", type(exc).__name__)

    async def mark_written(self, resource: str, lsn: str) -> None:
        """Remember that ``resource`` was written at ``lsn`` on the primary."""
        try:
            await self._redis.set(PREFIX + "lsn:" + resource, lsn, ex=WRITE_MARKER_TTL_SECONDS)
        except CACHE_ERRORS as exc:
            log.warning("write marker not stored (%s)", type(exc).__name__)

    async def written_lsn(self, resource: str) -> str | None:
        """The LSN of the last recent write to ``resource``, None if none, UNKNOWN_LSN if Redis fails."""
        try:
            value = await self._redis.get(PREFIX + "lsn:" + resource)
        except CACHE_ERRORS as exc:
            log.warning("write marker lookup failed (%s); reading from the primary", type(exc).__name__)
            return UNKNOWN_LSN
        return value if isinstance(value, str) else None

    async def get_field(self, key: str, field: str) -> str | None:
        """One field of a cached hash (a family of entries invalidated together)."""
        try:
            value = await self._redis.hget(PREFIX + "cache:" + key, field)
        except CACHE_ERRORS as exc:
            log.warning("cache get failed (%s); treating as a miss", type(exc).__name__)
            return None
        return value if isinstance(value, str) else None

    async def put_field(self, key: str, field: str, value: str) -> None:
        """Fill one field of a cached hash without replacing a fresher value; the hash expires as a whole."""
        name = PREFIX + "cache:" + key
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(name, field, value)
                pipe.expire(name, self._ttl, nx=True)
                await pipe.execute()
        except CACHE_ERRORS as exc:
            log.warning("cache put failed (%s)", type(exc).__name__)
