"""Drives the cluster scenario's Celery side effect through the API on the API host (stdlib only).

seed N              create N tutors with one session each and mark a third of them inactive
                    (churned): the churn training then has both kinds. Prints the ids as JSON.
export              request a CSV export of the tutors; prints the export as JSON.
wait ID STATUS...   poll the export until its status is one of STATUS (at most 180 s); prints it
                    as JSON with "waited_s" and, when done, "csv_rows" (data rows of the download).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import urllib.request
import uuid

API = "http://127.0.0.1:8000/api"


def call(method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(API + path, data=data, method=method)  # noqa: S310 - loopback URL
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback URL
        return response.status, response.read()


def seed(count: int) -> dict[str, object]:
    run = uuid.uuid4().hex[:8]
    started = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    ids = []
    for n in range(count):
        _, raw = call("POST", "/tutors", {"name": f"Drill {n}", "email": f"drill-{run}-{n}@example.com"})
        tutor = json.loads(raw)
        ids.append(tutor["id"])
        session = {"student_id": 1, "subject": "math", "started_at": started, "duration_minutes": 60}
        call("POST", f"/tutors/{tutor['id']}/sessions", session)
    churned = ids[::3]
    for tutor_id in churned:
        call("PATCH", f"/tutors/{tutor_id}", {"active": False})
    return {"tutors": ids, "churned": churned}


def export() -> dict[str, object]:
    status, raw = call("POST", "/exports", {"kind": "tutors"})
    assert status == 202, status
    return json.loads(raw)


def wait(export_id: str, wanted: list[str]) -> dict[str, object]:
    start = time.monotonic()
    while True:
        _, raw = call("GET", f"/exports/{export_id}")
        found = json.loads(raw)
        if found["status"] in wanted or time.monotonic() - start > 180:
            break
        time.sleep(0.2)
    found["waited_s"] = round(time.monotonic() - start, 2)
    if found["status"] == "done":
        _, csv = call("GET", f"/exports/{export_id}/download")
        found["csv_rows"] = len(csv.decode().splitlines()) - 1
    return found


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "seed":
        result = seed(int(args[0]))
    elif command == "export":
        result = export()
    elif command == "wait":
        result = wait(args[0], args[1:])
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
