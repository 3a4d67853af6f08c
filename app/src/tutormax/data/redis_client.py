"""Redis connections: through Sentinel (production) or to one server (``REDIS_URL``).

With Sentinel every new connection asks the Sentinels for the current master, and a connection that
fails or answers ``READONLY`` (a demoted master) is dropped; the retry policy below then reconnects,
which re-resolves the master. That is how the cache, the pub/sub listener and the health check find
a newly promoted master within a fraction of a second of the promotion.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tutormax.settings import Settings

#: Errors after which a command is retried on a fresh connection (which re-resolves the master).
RETRY_ON = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)


def _retry() -> Retry:
    # 3 retries, 20 ms doubling to 250 ms: rides through a short blip
    # without making a request wait seconds when Redis is really gone.
    return Retry(ExponentialBackoff(cap=0.25, base=0.02), retries=3, supported_errors=RETRY_ON)


def _common_kwargs(settings: Settings, timeout: float | None) -> dict[str, Any]:
    return {
        "socket_timeout": timeout if timeout is not None else settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_socket_timeout,
        "retry": _retry(),
        "health_check_interval": 15,
        "decode_responses": True,
        "client_name": f"tutormax-{settings.api_instance_id}"[:60].replace(" ", "_"),
    }


def create_redis(settings: Settings, *, socket_timeout: float | None = None) -> Redis:
    """A client for the current Redis master.

    ``socket_timeout`` overrides ``REDIS_SOCKET_TIMEOUT`` (pub/sub listeners pass None-blocking
    reads their own timeout).
    """
    kwargs = _common_kwargs(settings, socket_timeout)
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    if settings.redis_sentinels:
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": settings.redis_socket_timeout,
            "socket_connect_timeout": settings.redis_socket_timeout,
        }
        if settings.redis_sentinel_password is not None:
            sentinel_kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [(s.host, s.port) for s in settings.sentinels],
            sentinel_kwargs=sentinel_kwargs,
            db=settings.redis_db,
            username=settings.redis_username,
            password=password,
            **kwargs,
        )
        client: Redis = sentinel.master_for(settings.redis_master_name, **kwargs)
        return client
    assert settings.redis_url is not None
    extra: dict[str, Any] = {}
    if settings.redis_username:
        extra["username"] = settings.redis_username
    if password is not None:
        extra["password"] = password
    # With REDIS_URL the database number is the URL's path (REDIS_DB applies to Sentinel only).
    return Redis.from_url(settings.redis_url.get_secret_value(), **kwargs, **extra)


async def current_master(redis: Redis) -> tuple[str, int] | None:
    """The master the Sentinels name now, or None without Sentinel (or when they cannot say)."""
    pool = redis.connection_pool
    manager = getattr(pool, "sentinel_manager", None)
    if manager is None:
        return None
    try:
        host, port = await manager.discover_master(pool.service_name)  # type: ignore[attr-defined]
    except Exception:
        return None
    return str(host), int(port)
