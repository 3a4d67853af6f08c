"""The monitoring dashboard (roles/monitoring/files/dashboard/) in the system's headless Chromium.

A stand-in server on loopback serves the page under a path prefix (/monitor/, so only relative API
addresses work) with the production Content-Security-Policy, and a fake Prometheus HTTP API beside it
that answers every query the page sends with plausible series (and refuses queries it does not know,
and ranges other than the last 30 minutes at 15 s). browser_check renders the page and reads its DOM:
every panel must be drawn, without a CSP violation. Negative runs prove the check can fail: an API
without data leaves the panels "empty", an API answering 500 leaves them "error", and the page with an
inline style and script added reports the browser's CSP violations.

The project's CI installs chromium (scripts/ensure-host-packages.sh): a missing browser fails here.
"""

from __future__ import annotations

import json
import math
import mimetypes
import shutil
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from browser_check import (
    PANELS,
    check_dashboard,
    check_png,
    find_chromium,
    parse_dashboard,
    png_problems,
    read_png,
    render,
)
from conftest import REPO, serving

DASHBOARD = REPO / "roles" / "monitoring" / "files" / "dashboard"
SCREENSHOT = REPO / ".cache" / "screenshots" / "dashboard-unit.png"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'"
PREFIX = "/monitor/"

API = ["cluster-api1", "cluster-api2"]
PG = ["cluster-pg1", "cluster-pg2", "cluster-pg3"]
REPLICAS = PG[1:]
REDIS = ["cluster-redis1", "cluster-redis2"]
WORKERS = ["cluster-worker1", "cluster-worker2"]
LB = ["cluster-lb1", "cluster-lb2"]
ALL_HOSTS = [*LB, *API, *PG, *REDIS, *WORKERS, "cluster-backup", "cluster-monitoring"]

Value = Callable[[float, int], float]


def wave(base: float, amplitude: float, period: float = 600.0, spread: float = 0.25) -> Value:
    """A smooth value per series: ``base`` (``spread`` more for each further series) plus a sine of
    ``amplitude``, shifted for each series."""
    return lambda t, i: base * (1 + spread * (i % 4)) + amplitude * math.sin(t / period + i * 1.3)


def tasks(t: float, i: int) -> float:
    """Celery tasks/s of the states failed, retried, succeeded."""
    return [0.05, 0.3, 6.0][i] * (1 + 0.4 * math.sin(t / 240 + i))


# The fake Prometheus: the first rule whose text occurs in the query answers it, one series per label
# value. More specific texts come first (the hit rate mentions redis; the replication lag, patroni).
RULES: list[tuple[str, str | None, list[str], Value]] = [
    ('status=~"5.."', "host", API, wave(0.2, 0.15, 200)),
    ("tutormax_http_request_duration_seconds_bucket", "host", API, wave(0.08, 0.03)),
    ("tutormax_http_requests_total", "host", API, wave(40, 15)),
    ("patroni_xlog_replayed_location", "host", REPLICAS, lambda t, i: 40000 + 30000 * abs(math.sin(t / 180 + i))),
    ("pg_settings_max_connections", "host", PG, lambda t, i: 100),
    ("pg_stat_activity_count", "host", PG, wave(14, 5)),
    ("tutormax_slow_queries_running", "host", PG, lambda t, i: float(int(t / 240 + i) % 3 == 0)),
    ("redis_key_size", "key", ["celery"], lambda t, i: abs(25 * math.sin(t / 300))),
    ("redis_keyspace_hits_total", "host", REDIS, wave(0.9, 0.03, spread=0.05)),
    ("redis_memory_max_bytes", "host", REDIS, lambda t, i: 6 * 2**20),
    ("redis_memory_used_bytes", "host", REDIS, wave(3 * 2**20, 2**19)),
    ("redis_connected_clients", "host", REDIS, wave(18, 4)),
    ('count(up{job="celery"} == 1)', None, [""], lambda t, i: 4 - float(int(t / 420) % 4 == 0)),
    ('count(up{job="celery"})', None, [""], lambda t, i: 4),
    ('up{job="celery"}', "host", WORKERS, lambda t, i: 2 - float(i == 1 and int(t / 420) % 4 == 0)),
    ("tutormax_celery_tasks_total", "state", ["failed", "retried", "succeeded"], tasks),
    ("node_cpu_seconds_total", "host", ALL_HOSTS, wave(12, 8, 300, spread=0.5)),
    ("node_memory_MemAvailable_bytes", "host", ALL_HOSTS, wave(30, 6, 900, spread=0.4)),
]
JOBS = {
    "node": (ALL_HOSTS, 9100),
    "api": (API, 8000),
    "postgres": (PG, 9187),
    "patroni": (PG, 8008),
    "etcd": (PG, 2379),
    "redis": (REDIS, 9121),
    "sentinel": (REDIS, 9121),
    "nginx": (LB, 9113),
    "probe": (LB, 9115),
    "prometheus": (["cluster-monitoring"], 9090),
    "alertmanager": (["cluster-monitoring"], 9093),
}
DOWN = ("celery", "cluster-worker2:9809")


def targets() -> list[dict[str, str]]:
    """Every scrape target of the design's jobs; two Celery workers per worker host."""
    found = [{"job": job, "host": h, "instance": f"{h}:{port}"} for job, (hosts, port) in JOBS.items() for h in hosts]
    found += [{"job": "celery", "host": h, "instance": f"{h}:{9808 + n}"} for h in WORKERS for n in range(2)]
    return found


def matrix(query: str, start: float, end: float, step: float) -> list[dict[str, Any]] | None:
    for text, label, values, value in RULES:
        if text in query:
            times = [start + k * step for k in range(int((end - start) / step) + 1)]
            return [
                {"metric": {label: v} if label else {}, "values": [[t, f"{value(t, i):.6g}"] for t in times]}
                for i, v in enumerate(values)
            ]
    return None


def vector(query: str, now: float) -> list[dict[str, Any]] | None:
    if query == "up":
        return [
            {"metric": {"__name__": "up", **t}, "value": [now, "0" if (t["job"], t["instance"]) == DOWN else "1"]}
            for t in targets()
        ]
    if query == 'ALERTS{alertstate="firing"}':
        labels = {"alertname": "TutorMaxTargetDown", "alertstate": "firing", "severity": "warning"}
        return [{"metric": {"__name__": "ALERTS", **labels, "job": DOWN[0], "host": "cluster-worker2"},
                 "value": [now, "1"]}]  # fmt: skip
    return None


# The API requests the fake received (path under the prefix, parameters), and the `site` fixture's
# start(mode, root=DASHBOARD) -> (page address, those requests).
Requests = list[tuple[str, dict[str, str]]]
Site = Callable[..., tuple[str, Requests]]


class FakePrometheus(BaseHTTPRequestHandler):
    """The page under PREFIX, with the CSP, and Prometheus' query API under PREFIX + api/v1/.
    ``mode``: "data" (series for every known query), "empty" (no series), "error" (HTTP 500)."""

    mode: ClassVar[str] = "data"
    root: ClassVar[Path] = DASHBOARD
    requests: ClassVar[Requests]

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path.startswith(PREFIX + "api/v1/"):
            self.requests.append((url.path.removeprefix(PREFIX), params))
            self.api(url.path.removeprefix(PREFIX + "api/v1/"), params)
            return
        name = url.path.removeprefix(PREFIX) or "index.html"
        file = self.root / name
        if not url.path.startswith(PREFIX) or "/" in name or not file.is_file():
            self.reply(404, b"not found", "text/plain")
            return
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.reply(200, file.read_bytes(), kind)

    def api(self, endpoint: str, params: dict[str, str]) -> None:
        query = params.get("query", "")
        if self.mode == "error":
            self.prometheus(500, error="fake Prometheus: internal failure", kind="internal")
        elif endpoint == "query_range":
            start, end, step = (float(params.get(k, "nan")) for k in ("start", "end", "step"))
            if end - start != 1800 or step != 15:
                self.prometheus(400, error=f"fake Prometheus: range {start}-{end} step {step}, not 30 min / 15 s")
                return
            result = [] if self.mode == "empty" else matrix(query, start, end, step)
            if result is None:
                self.prometheus(400, error=f"fake Prometheus knows no series for {query}")
            else:
                self.prometheus(200, {"resultType": "matrix", "result": result})
        elif endpoint == "query":
            result = [] if self.mode == "empty" else vector(query, float(params.get("time", time.time())))
            if result is None:
                self.prometheus(400, error=f"fake Prometheus knows no instant query {query}")
            else:
                self.prometheus(200, {"resultType": "vector", "result": result})
        else:
            self.prometheus(404, error=f"fake Prometheus has no endpoint {endpoint}", kind="not_found")

    def prometheus(self, status: int, data: object = None, error: str = "", kind: str = "bad_data") -> None:
        if status == 200:
            body: dict[str, Any] = {"status": "success", "data": data}
        else:
            body = {"status": "error", "errorType": kind, "error": error}
        self.reply(status, json.dumps(body).encode(), "application/json")

    def reply(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[Site]:
    """Starts the stand-in for a mode (and a page folder); gives the page's address and the API
    requests it received."""
    with ExitStack() as servers:

        def start(mode: str, root: Path = DASHBOARD) -> tuple[str, Requests]:
            seen: Requests = []
            handler = type("Fake", (FakePrometheus,), {"mode": mode, "root": root, "requests": seen})
            port = servers.enter_context(serving(handler))
            return f"http://127.0.0.1:{port}{PREFIX}", seen

        yield start


def test_chromium_is_installed() -> None:
    # Fails, not skips: CI installs it (scripts/ensure-host-packages.sh).
    assert Path(find_chromium()).exists()


def test_every_panel_is_drawn_from_the_api_under_the_csp(site: Site) -> None:
    url, requests = site("data")
    result = render(url, SCREENSHOT)
    assert check_dashboard(result.dom) == []
    shown = parse_dashboard(result.dom)
    assert [p.id for p in shown.panels] == list(PANELS)
    # The strip shows every target, the one down among them, and the firing alert.
    assert len(shown.targets) == len(targets())
    assert [(t["job"], t["instance"]) for t in shown.targets if t["up"] != "1"] == [DOWN]
    assert [(a["alertname"], a["host"], a["severity"]) for a in shown.alerts] == [
        ("TutorMaxTargetDown", "cluster-worker2", "warning")
    ]
    # One round (the budget is shorter than the refresh): each query asked once, under the prefix.
    instant = [q["query"] for path, q in requests if path == "api/v1/query"]
    ranges = [q["query"] for path, q in requests if path == "api/v1/query_range"]
    assert sorted(instant) == ['ALERTS{alertstate="firing"}', "up"]
    assert len(ranges) == len(set(ranges)) >= len(PANELS) - 2
    assert len(requests) == len(instant) + len(ranges)
    assert result.screenshot == SCREENSHOT
    info = read_png(SCREENSHOT.read_bytes())
    assert png_problems(info) == []
    # Charts, text and chips: far more than a blank page's handful of row patterns and colours.
    assert info.distinct_rows is not None
    assert info.distinct_rows > 500
    assert info.colours_sampled is not None
    assert info.colours_sampled > 50


def test_an_api_without_data_leaves_every_chart_empty_and_the_check_says_so(site: Site) -> None:
    url, _ = site("empty")
    dom = render(url).dom
    shown = parse_dashboard(dom)
    assert shown.rendered
    states = {p.id: (p.state, p.message) for p in shown.panels}
    # No firing alert is the good answer, not missing data.
    assert states.pop("alerts") == ("ok", "")
    assert states == {pid: ("empty", "no data") for pid in PANELS if pid != "alerts"}
    assert check_dashboard(dom) == [f"panel {pid} is empty: no data" for pid in PANELS if pid != "alerts"]


def test_an_api_answering_500_leaves_every_panel_in_error_with_the_message(site: Site) -> None:
    url, _ = site("error")
    dom = render(url).dom
    message = "Query error: HTTP 500: fake Prometheus: internal failure"
    assert check_dashboard(dom) == [f"panel {pid} is error: {message}" for pid in PANELS]


def test_a_page_breaking_the_csp_is_reported(site: Site, tmp_path: Path) -> None:
    # The page's own files with an inline style attribute and an inline script added: the browser
    # blocks both, and the page's violation report reaches the check.
    root = tmp_path / "dashboard"
    shutil.copytree(DASHBOARD, root)
    index = root / "index.html"
    html = index.read_text()
    html = html.replace("<h1>", '<h1 style="color: red">').replace(
        "</body>", "<script>document.title = 'x'</script></body>"
    )
    index.write_text(html)
    url, _ = site("data", root)
    problems = check_dashboard(render(url).dom)
    assert len(problems) == 1
    assert problems[0].startswith("Content-Security-Policy violations: ")
    assert "style-src" in problems[0]
    assert "script-src" in problems[0]


# ------------------------------------------------------------------------------ the checks themselves


def page(body: str, rendered: bool = True) -> str:
    flag = ' data-rendered="1"' if rendered else ""
    return f"<html><head></head><body{flag}>{body}</body></html>"


def panel(pid: str, state: str, message: str = "") -> str:
    hidden = "" if message else " hidden"
    return (
        f'<article data-panel="{pid}" data-state="{state}"><div class="chart"><svg><path d="M0 0"></path>'
        f'</svg></div><p class="message"{hidden}>{message}</p><ul class="legend"></ul></article>'
    )


def test_check_dashboard_names_every_kind_of_problem() -> None:
    body = (
        panel("api-request-rate", "ok")
        + panel("api-errors", "error", "Query error: HTTP 502: bad gateway")
        + panel("host-cpu", "loading")
        + panel("extra", "ok")
        + '<p id="csp-violations" data-count="1">Content-Security-Policy violations: style-src-attr blocked inline</p>'
    )
    expected = ["api-request-rate", "api-errors", "host-cpu", "host-memory"]
    assert check_dashboard(page(body, rendered=False), expected) == [
        'page not rendered: <body> has no data-rendered="1" (the first round did not finish)',
        "Content-Security-Policy violations: style-src-attr blocked inline",
        "panel api-errors is error: Query error: HTTP 502: bad gateway",
        "panel host-cpu is loading",
        "panel host-memory missing",
        "panel extra is not an expected panel",
    ]
    assert check_dashboard(page(panel("api-request-rate", "ok")), ["api-request-rate"]) == []
    # The violations box stays hidden while there is none.
    hidden_box = '<p id="csp-violations" hidden>Content-Security-Policy violations: </p>'
    assert check_dashboard(page(panel("a", "ok") + hidden_box), ["a"]) == []


def png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int]]) -> bytes:
    """An RGB PNG, its rows filtered with each of the five filters in turn (the decoder must undo all)."""

    def paeth(a: int, b: int, c: int) -> int:
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else b if pb <= pc else c

    rows = [bytes(v for x in range(width) for v in pixel(x, y)) for y in range(height)]
    raw = bytearray()
    prior = bytes(width * 3)
    for y, row in enumerate(rows):
        kind = y % 5
        raw.append(kind)
        for i, v in enumerate(row):
            left = row[i - 3] if i >= 3 else 0
            corner = prior[i - 3] if i >= 3 else 0
            predictor = [0, left, prior[i], (left + prior[i]) // 2, paeth(left, prior[i], corner)][kind]
            raw.append((v - predictor) & 0xFF)
        prior = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")
    )


def test_the_png_check_decodes_every_filter_and_refuses_flat_or_wrongly_sized_images(tmp_path: Path) -> None:
    varied = tmp_path / "varied.png"
    varied.write_bytes(png(40, 30, lambda x, y: ((x * 7 + y) % 256, (y * 11) % 256, (x * y) % 256)))
    info = read_png(varied.read_bytes(), sample_every=1)
    assert (info.width, info.height, info.distinct_rows) == (40, 30, 30)
    # Every pixel decoded right: the distinct colours of the generator.
    expected = {((x * 7 + y) % 256, (y * 11) % 256, (x * y) % 256) for x in range(40) for y in range(30)}
    assert info.colours_sampled == len(expected)
    assert check_png(varied, 40, 30) == []
    assert check_png(varied, 1400, 2400) == [f"{varied}: 40x30, expected 1400x2400"]
    flat = tmp_path / "flat.png"
    flat.write_bytes(png(40, 30, lambda x, y: (255, 255, 255)))
    assert check_png(flat, 40, 30) == [f"{flat}: a single flat colour"]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"GIF89a")
    assert check_png(broken, 40, 30) == [f"{broken}: not a PNG (bad signature)"]
