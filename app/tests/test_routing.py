"""Read/write routing, proved with a real replica whose replay is paused.

While replay is paused the replica is frozen in the past: whatever a read returns tells which
server answered, independently of the X-Read-Source header.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from conftest import create_tutor
from harness import Stack


@contextlib.contextmanager
def replay_paused(stack: Stack) -> Iterator[None]:
    """Replay paused on the replica (resumed, and caught up, even if the test fails)."""
    stack.pg.wait_replayed()
    with stack.pg.admin(stack.pg.replica_port) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        with stack.pg.admin(stack.pg.replica_port) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
        stack.pg.wait_replayed()


@pytest.fixture
def paused_replica(stack: Stack) -> Iterator[None]:
    """Replay paused for the whole test."""
    with replay_paused(stack):
        yield


def _drop_cache(stack: Stack, tutor_id: int, *, marker: bool = False) -> None:
    keys = [f"tutormax:cache:tutor:{tutor_id}"] + ([f"tutormax:lsn:tutor:{tutor_id}"] if marker else [])
    stack.redis.app_client().delete(*keys)


def test_reads_are_served_by_the_replica(api: httpx.Client, stack: Stack) -> None:
    tutor = create_tutor(api, name="Before")
    with replay_paused(stack):
        # Change the row behind the app's back (no write marker): only the primary has the new name.
        with stack.pg.admin(database="tutormax") as conn:
            conn.execute("UPDATE tutors SET name = 'After' WHERE id = %s", (tutor["id"],))
        _drop_cache(stack, tutor["id"], marker=True)

        got = api.get(f"/api/tutors/{tutor['id']}")
        assert got.status_code == 200
        assert got.json()["name"] == "Before"  # the frozen replica answered
        assert got.headers["x-read-source"] == "replica"
    _drop_cache(stack, tutor["id"])
    assert api.get(f"/api/tutors/{tutor['id']}").json()["name"] == "After"


@pytest.mark.usefixtures("paused_replica")
def test_a_write_is_read_back_from_the_primary_on_any_instance_while_the_replica_lags(
    api: httpx.Client, api_b: httpx.Client, stack: Stack
) -> None:
    tutor = create_tutor(api, name="Fresh")  # the replica never sees it while paused
    _drop_cache(stack, tutor["id"])  # force a database read, not the write-through cache

    got = api_b.get(f"/api/tutors/{tutor['id']}")
    assert got.status_code == 200
    assert got.json()["name"] == "Fresh"
    assert got.headers["x-read-source"] == "primary"

    # Lists read the replica and do not wait for it: the new tutor is not listed yet.
    listed = api.get("/api/tutors", params={"search": tutor["email"]})
    assert listed.headers["x-read-source"] == "replica"
    assert listed.json()["total"] == 0

    # An update is read back too.
    assert api.patch(f"/api/tutors/{tutor['id']}", json={"name": "Fresher"}).status_code == 200
    _drop_cache(stack, tutor["id"])
    assert api_b.get(f"/api/tutors/{tutor['id']}").json()["name"] == "Fresher"


def test_once_the_replica_caught_up_reads_go_back_to_it(api: httpx.Client, stack: Stack) -> None:
    tutor = create_tutor(api)
    stack.pg.wait_replayed()
    _drop_cache(stack, tutor["id"])
    got = api.get(f"/api/tutors/{tutor['id']}")
    assert got.status_code == 200
    assert got.headers["x-read-source"] == "replica"


@pytest.mark.usefixtures("paused_replica")
def test_a_row_missing_on_the_replica_is_looked_up_on_the_primary_before_a_404(api: httpx.Client, stack: Stack) -> None:
    tutor = create_tutor(api, name="Marker lost")
    _drop_cache(stack, tutor["id"], marker=True)  # as after a Redis failover that lost the marker
    got = api.get(f"/api/tutors/{tutor['id']}")
    assert got.status_code == 200
    assert got.headers["x-read-source"] == "replica,primary"
