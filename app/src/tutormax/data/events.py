"""Live tutor events over Redis pub/sub, so an event produced on any instance reaches every instance.

``publish_event`` sends one JSON message on ``tutormax:events:tutor:<id>``. ``EventHub`` is the
per-process listener: one pattern subscription (``tutormax:events:tutor:*``) shared by all local
WebSocket clients, each of which gets its own bounded queue. The listener reconnects on any error,
and with Sentinel it also re-subscribes when the Sentinels name a different master than the one it
listens to, so subscribers follow a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from tutormax.data.cache import CACHE_ERRORS, Cache
from tutormax.domain import TutorEvent

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "tutormax:events:tutor:"
#: Events queued for one slow WebSocket client before it is considered gone.
QUEUE_SIZE = 256
#: How often the listener compares its server with the master the Sentinels name.
MASTER_CHECK_SECONDS = 2.0

MasterLookup = Callable[[], Awaitable[tuple[str, int] | None]]


def channel_for(tutor_id: int) -> str:
    """The pub/sub channel of one tutor's events."""
    return f"{CHANNEL_PREFIX}{tutor_id}"


async def publish_event(cache: Cache, event: TutorEvent) -> int:
    """Publish ``event``; returns how many listeners (instances) received it, 0 on a Redis error.

    Live events are best effort: a subscriber that misses one sees the state on its next read.
    """
    return await cache.publish(channel_for(event.tutor_id), event.model_dump_json())


class EventHub:
    """Fans Redis pub/sub messages out to this process's WebSocket subscribers."""

    def __init__(self, redis: Redis, master_lookup: MasterLookup | None = None) -> None:
        """``master_lookup`` (Sentinel only) names the current master, to follow failovers."""
        self._redis = redis
        self._master_lookup = master_lookup
        self._queues: dict[int, set[asyncio.Queue[str]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def subscribe(self, tutor_id: int, queue: asyncio.Queue[str], wait: float = 3.0) -> bool:
        """Deliver ``tutor_id``'s events to ``queue``; True once the listener is live in Redis."""
        self._queues[tutor_id].add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="tutormax-event-hub")
        try:
            await asyncio.wait_for(self.ready.wait(), wait)
        except TimeoutError:
            return False
        return True

    def unsubscribe(self, tutor_id: int, queue: asyncio.Queue[str]) -> None:
        """Stop delivering ``tutor_id``'s events to ``queue``."""
        queues = self._queues.get(tutor_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[tutor_id]

    @property
    def subscriber_count(self) -> int:
        """Local subscriptions (for tests and metrics)."""
        return sum(len(q) for q in self._queues.values())

    async def close(self) -> None:
        """Stop the listener."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *CACHE_ERRORS):
                await self._task
            self._task = None

    def _deliver(self, channel: str, data: str) -> None:
        try:
            tutor_id = int(channel.removeprefix(CHANNEL_PREFIX))
        except ValueError:
            return
        for queue in list(self._queues.get(tutor_id, ())):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                log.warning("dropping an event for a slow subscriber of tutor %s", tutor_id)

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            pubsub: PubSub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                # The subscription is live once Redis confirms it (first message on the connection).
                await pubsub.get_message(ignore_subscribe_messages=False, timeout=2.0)
                server = self._server_of(pubsub)
                self.ready.set()
                delay = 0.05
                await self._pump(pubsub, server)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event listener lost Redis (%s); reconnecting", type(exc).__name__)
            finally:
                self.ready.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _pump(self, pubsub: PubSub, server: tuple[str, int] | None) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + MASTER_CHECK_SECONDS
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None and message.get("type") == "pmessage":
                self._deliver(str(message["channel"]), str(message["data"]))
            if self._master_lookup is not None and loop.time() >= next_check:
                next_check = loop.time() + MASTER_CHECK_SECONDS
                master = await self._master_lookup()
                if master is not None and server is not None and master != server:
                    log.info("Redis master moved to %s:%s; re-subscribing", *master)
                    return

    @staticmethod
    def _server_of(pubsub: PubSub) -> tuple[str, int] | None:
        conn = pubsub.connection
        host, port = getattr(conn, "host", None), getattr(conn, "port", None)
        return (str(host), int(port)) if host is not None and port is not None else None
