"""WS /ws: live events of the tutors a client subscribes to, from whichever instance produced them.

Protocol (JSON text frames):
client -> ``{"action": "subscribe", "tutor_id": 7}`` / ``{"action": "unsubscribe", "tutor_id": 7}``
server -> ``{"type": "subscribed", "tutor_id": 7}``, then events
``{"type": "rating" | "score" | "session", "tutor_id": 7, "data": {...}, "at": "..."}``,
and ``{"type": "error", "detail": "..."}`` for a bad request. ``/ws?tutor_id=7`` subscribes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tutormax.api.deps import connection_resources
from tutormax.api.observability import WEBSOCKETS
from tutormax.data.events import QUEUE_SIZE, EventHub
from tutormax.data.resources import Resources
from tutormax.domain import MAX_ID
from tutormax.services.errors import NotFoundError
from tutormax.services.tutors import get_tutor

log = logging.getLogger(__name__)
router = APIRouter()

MAX_SUBSCRIPTIONS = 100


class _Client:
    def __init__(self, ws: WebSocket, r: Resources, hub: EventHub) -> None:
        self.ws, self.r, self.hub = ws, r, hub
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.tutors: set[int] = set()

    async def reply(self, payload: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(payload))

    async def handle(self, message: Any) -> None:
        if not isinstance(message, dict) or message.get("action") not in {"subscribe", "unsubscribe"}:
            await self.reply(
                {"type": "error", "detail": 'expected {"action": "subscribe"|"unsubscribe", "tutor_id": N}'}
            )
            return
        tutor_id = message.get("tutor_id")
        if not isinstance(tutor_id, int) or isinstance(tutor_id, bool) or not 1 <= tutor_id <= MAX_ID:
            await self.reply({"type": "error", "detail": "tutor_id must be a positive integer"})
            return
        if message["action"] == "unsubscribe":
            self.hub.unsubscribe(tutor_id, self.outbox)
            self.tutors.discard(tutor_id)
            await self.reply({"type": "unsubscribed", "tutor_id": tutor_id})
            return
        if len(self.tutors) >= MAX_SUBSCRIPTIONS:
            await self.reply({"type": "error", "detail": f"at most {MAX_SUBSCRIPTIONS} subscriptions"})
            return
        try:
            await get_tutor(self.r, tutor_id)
        except NotFoundError as exc:
            await self.reply({"type": "error", "detail": str(exc)})
            return
        await self.hub.subscribe(tutor_id, self.outbox)
        self.tutors.add(tutor_id)
        await self.reply({"type": "subscribed", "tutor_id": tutor_id})

    async def pump(self) -> None:
        while True:
            await self.ws.send_text(await self.outbox.get())

    async def listen(self) -> None:
        while True:
            text = await self.ws.receive_text()
            try:
                message = json.loads(text)
            except ValueError:
                message = None
            await self.handle(message)

    def close(self) -> None:
        for tutor_id in self.tutors:
            self.hub.unsubscribe(tutor_id, self.outbox)


@router.websocket("/ws")
async def websocket_events(ws: WebSocket) -> None:
    """Stream tutor events to the client."""
    r = connection_resources(ws)
    if r.hub is None:
        await ws.close(code=1011)
        return
    # The handshake names the instance, as every HTTP response does (X-Instance-Id), so a client
    # behind the load balancer can tell which instance holds its socket.
    await ws.accept(headers=[(b"x-instance-id", r.settings.api_instance_id.encode("latin-1", "replace"))])
    WEBSOCKETS.inc()
    client = _Client(ws, r, r.hub)
    tasks: list[asyncio.Task[None]] = []
    try:
        initial = ws.query_params.get("tutor_id")
        if initial is not None:
            await client.handle({"action": "subscribe", "tutor_id": int(initial) if initial.isdigit() else initial})
        tasks = [asyncio.create_task(client.pump()), asyncio.create_task(client.listen())]
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect):
                log.info("websocket closed: %s", type(exc).__name__)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        client.close()
        WEBSOCKETS.dec()
