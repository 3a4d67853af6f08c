"""Steady mixed load against the local cluster's load balancer, recording every response.

    python benchmarks/loadgen.py [--url http://127.0.0.1:8080] [--rate 120] [--duration 60]
                                 [--events FILE] [--name loadgen]

Open loop: request i starts at t0 + i/rate whatever happened to the earlier ones, so a stall shows
up as latency (and, past --max-in-flight, as refused sends counted as errors), never as a quietly
lower rate. The mix (--mix) reads and writes the TutorMax API: tutor reads, lists, metrics,
and POSTs that create tutors, record sessions and rate them. Each request opens its own
connection (HTTP/1.1, `Connection: close`), so every error is the server's or the network's,
never a stale idle connection of the client's. Nothing is retried. The HTTP client is a few lines
of asyncio rather than a library: on a 2-core machine shared with the cluster it is under test,
the client's own CPU time matters.

Bounded: loopback URLs (the published ports of the local cluster or a Molecule scenario) or an
address on one of the project's own Docker networks (a scenario's floating address), at most
MAX_RATE requests/s and MAX_DURATION seconds, and it always stops by itself. nginx's rate limit
exempts the address these requests arrive from (the Docker network's gateway, allowlisted
by inventories/local/group_vars/lb/nginx_lb.yml); without that, POSTs would get 429s.

Writes benchmarks/results/<name>.json (summary: counts by status and error, p50/p90/p99 overall,
per kind, per instance and per time window), <name>.requests.jsonl.gz (every request) and
<name>.png (latency over time, requests per second per instance, and the rolling update's events
from --events: drain to return of each API host, worker restarts, failures).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import ipaddress
import json
import math
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MAX_RATE = 2000.0
MAX_DURATION = 3600.0

#: Request kinds and their default weights (about 45% writes). `health` (GET /health) is not in the
#: default mix: it is the load balancer's and the monitoring's, not the clients', and it answers 503
#: by design whenever a dependency takes longer than HEALTH_TIMEOUT_SECONDS (0.5 s) to answer, which
#: on a 2-core machine running eleven hosts, Ansible and the load happens in CPU bursts, rollout or not.
KINDS = ("get_tutor", "list_tutors", "health", "metrics", "create_tutor", "record_session", "rate_session")
DEFAULT_MIX: dict[str, float] = {
    "get_tutor": 33,
    "list_tutors": 15,
    "metrics": 7,
    "create_tutor": 15,
    "record_session": 18,
    "rate_session": 12,
}
SUBJECTS = ["math", "physics", "chemistry", "english", "history", "biology"]


class HTTPError(Exception):
    """A request that got no HTTP answer."""


class ConnectError(HTTPError):
    """The connection could not be opened."""


class ReadError(HTTPError):
    """The connection broke, or closed, before a complete answer."""


@dataclass
class Record:
    """One request: when it was due and sent (epoch seconds), how long it took, what came back."""

    t: float
    kind: str
    method: str
    status: int
    latency_ms: float
    error: str = ""
    instance: str = ""
    #: The start of the body of a non-2xx answer (the API names its reason there).
    detail: str = ""
    #: The Retry-After header of a non-2xx answer (the API's 503 carries one).
    retry_after: str = ""
    #: What a 201 answer created, as "table:id" (an acknowledged write, to look for after a fault).
    created: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class LoadResult:
    url: str
    rate: float
    started: float
    stopped: float
    records: list[Record] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)


def project_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets of the project's own Docker networks: those the scenarios create (label
    owner=molecule, molecule/shared/containers.py) and the local cluster's (named tutormax-*)."""
    ids: set[str] = set()
    for filters in (["--filter", "label=owner=molecule"], ["--filter", "name=^tutormax-"]):
        listed = subprocess.run(  # noqa: S603 - fixed arguments
            ["docker", "network", "ls", "--quiet", *filters],  # noqa: S607 - the Docker CLI on PATH
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        ids |= set(listed.stdout.split()) if listed.returncode == 0 else set()
    if not ids:
        return []
    inspected = subprocess.run(  # noqa: S603 - fixed arguments and Docker's own ids
        ["docker", "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *sorted(ids)],  # noqa: S607
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return [ipaddress.ip_network(s) for s in inspected.stdout.split()] if inspected.returncode == 0 else []


def check_loopback(url: str) -> None:
    """Refuse any target but this machine's loopback and the project's own Docker networks."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise SystemExit(f"loadgen: cannot resolve {host!r}: {exc}") from None
    if addresses and all(a.is_loopback for a in addresses):
        return
    networks = project_networks() if addresses else []
    if not addresses or not all(any(a in n for n in networks) for a in addresses):
        raise SystemExit(
            f"loadgen: {url} is neither a loopback address nor on one of the project's Docker networks; "
            "load goes to 127.0.0.1 or the project's own containers only"
        )


def parse_mix(text: str | None) -> dict[str, float]:
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in KINDS:
            raise SystemExit(f"loadgen: unknown kind {name!r} in --mix (known: {', '.join(KINDS)})")
        mix[name.strip()] = float(weight or 1)
    return mix


def new_tutor(rng: random.Random) -> dict[str, Any]:
    """The body of a POST /api/tutors (a unique e-mail address every time)."""
    return {
        "name": f"Loadgen {rng.randint(1, 10**6)}",
        "email": f"loadgen-{uuid.uuid4().hex}@example.test",
        "subjects": rng.sample(SUBJECTS, 2),
        "hourly_rate": float(rng.randint(15, 90)),
    }


def created_table(path: str) -> str:
    """The table a POST to ``path`` writes its row to (the app's schema)."""
    if path.endswith("/sessions"):
        return "tutoring_sessions"
    if path.endswith("/rating"):
        return "ratings"
    return "tutors"


class LoadGenerator:
    """Open-loop mixed load in its own thread and event loop (start/stop from synchronous code)."""

    def __init__(
        self,
        url: str,
        rate: float,
        *,
        mix: dict[str, float] | None = None,
        max_in_flight: int = 1000,
        timeout: float = 10.0,
        seed: int = 1,
    ) -> None:
        check_loopback(url)
        if not 0 < rate <= MAX_RATE:
            raise SystemExit(f"loadgen: rate must be in (0, {MAX_RATE}]")
        self.url = url.rstrip("/")
        self.rate = rate
        self.mix = mix or dict(DEFAULT_MIX)
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.host_header = parts.netloc
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.random = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.tutors: list[int] = []
        self.sessions: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.result = LoadResult(url=self.url, rate=rate, started=0.0, stopped=0.0)

    # ------------------------------------------------------------------ public, synchronous
    def start(self, max_duration: float) -> None:
        """Start sending; stops by itself after ``max_duration`` seconds at the latest."""
        max_duration = min(max_duration, MAX_DURATION)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(max_duration)), daemon=True)
        self._thread.start()
        while not self.result.started and self._thread.is_alive():
            time.sleep(0.05)

    def stop(self) -> LoadResult:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 30)
        return self.result

    def run(self, duration: float) -> LoadResult:
        self.start(duration)
        if self._thread is not None:
            self._thread.join(duration + self.timeout + 30)
        return self.stop()

    # ------------------------------------------------------------------ the loop
    async def _main(self, max_duration: float) -> None:
        await self._setup()
        kinds = list(self.mix)
        weights = [self.mix[k] for k in kinds]
        in_flight: set[asyncio.Task[None]] = set()
        t0 = time.time()
        self.result.started = t0
        i = 0
        while not self._stop.is_set():
            due = t0 + i / self.rate
            if due - t0 > max_duration:
                break
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            kind = self.random.choices(kinds, weights)[0]
            if len(in_flight) >= self.max_in_flight:
                self.result.records.append(Record(due, kind, "-", 0, 0.0, "client: too many in flight"))
            else:
                task = asyncio.create_task(self._one(kind, due))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            i += 1
        self.result.stopped = time.time()
        if in_flight:
            await asyncio.wait(in_flight, timeout=self.timeout + 5)

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.1 exchange on a new connection: status, headers (lower-case names), body."""
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host_header}\r\nConnection: close\r\nAccept: application/json\r\n"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise ConnectError(str(exc)) from None
        try:
            writer.write(head.encode() + b"\r\n" + payload)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise ReadError("connection closed before the status line")
            status = int(status_line.split()[1])
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                data = await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                data = b""
                while size := int((await reader.readline()).split(b";")[0] or b"0", 16):
                    data += await reader.readexactly(size)
                    await reader.readline()
                await reader.readline()
            else:
                data = await reader.read()
            return status, headers, data
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            raise ReadError(f"{type(exc).__name__}: {exc}") from None
        finally:
            writer.close()

    async def _setup(self) -> None:
        """Known tutors to read and write against (not recorded: they happen before the clock starts).
        A mix of health checks only needs none (and works in front of a stand-in API)."""
        if set(self.mix) <= {"health"}:
            return
        created = 0
        try:
            status, _, data = await asyncio.wait_for(self.request("GET", "/api/tutors?limit=100"), self.timeout)
            if status == 200:
                self.tutors = [item["id"] for item in json.loads(data).get("items", [])]
            while len(self.tutors) < 20 and created < 40:
                created += 1
                status, _, data = await asyncio.wait_for(
                    self.request("POST", "/api/tutors", self._new_tutor()), self.timeout
                )
                if status == 201:
                    self.tutors.append(json.loads(data)["id"])
        except (HTTPError, TimeoutError) as exc:
            raise SystemExit(f"loadgen: {self.url} does not answer ({type(exc).__name__}: {exc})") from None
        if not self.tutors:
            raise SystemExit(f"loadgen: could not read or create tutors at {self.url}")
        self.result.setup = {"known_tutors": len(self.tutors), "created_at_setup": created}

    def _new_tutor(self) -> dict[str, Any]:
        return new_tutor(self.random)

    def _request(self, kind: str) -> tuple[str, str, dict[str, Any] | None]:
        """Method, path and body of a request of ``kind`` (a rating needs a session recorded first)."""
        if kind == "health":
            return "GET", "/health", None
        tutor = self.random.choice(self.tutors)
        if kind == "get_tutor":
            return "GET", f"/api/tutors/{tutor}", None
        if kind == "list_tutors":
            return "GET", f"/api/tutors?limit=20&offset={self.random.randint(0, 40)}", None
        if kind == "metrics":
            return "GET", f"/api/tutors/{tutor}/metrics", None
        if kind == "create_tutor":
            return "POST", "/api/tutors", self._new_tutor()
        if kind == "record_session":
            started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=self.random.randint(60, 600))
            body = {
                "student_id": self.random.randint(1, 5000),
                "subject": self.random.choice(SUBJECTS),
                "started_at": started.isoformat(),
                "duration_minutes": self.random.choice([30, 45, 60, 90]),
                "status": "completed",
            }
            return "POST", f"/api/tutors/{tutor}/sessions", body
        if not self.sessions:
            return self._request("record_session")
        session = self.sessions.pop(self.random.randrange(len(self.sessions)))
        return "POST", f"/api/sessions/{session}/rating", {"score": self.random.randint(1, 5)}

    async def _one(self, kind: str, due: float) -> None:
        method, path, body = self._request(kind)
        start = time.perf_counter()
        status, error, instance, detail, retry_after, created = 0, "", "", "", "", ""
        try:
            status, headers, data = await asyncio.wait_for(self.request(method, path, body), self.timeout)
            instance = headers.get("x-instance-id", "")
            if not 200 <= status < 300:
                detail = data[:200].decode(errors="replace")
                retry_after = headers.get("retry-after", "")
            if status == 201:
                new_id = int(json.loads(data)["id"])
                created = f"{created_table(path)}:{new_id}"
            if status == 201 and kind == "create_tutor":
                self.tutors.append(new_id)
            elif status == 201 and path.endswith("/sessions"):
                self.sessions.append(new_id)
        except TimeoutError:
            error = "timeout: no complete answer in time"
        except HTTPError as exc:
            error = f"{type(exc).__name__}: {str(exc)[:120]}"
        latency = (time.perf_counter() - start) * 1000
        self.result.records.append(
            Record(due, kind, method, status, round(latency, 2), error, instance, detail, retry_after, created)
        )


# ---------------------------------------------------------------------------------------- results
def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def stats(records: Iterable[Record]) -> dict[str, Any]:
    records = list(records)
    latencies = [r.latency_ms for r in records if r.status]
    span = (max(r.t for r in records) - min(r.t for r in records)) if len(records) > 1 else 0.0
    by_status = Counter(str(r.status) if r.status else "error" for r in records)
    return {
        "requests": len(records),
        "ok_2xx": sum(r.ok for r in records),
        "non_2xx": sum(1 for r in records if r.status and not r.ok),
        "errors": sum(1 for r in records if not r.status),
        "failed": sum(1 for r in records if not r.ok),
        "by_status": dict(sorted(by_status.items())),
        "by_error": dict(Counter(r.error.split(":")[0] for r in records if r.error)),
        "writes": sum(1 for r in records if r.method == "POST"),
        "rate_per_s": round(len(records) / span, 1) if span else None,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
    }


def summarize(result: LoadResult, windows: Sequence[tuple[str, float, float]] = ()) -> dict[str, Any]:
    """Counts and percentiles overall, per kind, per instance and per window (name, from, to)."""
    records = result.records
    by_kind: dict[str, list[Record]] = defaultdict(list)
    by_instance: Counter[str] = Counter()
    for r in records:
        by_kind[r.kind].append(r)
        by_instance[r.instance or "-"] += 1
    return {
        "url": result.url,
        "target_rate_per_s": result.rate,
        "started": result.started,
        "stopped": result.stopped,
        "duration_s": round(result.stopped - result.started, 1),
        "setup": result.setup,
        "overall": stats(records),
        "windows": {
            name: stats(r for r in records if start <= r.t < end)
            for name, start, end in windows
            if any(start <= r.t < end for r in records)
        },
        "by_kind": {kind: stats(rs) for kind, rs in sorted(by_kind.items())},
        "by_instance": dict(sorted(by_instance.items())),
        "failures": [asdict(r) for r in records if not r.ok][:200],
    }


def read_events(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return sorted(events, key=lambda e: e.get("t", 0))


def host_spans(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each API host's time out of the pool: from its drain to its return (or to its failure)."""
    spans: list[dict[str, Any]] = []
    open_spans: dict[str, dict[str, Any]] = {}
    for e in events:
        host, kind = e.get("host", ""), e.get("event", "")
        if kind == "drain":
            open_spans[host] = {"host": host, "version": e.get("version"), "drain": e["t"]}
        elif kind in ("drained", "healthy") and host in open_spans:
            open_spans[host][kind] = e["t"]
        elif kind in ("returned", "failed") and host in open_spans:
            span = open_spans.pop(host)
            span["end"], span["outcome"] = e["t"], kind
            span["seconds"] = round(e["t"] - span["drain"], 1)
            spans.append(span)
    for span in open_spans.values():
        span["outcome"] = "open"
        spans.append(span)
    return spans


def instance_gaps(records: Sequence[Record], spans: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per drained host: the longest time without a response from it around its span (measured out of service)."""
    gaps: dict[str, float] = {}
    for span in spans:
        start, end = span["drain"] - 5, span.get("end", span["drain"]) + 30
        times = sorted(r.t for r in records if r.instance == span["host"] and start <= r.t <= end)
        if len(times) > 1:
            gaps[span["host"]] = round(max(b - a for a, b in pairwise(times)), 1)
    return gaps


def write_results(
    name: str, result: LoadResult, summary: dict[str, Any], events: Sequence[dict[str, Any]], title: str = ""
) -> dict[str, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": RESULTS / f"{name}.json",
        "requests": RESULTS / f"{name}.requests.jsonl.gz",
        "png": RESULTS / f"{name}.png",
    }
    summary = dict(summary, events=list(events), host_spans=host_spans(events))
    paths["json"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    with gzip.open(paths["requests"], "wt") as out:
        for r in result.records:
            out.write(json.dumps(asdict(r)) + "\n")
    plot(result, events, paths["png"], title or name, summary)
    return paths


def plot(result: LoadResult, events: Sequence[dict[str, Any]], path: Path, title: str, summary: dict[str, Any]) -> None:
    """Latency of every request over time, requests/s per instance, the rollout's events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = sorted(result.records, key=lambda r: r.t)
    if not records:
        return
    t0 = result.started or records[0].t
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(14, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ok = [r for r in records if r.ok]
    bad = [r for r in records if not r.ok]
    ax.scatter([r.t - t0 for r in ok], [max(r.latency_ms, 0.1) for r in ok], s=2, alpha=0.35, color="tab:blue",
               label=f"2xx ({len(ok)})", rasterized=True)  # fmt: skip
    if bad:
        ax.scatter([r.t - t0 for r in bad], [max(r.latency_ms, 0.1) for r in bad], s=18, marker="x",
                   color="red", label=f"failed ({len(bad)})")  # fmt: skip
    # Rolling p50/p99 per second.
    buckets: dict[int, list[float]] = defaultdict(list)
    for r in ok:
        buckets[int(r.t - t0)].append(r.latency_ms)
    seconds = sorted(buckets)
    ax.plot(seconds, [percentile(buckets[s], 50) for s in seconds], color="black", lw=1, label="p50 per second")
    ax.plot(seconds, [percentile(buckets[s], 99) for s in seconds], color="darkorange", lw=1, label="p99 per second")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log)")
    # Requests per second per instance.
    per_instance: dict[str, Counter[int]] = defaultdict(Counter)
    for r in records:
        per_instance[r.instance or ("failed" if not r.ok else "?")][int(r.t - t0)] += 1
    last = int(records[-1].t - t0) + 1
    for instance in sorted(per_instance):
        counts = per_instance[instance]
        bx.plot(range(last), [counts.get(s, 0) for s in range(last)], lw=1, label=instance)
    bx.set_ylabel("responses/s by instance")
    bx.set_xlabel(f"seconds since the load started ({dt.datetime.fromtimestamp(t0, dt.UTC):%Y-%m-%d %H:%M:%S} UTC)")
    # The rollout: each API host out of the pool, worker restarts, failures, start and end.
    colors = plt.get_cmap("tab10")
    for i, span in enumerate(host_spans(events)):
        end = span.get("end", records[-1].t)
        color = colors(i % 10)
        for axis in (ax, bx):
            axis.axvspan(span["drain"] - t0, end - t0, color=color, alpha=0.12)
        label = f"{span['host']} out of pool {span.get('seconds', '?')} s"
        if span["outcome"] != "returned":
            label += f" ({span['outcome']})"
        ax.text(span["drain"] - t0, 1.01, label, transform=ax.get_xaxis_transform(), fontsize=7, rotation=20,
                color=color, va="bottom")  # fmt: skip
    for e in events:
        kind, x = e.get("event"), e.get("t", t0) - t0
        if kind in ("worker_stop", "worker_back"):
            ls, color = ("--", "purple") if kind == "worker_stop" else (":", "purple")
            for axis in (ax, bx):
                axis.axvline(x, ls=ls, color=color, lw=0.8)
            ax.text(x, 0.02, f"{e.get('host')} {kind}", transform=ax.get_xaxis_transform(), fontsize=6,
                    rotation=90, color=color, va="bottom")  # fmt: skip
        elif kind == "failed":
            for axis in (ax, bx):
                axis.axvline(x, color="red", lw=1.2)
        elif kind in ("start", "done"):
            for axis in (ax, bx):
                axis.axvline(x, color="gray", lw=1)
            ax.text(x, 0.5, f"playbook {kind}", transform=ax.get_xaxis_transform(), fontsize=7, rotation=90,
                    color="gray")  # fmt: skip
    overall = summary.get("overall", {})
    during = summary.get("windows", {}).get("during", {})
    before = summary.get("windows", {}).get("before", {})
    subtitle = (
        f"{overall.get('requests')} requests, {overall.get('failed')} failed "
        f"({overall.get('non_2xx')} non-2xx, {overall.get('errors')} errors); p99 before "
        f"{before.get('p99_ms', '-')} ms, during {during.get('p99_ms', '-')} ms; target {result.rate:g}/s"
    )
    fig.suptitle(f"{title}\n{subtitle}", fontsize=10)
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    bx.legend(loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(summary: dict[str, Any]) -> None:
    def line(name: str, s: dict[str, Any]) -> str:
        return (
            f"{name:<16} {s['requests']:>7} req  {s['failed']:>4} failed ({s['non_2xx']} non-2xx, "
            f"{s['errors']} errors)  p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms  max {s['max_ms']} ms"
        )

    print(line("overall", summary["overall"]))
    for name, s in summary["windows"].items():
        print(line(name, s))
    print("by status:", summary["overall"]["by_status"], " by instance:", summary["by_instance"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="load balancer URL (loopback only)")
    parser.add_argument("--rate", type=float, default=110.0, help="requests per second (open loop)")
    parser.add_argument("--duration", type=float, default=30.0, help=f"seconds (at most {MAX_DURATION:g})")
    parser.add_argument("--mix", help=f"kind=weight,... (kinds: {', '.join(KINDS)})")
    parser.add_argument("--max-in-flight", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--events", type=Path, help="rolling_update events file (JSON lines) to mark on the plot")
    parser.add_argument("--name", default="loadgen", help="result file name under benchmarks/results/")
    args = parser.parse_args(argv)
    generator = LoadGenerator(
        args.url, args.rate, mix=parse_mix(args.mix),
        max_in_flight=args.max_in_flight, timeout=args.timeout,
    )  # fmt: skip
    result = generator.run(args.duration)
    summary = summarize(result)
    paths = write_results(args.name, result, summary, read_events(args.events))
    print_summary(summary)
    print("wrote", ", ".join(str(p) for p in paths.values()))
    return 0 if summary["overall"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
